"""The engine interface every backend implements, and the value types that cross it.

One typed streaming generator serves every caller (chat, compare, batch answers, benchmarks)::

    engine = load_engine(LoadOptions("model.gguf"))            # any backend, picked by asclepius_ui.engines
    prompt = engine.make_prompt(note, "List the discharge medications.")   # tokenised once
    prompt = engine.fit(prompt, settings)                        # GenerationError if it cannot fit
    for update in engine.stream(prompt, settings, stop_event):   # the growing answer; stop_event ends it
        print(update.text)

Pages and CLIs go through ``asclepius_ui.ask`` (request -> prepare -> stream -> record), which does exactly this.

What a backend cannot do is declared in ``engine.capabilities`` (e.g. no local tokenizer behind a remote server)
and asking for it raises ``UnsupportedError``: callers check the capability, never catch AttributeError.
"""

from __future__ import annotations

import json
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Protocol

from ..errors import GenerationError, UnsupportedError
from ..prompts import build_prompt, prompt_parts
from ..tokenization import Budget, Truncation, truncate_to_fit

DEMO_MARKER = "asclepius_demo.json"  # a file in a model folder that marks the project's own demo model


def marks_demo(folder: Path | None) -> bool:
    """Whether ``folder`` holds the project's demo model (its ``DEMO_MARKER`` file; an unreadable one counts)."""
    marker = None if folder is None else folder / DEMO_MARKER
    if marker is None or not marker.exists():
        return False
    try:
        return bool(json.loads(marker.read_text()).get("demo", True))
    except (OSError, json.JSONDecodeError):
        return True


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set: the hub is not asked, only its local cache."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the pages and CLIs adapt to it instead of probing for attributes."""

    tokenizer: bool = True  # exact token counts here (the budget and "Truncate note to fit" work)
    streaming: bool = True  # greedy/sampled answers arrive token by token
    beams: bool = True  # beam search (num_beams > 1)
    batch: bool = False  # generate_batch runs one padded batch (else prompts one after another)
    concurrent: bool = False  # many requests at once (a server); local engines serialise their requests
    prefix_cache: bool = False  # follow-up questions on one note reuse the note's KV cache
    prompt_lookup: bool = False  # prompt-lookup decoding (drafts copied spans of the note)
    remote: bool = False  # the prompt is sent to another host (the privacy guard asks before a note leaves)
    prefill: bool = False  # ``prefill`` reads a note ahead of the question into the prefix cache


PRECISIONS = ("auto", "fp32", "bf16", "fp16", "8bit", "4bit")  # the shared --precision (8bit/4bit: bitsandbytes)
DEVICES = ("auto", "cpu", "cuda")

# The decoding presets. "paper" is the authors' evaluation setting (src/evaluate.py in starmpcc/Asclepius:
# max_new_tokens=400, num_beams=5, do_sample=True, temperature=1); "greedy" is the app's interactive default.
PRESETS: dict[str, dict] = {
    "greedy": dict(max_new_tokens=400, do_sample=False, temperature=0.7, top_p=0.9, num_beams=1,
                   repetition_penalty=1.0),
    "paper": dict(max_new_tokens=400, do_sample=True, temperature=1.0, top_p=1.0, num_beams=5,
                  repetition_penalty=1.0),
}


