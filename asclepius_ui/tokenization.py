"""Token counting and the context budget: pure functions over a tokenizer, no model needed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import InputError
from .prompts import build_prompt


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids for ``prompt`` with the tokenizer's BOS exactly once (never doubled).

    The text is never parsed for control tokens: a literal ``<s>`` or ``</s>`` in a note (or typed before a
    prompt) stays text, so untrusted notes cannot end or restart a sequence. BOS comes from the tokenizer's own
    rule (``add_special_tokens``), once.
    """
    ids = list(tokenizer(prompt, add_special_tokens=True, split_special_tokens=True)["input_ids"])
    bos = tokenizer.bos_token_id
    if bos is not None:
        while len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            ids.pop(0)
    return ids


AUTHORS_MAX_NEW_TOKENS = 400


def default_max_new(context_length: int) -> int:
    """The authors' 400 new tokens, or half the context for a model with a short one."""
    return max(1, min(AUTHORS_MAX_NEW_TOKENS, context_length // 2))


@dataclass(frozen=True)
class Budget:
    """How a prompt plus the answer it asks for fits the model's context.

    ``context_known`` False: the context is not known (a server that does not say it); ``context_length`` is then
    only an upper bound (the model's own, ``None`` when not even that is known) and the line says so.
    """

    prompt_tokens: int
    max_new_tokens: int
    context_length: int | None
    context_known: bool = True

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.max_new_tokens

    @property
    def fits(self) -> bool:
        return self.context_length is None or self.total <= self.context_length

    @property
    def overflow(self) -> int:
        return 0 if self.context_length is None else max(0, self.total - self.context_length)

    def describe(self) -> str:
        """One line for the page: prompt tokens + answer tokens against the context."""
        state = "fits" if self.fits else f"over by {self.overflow} tokens"
        head = f"Prompt {self.prompt_tokens} + answer up to {self.max_new_tokens} = {self.total}"
        if self.context_known:
            return f"{head} of {self.context_length} tokens ({state})"
        bound = f"; this model reads at most {self.context_length}" if self.context_length else ""
        over = "" if self.fits else f" ({state})"
        return (f"{head} tokens{over} · context unknown: the server does not say how many tokens it can read at "
                f"once{bound}. Its first refusal (or an answer it cuts short) will tell it.")


@dataclass(frozen=True)
class Truncation:
    """The result of cutting a note to fit: what was kept and exactly what was cut."""

    kept: str
    cut: str
    cut_tokens: int


def budget_for(tokenizer, note: str, question: str, template: str, max_new_tokens: int,
               context_length: int) -> Budget:
    """The budget for ``note`` and ``question`` formatted with ``template``."""
    prompt = build_prompt(note, question, template)
    return Budget(len(encode_prompt(tokenizer, prompt)), max_new_tokens, context_length)


def truncate_to_fit(count: Callable[[str], int], spans: Callable[[str], list[tuple[int, int]]], note: str,
                    max_new_tokens: int, context_length: int, keep: str = "start") -> Truncation:
    """Cut ``note`` on token boundaries (from the end, or the start with ``keep="end"``) so the prompt fits.

    ``count(note)`` is the prompt's token count with that note; ``spans(note)`` the character spans of the note's
    tokens. Returns the removed text so the caller can show it; raises ``InputError`` when even an empty note
    does not fit.
    """
    def fits(text: str) -> bool:
        return count(text) + max_new_tokens <= context_length

    if fits(note):
        return Truncation(note, "", 0)
    if not fits(""):
        raise InputError("The instruction and max new tokens alone exceed the model's context; "
                         "shorten the instruction or lower max new tokens.")
    offsets = spans(note)
    n = len(offsets)

    def piece(k: int) -> tuple[str, str]:
        if keep == "end":
            start = offsets[n - k][0] if k else len(note)
            return note[start:], note[:start]
        end = offsets[k - 1][1] if k else 0
        return note[:end], note[end:]

    lo, hi = 0, n  # the largest k tokens of the note that fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(piece(mid)[0]):
            lo = mid
        else:
            hi = mid - 1
    kept, cut = piece(lo)
    return Truncation(kept, cut, n - lo)


def tokenizer_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """Character spans of ``text``'s tokens from a Hugging Face tokenizer (characters for a slow one)."""
    try:
        return [tuple(o) for o in tokenizer(text, add_special_tokens=False, split_special_tokens=True,
                                            return_offsets_mapping=True)["offset_mapping"]]
    except (NotImplementedError, ValueError, KeyError, TypeError):  # slow tokenizer: cut on characters
        return [(i, i + 1) for i in range(len(text))]


def truncate_note(tokenizer, note: str, question: str, template: str, max_new_tokens: int,
                  context_length: int, keep: str = "start") -> Truncation:
    """``truncate_to_fit`` with a Hugging Face tokenizer and ``template``."""
    return truncate_to_fit(lambda n: len(encode_prompt(tokenizer, build_prompt(n, question, template))),
                           lambda n: tokenizer_spans(tokenizer, n), note, max_new_tokens, context_length, keep)


def pad_token_id(tokenizer) -> int:
    """The id to pad batches with: the tokenizer's pad, else unk, else EOS, and never BOS.

    LLaMA tokenizers have no pad token. Padded positions are masked (attention and labels), so the value changes no
    result; it is never BOS so that BOS stays a real, attended token. The one rule for the app and training.
    """
    for tid in (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id):
        if tid is not None and tid != tokenizer.bos_token_id:
            return tid
    raise ValueError("the tokenizer has no pad, unk or EOS token to pad with")