@dataclass
class GenerationSettings:
    """Decoding settings; the defaults are the ``greedy`` preset (400 new tokens, streamed).

    ``preset`` names where the values came from (``greedy``, ``paper`` or ``custom``) and is stored with every
    answer. ``prompt_lookup`` > 0 drafts that many tokens from the prompt (identical greedy output, faster when
    the answer copies the note) on backends that declare the capability; on by default, used for greedy decoding
    only (bench/generation.py measures it per task), 0 turns it off.
    """

    max_new_tokens: int = 400
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    num_beams: int = 1
    repetition_penalty: float = 1.0
    prompt_lookup: int = 10
    preset: str = "greedy"

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GenerationSettings:
        """The preset's values with ``overrides``; it becomes ``custom`` when an override changes how it decodes
        (the answer budget, ``max_new_tokens``, and the speed-only ``prompt_lookup`` keep the preset's name)."""
        if name not in PRESETS:
            raise GenerationError(f"Unknown decoding preset {name!r}; choose one of {', '.join(PRESETS)}.")
        values = dict(PRESETS[name])
        changed = any(k in values and k != "max_new_tokens" and values[k] != v for k, v in overrides.items())
        values.update(overrides)
        return cls(**values, preset="custom" if changed else name)

    @property
    def streams(self) -> bool:
        """Beam search keeps several hypotheses until the end, so it cannot stream."""
        return self.num_beams == 1

    def __post_init__(self) -> None:
        """Values arrive as numbers of any kind (sliders send floats): cast once, here, and check them."""
        self.max_new_tokens, self.num_beams = int(self.max_new_tokens), int(self.num_beams)
        self.prompt_lookup = int(self.prompt_lookup)
        self.temperature, self.top_p = float(self.temperature), float(self.top_p)
        self.repetition_penalty, self.do_sample = float(self.repetition_penalty), bool(self.do_sample)
        self.validate()

    def validate(self) -> None:
        """Raise ``GenerationError`` for values no backend can use (called on construction)."""
        if self.max_new_tokens < 1:
            raise GenerationError("Max new tokens must be at least 1.")
        if self.num_beams < 1:
            raise GenerationError("Beams must be at least 1.")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise GenerationError("Sampling needs a temperature above 0 and top-p in (0, 1].")
        if self.repetition_penalty <= 0:
            raise GenerationError("Repetition penalty must be above 0.")
        if self.prompt_lookup < 0:
            raise GenerationError("Prompt-lookup draft length must be 0 (off) or more.")

    def to_kwargs(self) -> dict:
        """Keyword arguments for transformers' ``generate`` (other backends map the fields themselves)."""
        kw = dict(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                  repetition_penalty=self.repetition_penalty, do_sample=self.do_sample)
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> GenerationSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes) -> GenerationSettings:
        return replace(self, **changes)


@dataclass
class StreamUpdate:
    """An answer, growing or finished (``done``): the one result type of every engine.

    ``generate`` returns the last update of ``stream``; ``GenerationResult`` is the same type under the name the
    batch callers use.
    """

    text: str
    new_tokens: int
    seconds: float
    done: bool = False
    stopped: bool = False
    prompt_tokens: int = 0
    first_token_s: float | None = None
    notice: str = ""  # what the reader must know about this answer in plain words (e.g. the server cut it short)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


GenerationResult = StreamUpdate


@dataclass(frozen=True)
class Prompt:
    """A prompt as the model sees it, tokenised once: its text, its ids (BOS once; ``None`` where this backend
    cannot count tokens), the note-only head of the text (``prefix``: what follow-up questions on one note share;
    ``None`` when the template asks before the note) and the answer budget its fit was checked for."""

    text: str
    ids: tuple[int, ...] | None = None
    prefix: str | None = None
    fits_new_tokens: int | None = None

    @property
    def n_tokens(self) -> int | None:
        return None if self.ids is None else len(self.ids)


class LoadOptions:
    """How to load a model: the options every backend shares, plus each backend's own (``backend_options``).

    Backend options are passed by name (``LoadOptions("m.gguf", threads=4)``, ``LoadOptions("name",
    base_url=URL)``); each backend reads the ones its ``Options`` dataclass names, and ``load_engine`` refuses a
    name no backend knows. ``backend="auto"`` asks each backend in ``BACKENDS`` order whether it claims the model
    (an OpenAI-compatible server for a base URL, llama.cpp for a ``.gguf``, transformers otherwise).
    ``context_length`` caps the context (llama.cpp's KV cache; a server that does not say its own).
    """

    SHARED = ("model", "precision", "device", "template", "revision", "backend", "context_length", "extra")

    def __init__(self, model: str, precision: str = "auto", device: str = "auto", template: str | None = None,
                 revision: str | None = None, backend: str = "auto", context_length: int | None = None,
                 extra: dict | None = None, **backend_options):
        self.model, self.precision, self.device, self.template = model, precision, device, template
        self.revision, self.backend, self.context_length = revision, backend, context_length
        self.extra = dict(extra or {})
        self.backend_options = {k: v for k, v in backend_options.items() if v is not None}

    def get(self, name: str, default=None):
        """A backend option's value (``default`` when not given)."""
        return self.backend_options.get(name, default)

    def options_for(self, cls):
        """``cls`` (a backend's options dataclass) filled from ``backend_options`` (the names it has)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in self.backend_options.items() if k in names})

    def replace(self, **changes) -> LoadOptions:
        """A copy with ``changes`` (shared or backend options; ``None`` removes a backend option)."""
        shared = {k: getattr(self, k) for k in self.SHARED}
        backend = dict(self.backend_options)
        for k, v in changes.items():
            (shared if k in self.SHARED else backend)[k] = v
        return LoadOptions(**shared, **backend)

    def __repr__(self) -> str:
        hidden = {k: ("***" if "key" in k and not k.endswith("_env") else v) for k, v in self.backend_options.items()}
        return f"LoadOptions(model={self.model!r}, backend={self.backend!r}, precision={self.precision!r}, {hidden})"


class Engine(ABC):
    """A loaded model. Backends set the attributes below in their loader and implement ``stream`` (and ``encode``
    and ``token_spans`` when they have a tokenizer); everything else is shared here."""

    backend: str = ""
    model_id: str
    template: str
    context_length: int
    context_known: bool = True  # False: a server that does not say its context (``context_limit`` is a bound)
    precision: str
    revision: str
    is_demo: bool = False
    notices: list[str]
    capabilities: Capabilities = Capabilities()

    @property
    def precision_label(self) -> str:
        return self.precision

    def prompt(self, note: str, question: str) -> str:
        """The model's prompt text for ``question`` about ``note`` (its template)."""
        return build_prompt(note, question, self.template)

    def make_prompt(self, note: str, question: str) -> Prompt:
        """The prompt for ``question`` about ``note``, tokenised once, with its note-only head known."""
        text, prefix = prompt_parts(note, question, self.template)
        return Prompt(text, self._ids(text), prefix)

    def as_prompt(self, prompt: str | Prompt) -> Prompt:
        """``prompt`` as a ``Prompt`` (text passed as it is is tokenised here; it has no known note head)."""
        return prompt if isinstance(prompt, Prompt) else Prompt(prompt, self._ids(prompt))

    def _ids(self, text: str) -> tuple[int, ...] | None:
        return tuple(self.encode(text)) if self.capabilities.tokenizer else None

    def fit(self, prompt: str | Prompt, settings: GenerationSettings) -> Prompt:
        """``prompt`` checked against the context with ``settings``' answer budget (the one fit rule, checked once
        per budget); raises ``GenerationError`` when prompt + answer exceed it."""
        p = self.as_prompt(prompt)
        if p.fits_new_tokens == settings.max_new_tokens:
            return p
        if p.ids is not None:
            self.check_count(len(p.ids), settings)
        return replace(p, fits_new_tokens=settings.max_new_tokens)

    @property
    def context_limit(self) -> int | None:
        """The context the fit rule checks against: ``context_length``, or where the context is not known, the
        most it can be (``None``: nothing known)."""
        return self.context_length

    # Tokens ---------------------------------------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        """Prompt ids with BOS exactly once, as the model will see them."""
        raise UnsupportedError(f"{self.model_id} ({self.backend}) has no local tokenizer: token counts are unknown.")

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of ``text``'s tokens (no BOS): where a note may be cut on a token boundary."""
        raise UnsupportedError(f"{self.model_id} ({self.backend}) has no local tokenizer: truncation needs one.")

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` as a prompt (BOS included), or ``None`` where the backend cannot count."""
        return len(self.encode(text)) if self.capabilities.tokenizer else None

    def budget(self, prompt: str | Prompt, max_new_tokens: int) -> Budget | None:
        """How ``prompt`` plus the answer fits the context, or ``None`` when tokens cannot be counted here."""
        n = prompt.n_tokens if isinstance(prompt, Prompt) else self.count_tokens(prompt)
        return None if n is None else Budget(n, int(max_new_tokens), self.context_limit, self.context_known)

    def check_settings(self, settings: GenerationSettings) -> None:
        """Raise ``UnsupportedError`` for what this backend lacks (the values themselves were checked when the
        settings were made)."""
        if settings.num_beams > 1 and not self.capabilities.beams:
            raise UnsupportedError(
                f"The {self.backend} backend has no beam search: {self.model_id} answers with Beams = 1 only. Set "
                "Beams to 1 (greedy or sampling), or use the greedy preset (`--preset greedy`); the paper preset's "
                "5 beams need the transformers backend.")

    def check_fits(self, prompt: str | Prompt, settings: GenerationSettings) -> int | None:
        """The prompt's token count; raises ``GenerationError`` when prompt + answer exceed the context."""
        return self.fit(prompt, settings).n_tokens

    def check_count(self, prompt_tokens: int, settings: GenerationSettings) -> None:
        """Raise ``GenerationError`` when ``prompt_tokens`` plus the answer exceed the context (the one fit rule)."""
        b = Budget(prompt_tokens, int(settings.max_new_tokens), self.context_limit, self.context_known)
        if not b.fits:
            raise GenerationError(
                f"The prompt has {b.prompt_tokens} tokens; with up to {b.max_new_tokens} new tokens that is "
                f"{b.total}, over the model's context of {b.context_length}. "
                "Shorten the note (truncate it explicitly) or lower max new tokens.")

    def truncate_note(self, note: str, question: str, max_new_tokens: int, keep: str = "start") -> Truncation:
        """Cut ``note`` on token boundaries so the prompt fits; returns what was kept and exactly what was cut."""
        if not self.capabilities.tokenizer:
            self.token_spans(note)  # raises UnsupportedError with the reason
        if self.context_limit is None:
            raise UnsupportedError(f"The server of {self.model_id} does not say how many tokens it can read at once, "
                                   "so there is nothing to cut the note to: set --context-length, or ask once (its "
                                   "refusal tells it).")
        return truncate_to_fit(lambda n: self.count_tokens(self.prompt(n, question)), self.token_spans, note,
                               int(max_new_tokens), self.context_limit, keep)

    # Generation -----------------------------------------------------------------------------------------
    @abstractmethod
    def stream(self, prompt: str | Prompt, settings: GenerationSettings | None = None,
               stop_event: threading.Event | None = None, min_interval: float = 0.05) -> Iterator[StreamUpdate]:
        """Yield the growing answer; setting ``stop_event`` ends this request (and no other) early.

        ``prompt`` is text or a ``Prompt`` (from ``make_prompt``: not tokenised again; ``fit`` is applied here
        either way). The last update has ``done=True``. Updates come at most every ``min_interval`` seconds;
        beam search and ``min_interval=inf`` give only the last one.
        """

    def generate(self, prompt: str | Prompt, settings: GenerationSettings | None = None,
                 stop_event: threading.Event | None = None) -> GenerationResult:
        """The whole answer at once: the last update of ``stream``."""
        *_, last = self.stream(prompt, settings, stop_event, min_interval=float("inf"))
        return last

    def generate_batch(self, prompts: list[str | Prompt], settings: GenerationSettings | None = None,
                       ) -> list[GenerationResult]:
        """Answer several prompts; backends with ``capabilities.batch`` run them as one padded batch."""
        return [self.generate(p, settings) for p in prompts]

    def prefill(self, prefix: str, stop: Stop | None = None, progress: Progress | None = None) -> Prefilled:
        """Process ``prefix`` (a ``Prompt.prefix``: the prompt up to the question) into the prefix cache, in chunks,
        so the first question on the note starts at once (``capabilities.prefill``).

        ``stop.is_set()`` is checked between chunks: the chunks done so far are kept, and a later ``prefill`` or an
        Ask on the note continues from them. ``progress(done, total)`` is called after each chunk (tokens).
        """
        raise UnsupportedError(f"The {self.backend} backend cannot read a note ahead of the question.")

    def check_prefix(self, n_tokens: int) -> None:
        """Raise ``GenerationError`` for a note part that leaves no room in the context (nothing to read ahead)."""
        if n_tokens >= self.context_length:
            raise GenerationError(f"The note is {n_tokens} tokens with the prompt's opening, over the model's context "
                                  f"of {self.context_length}: truncate it first.")

    def cache_usage(self) -> CacheUsage | None:
        """What the notes kept for reuse take now (``None``: this backend keeps none here)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional for backends
        """Free what the engine holds (weights, a server connection)."""


class Stop(Protocol):
    """Anything with ``is_set()`` (a ``threading.Event``): checked between prefill chunks."""

    def is_set(self) -> bool: ...


Progress = Callable[[int, int], None]

YIELD_S = 0.2  # a note read ahead goes in pieces sized to take about this long: an Ask waits at most about one
MIN_PIECE = 64  # smaller pieces cost prefill speed (measured: README, "CPU settings")


def unfinished_character(data: bytes) -> int:
    """How many bytes at the end of ``data`` begin a UTF-8 character that is not finished (0 when none): what an
    answer cut in the middle of a character (Stop, the token limit) leaves out. Invalid bytes are not counted: they
    are shown, as "\ufffd"."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    decoder.decode(data)
    return len(decoder.getstate()[0])


def next_piece(tokens: int, seconds: float, largest: int) -> int:
    """Tokens in the next read-ahead piece, after ``tokens`` took ``seconds``: about ``YIELD_S`` worth, a multiple
    of ``MIN_PIECE`` between it and ``largest`` (the backend's cap)."""
    fit = int(tokens * YIELD_S / max(seconds, 1e-6)) // MIN_PIECE * MIN_PIECE
    return max(min(MIN_PIECE, largest), min(largest, fit))


def read_in_pieces(ids: Sequence[int], done: int, largest: int, evaluate: Callable[[Sequence[int]], object],
                   stop: Stop | None = None, progress: Progress | None = None,
                   ends: Sequence[int] | None = None) -> int:
    """``evaluate`` ``ids[done:]`` piece by piece (``next_piece``: about ``YIELD_S`` each, at most ``largest``
    tokens; or ending at each of ``ends``, a fixed grid) until all are read or ``stop`` is set between pieces;
    returns how many of ``ids`` are read."""
    step = min(MIN_PIECE, largest)
    grid = iter([e for e in ends if e > done] if ends is not None else ())
    while done < len(ids) and not (stop is not None and stop.is_set()):
        end = next(grid, len(ids)) if ends is not None else done + step
        piece = ids[done:end]
        t = time.perf_counter()
        evaluate(piece)
        step = next_piece(len(piece), time.perf_counter() - t, largest)
        done += len(piece)
        if progress is not None:
            progress(done, len(ids))
    return done


@dataclass(frozen=True)
class Prefilled:
    """What a ``prefill`` left in the cache: ``done`` of the prefix's ``total`` tokens (``done == total``: all of it;
    ``total`` 0 where the backend cannot count, e.g. a server)."""

    done: int
    total: int

    @property
    def complete(self) -> bool:
        return self.done >= self.total


@dataclass(frozen=True)
class CacheUsage:
    """The notes an engine keeps for reuse: how many and how many bytes, against their bounds."""

    entries: int
    max_entries: int
    nbytes: int
    max_bytes: int


BOUNDARY_TOKENS = 4  # a kept note serves a prompt that shares all of it but its last few tokens (see ``reusable``)


def reusable(key: Sequence[int], ids: Sequence[int], limit: int) -> int:
    """How many tokens of a kept prefix ``key`` a prompt ``ids`` can reuse (at most ``limit``): 0 unless the prompt
    shares all of ``key`` but its last ``BOUNDARY_TOKENS`` (the note part tokenised alone may end in a token the
    question merges with); another note sharing only the template's opening is no match."""
    n = common_prefix(key, ids, limit)
    return n if n >= min(len(key), limit) - BOUNDARY_TOKENS else 0


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int | None = None) -> int:
    """How many leading items ``a`` and ``b`` share (at most ``limit``)."""
    n = min(len(a), len(b), len(a) + len(b) if limit is None else limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
