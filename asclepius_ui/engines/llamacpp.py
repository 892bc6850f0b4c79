"""The llama.cpp backend: a GGUF file through llama-cpp-python, on a laptop CPU (or offloaded to a GPU).

``python app.py --model asclepius-7b.q4_k_m.gguf`` (make one with ``python -m asclepius_ui.convert``), or a hub repo /
folder with ``--gguf-file NAME``. The prompt is tokenised here with the GGUF's own tokenizer, BOS once and special
tokens *not* parsed (a note that contains ``<s>`` or ``</s>`` stays text), and the ids are passed to llama.cpp.
A ``Llama`` object holds one KV cache, so requests take turns (a lock); llama.cpp reuses the KV cache of the
longest common prefix with the previous request, so a follow-up question on the same note only evaluates the
question (``capabilities.prefix_cache``). More notes are kept as saved KV states (``StateCache``, keyed by the exact
token ids, bounded by ``--kv-states`` and ``--kv-states-bytes``): a note read ahead of the question (``prefill``)
or asked about earlier is restored instead of evaluated again, so two clinicians' notes do not evict each other.
Every prompt is evaluated on one grid of blocks (``block_ends``), however much of it was kept, so the numbers, and
the answer, are the same as a cold Ask's.
"""

from __future__ import annotations

import codecs
import ctypes
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..demo import model_name
from ..errors import GenerationError, ModelLoadError
from ..registry import DEMO_NAME, REGISTRY, ModelSpec, lookup, resolve
from .base import (
    CacheUsage,
    Capabilities,
    Engine,
    GenerationSettings,
    LoadOptions,
    Prefilled,
    Progress,
    Prompt,
    Stop,
    StreamUpdate,
    common_prefix,
    hub_offline,
    marks_demo,
    read_in_pieces,
    reusable,
)

if TYPE_CHECKING:  # llama_cpp loads with the first GGUF (flags and ``--help`` work without it)
    import llama_cpp


# Prompt evaluation settings chosen by measurement on a 2-core CPU (README, "On a laptop").
N_BATCH, N_UBATCH, FLASH_ATTN = 512, 256, "off"
MIN_STATE_TOKENS = 16  # shorter shared prefixes are not worth a saved state


def physical_cores() -> int:
    """CPU cores this process may use, counting each physical core once (hyper-threads share one core's units)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        allowed = set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def block_ends(start: int, end: int, unit: int, mark: int = 0) -> list[int]:
    """Where evaluating tokens ``start..end`` pauses between llama.cpp calls: at each multiple of ``unit`` (the
    physical batch) and at ``mark`` (the note's end) inside, and at ``end``. Every prompt, cold or continuing a note
    read ahead, goes through this one grid: llama.cpp rounds a token's numbers differently depending on which tokens
    it evaluates together, so one grid gives the same logits whichever way the note was read."""
    cuts = set(range((start // unit + 1) * unit, end, unit)) | ({mark} if start < mark < end else set())
    return sorted(cuts) + ([end] if end > start else [])


def reuse_point(shared: int, unit: int, mark: int, source: tuple[int, int]) -> int:
    """How much of a kept prefix sharing ``shared`` tokens with a prompt (note end ``mark``) the prompt may use: the
    last point at or before ``shared`` that both grids cut at, with no cut only one of them has before it, so every
    token kept was evaluated in the very block a cold evaluation puts it in. ``source`` is the kept prefix's grid:
    its note end and where its blocks ended (after that: one token at a time, an answer)."""
    source_mark, blocks_end = source
    theirs, ours = {source_mark, blocks_end}, {mark}
    limit = min(shared, blocks_end)
    for m in sorted((theirs ^ ours) - {0}):
        if m < limit and m % unit:
            limit = m  # a block one grid ends here and the other does not: the tokens before that block only
            break
    return max([limit // unit * unit, *(m for m in theirs & ours if m <= limit)])


class StateCache:
    """Saved llama.cpp KV states (``llama_state_get_data``), keyed by the exact token ids they hold: a small
    thread-safe LRU bounded by entries and bytes. ``best`` finds the one sharing the longest prefix with a prompt.
    """

    def __init__(self, max_entries: int = 4, max_bytes: int = 2 * 2**30):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[tuple[int, ...], tuple[ctypes.Array, tuple[int, int]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(len(b) for b, _ in self._entries.values())

    def best(self, ids: list[int], limit: int) -> tuple[tuple[int, ...] | None, ctypes.Array | None,
                                                        tuple[int, int], int]:
        """(key, state, its grid, shared tokens) of the entry ``ids`` can reuse most of (at most ``limit``;
        ``reusable``)."""
        with self._lock:
            key, n = None, 0
            for k in self._entries:
                if (c := reusable(k, ids, limit)) > n:
                    key, n = k, c
            if key is None or n < MIN_STATE_TOKENS:
                return None, None, (0, 0), 0
            self._entries.move_to_end(key)
            return key, *self._entries[key], n

    def covers(self, ids: list[int]) -> bool:
        with self._lock:
            return any(len(k) >= len(ids) and k[:len(ids)] == tuple(ids) for k in self._entries)

    def store(self, ids: list[int], state: ctypes.Array, grid: tuple[int, int] = (0, 0)) -> bool:
        """Keep ``state`` (holding ``ids`` first), evaluated on ``grid`` (``reuse_point``'s ``source``)."""
        key = tuple(ids)
        if self.max_entries <= 0 or len(state) > self.max_bytes:
            return False
        with self._lock:
            for k in [k for k in self._entries if len(k) < len(key) and key[:len(k)] == k]:
                del self._entries[k]  # a part of the same note: this state holds all of it
            self._entries[key] = (state, grid)
            self._entries.move_to_end(key)
            while (len(self._entries) > self.max_entries
                   or sum(len(b) for b, _ in self._entries.values()) > self.max_bytes):
                self._entries.popitem(last=False)
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class Options:
    """The llama.cpp backend's own load options; each field with help is a command-line flag."""

    gguf_file: str | None = field(default=None, metadata={
        "help": "the .gguf file inside a hub repo or folder given with --model"})
    threads: int | None = field(default=None, metadata={
        "help": "CPU threads for llama.cpp (default: the physical cores)"})
    n_batch: int = field(default=N_BATCH, metadata={
        "metavar": "N", "help": f"prompt tokens per llama.cpp call (default {N_BATCH}, measured: README)"})
    n_ubatch: int = field(default=N_UBATCH, metadata={
        "metavar": "N", "help": f"llama.cpp's physical batch (default {N_UBATCH}, measured: README). Every prompt "
                                 "is evaluated in blocks of N tokens from its start and cut at the note's end, so an "
                                 "answer is the same whether its note was read ahead or not; a note read ahead "
                                 "yields to an Ask after each block (smaller N: sooner, a slower read)"})
    flash_attn: str = field(default=FLASH_ATTN, metadata={
        "choices": ("on", "off"), "help": f"llama.cpp flash attention (default {FLASH_ATTN}, measured on a CPU: "
                                          "README)"})
    kv_states: int = field(default=4, metadata={
        "metavar": "N", "help": "notes whose llama.cpp KV state is kept for reuse (0: only the last one)"})
    kv_states_bytes: int = field(default=2 * 2**30, metadata={
        "metavar": "BYTES", "help": "memory those states may take, in bytes (default 2 GiB)"})
    n_gpu_layers: int = field(default=0, metadata={"help": "layers to offload to a GPU (-1: all)"})
    draft_prompt_lookup: int = field(default=0, metadata={
        "metavar": "N",
        "help": "prompt-lookup decoding for greedy answers, drafting N tokens copied from the note (e.g. 10; on an "
                "f16 GGUF the same answers, 2-3x faster; on quantised GGUFs answers may differ slightly; costs "
                "context x vocabulary x 4 bytes of memory)"})


def claims(options: LoadOptions) -> bool:
    """``--backend auto``: llama.cpp takes a ``.gguf`` file, or a repo/folder with ``--gguf-file``."""
    return bool(options.get("gguf_file")) or options.model.strip().lower().endswith(".gguf")


def file_types() -> dict[int, str]:
    """llama.h's file types by number ("general.file_type" in the GGUF metadata): 1 -> "f16", 15 -> "q4_k_m"."""
    import llama_cpp

    return {getattr(llama_cpp, n): n.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_").lower()
            for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_") and n != "LLAMA_FTYPE_GUESSED"}


@dataclass(eq=False)
class LlamaCppEngine(Engine):
    """A GGUF model loaded by llama.cpp, with what the app shows about it."""

    llm: llama_cpp.Llama = field(repr=False)
    path: Path
    spec: ModelSpec
    options: LoadOptions
    template: str
    context_length: int
    precision: str
    revision: str
    is_demo: bool = False
    notices: list[str] = field(default_factory=list)
    capabilities: Capabilities = Capabilities(beams=False, prefix_cache=True, prefill=True)
    states: StateCache = field(default_factory=StateCache)
    backend = "llamacpp"

    def __post_init__(self) -> None:
        import llama_cpp

        self._lock = threading.Lock()
        self._closed = False
        self._vocab = self.llm._model.vocab
        self._spm = llama_cpp.llama_vocab_type(self._vocab) == llama_cpp.LLAMA_VOCAB_TYPE_SPM
        self.last_prefix_hit = 0  # prompt tokens the last request found already in the KV cache
        self._unit = max(1, int(self.llm.context_params.n_ubatch))  # the grid's step (``block_ends``)
        self._grid = (0, 0)  # what the context holds: its note end, where its blocks ended (``reuse_point``)
        self._draft = self.llm.draft_model  # prompt-lookup drafting, when loaded with --draft-prompt-lookup N
        if self._draft is not None:
            self.capabilities = Capabilities(beams=False, prefix_cache=True, prompt_lookup=True, prefill=True)

    @property
    def model_id(self) -> str:
        return model_name(self.options.model)  # the folder's or file's name, never the path

    @property
    def precision_label(self) -> str:
        return f"GGUF {self.precision.removeprefix('gguf-').upper()} (llama.cpp)"

    # Tokens ---------------------------------------------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        """Prompt ids with BOS exactly once (as the GGUF asks); ``<s>``/``</s>`` in the text stay text."""
        ids = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        bos = self.llm.token_bos()
        while len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            ids.pop(0)
        return ids

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of ``text``'s tokens, from the bytes each GGUF token stands for."""
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        pieces = [self._token_bytes(t) for t in ids]
        data = text.encode("utf-8")
        joined = b"".join(pieces)
        shift = 0
        if joined != data:
            if joined == b" " + data:  # the tokenizer's added leading space (sentencepiece's dummy prefix)
                shift = 1
            else:  # a normalising tokenizer: fall back to cutting on characters
                return [(i, i + 1) for i in range(len(text))]
        # byte offset -> character offset (a byte inside a character maps to that character's start)
        char_at = [0] * (len(data) + 1)
        pos = 0
        for ci, ch in enumerate(text):
            n = len(ch.encode("utf-8"))
            for k in range(n):
                char_at[pos + k] = ci
            pos += n
        char_at[len(data)] = len(text)
        spans, end = [], -shift
        for piece in pieces:
            start, end = end, end + len(piece)
            spans.append((char_at[max(0, start)], char_at[max(0, min(end, len(data)))]))
        return spans

    def _token_bytes(self, token: int, size: int = 64) -> bytes:
        """The bytes ``token`` stands for (nothing for a control token)."""
        import llama_cpp

        buf = (ctypes.c_char * size)()
        n = llama_cpp.llama_token_to_piece(self._vocab, llama_cpp.llama_token(token), buf, size, 0, False)
        if n < 0:  # the piece is longer than the buffer: -n bytes are needed
            return self._token_bytes(token, -n)
        return bytes(buf[:n])

    # Generation -----------------------------------------------------------------------------------------------
    def _sampling(self, settings: GenerationSettings) -> dict:
        """llama.cpp sampler arguments for ``settings`` (no min-p/top-k cut that transformers would not make)."""
        self.check_settings(settings)
        if settings.do_sample:
            return dict(temp=float(settings.temperature), top_p=float(settings.top_p), top_k=0, min_p=0.0,
                        repeat_penalty=float(settings.repetition_penalty))
        return dict(temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=float(settings.repetition_penalty))

    @contextmanager
    def _turn(self, stop_event: threading.Event):
        """Hold the model for one request; gives up (yields False) if ``stop_event`` is set while waiting."""
        while not self._lock.acquire(timeout=0.05):
            if stop_event.is_set():
                yield False
                return
        try:
            yield True
        finally:
            self._lock.release()

    def stream(self, prompt: str | Prompt, settings: GenerationSettings | None = None,
               stop_event: threading.Event | None = None, min_interval: float = 0.05) -> Iterator[StreamUpdate]:
        """Yield the growing answer; ``stop_event`` ends this request (checked between tokens)."""
        import llama_cpp

        settings = settings or GenerationSettings()
        stop_event = stop_event or threading.Event()
        sampling = self._sampling(settings)
        ids = list(self.fit(prompt, settings).ids)
        start = time.perf_counter()
        new: list[int] = []
        text, first, last = "", None, 0.0
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with self._turn(stop_event) as ready:
            if ready:
                note = self.encode(prompt.prefix) if isinstance(prompt, Prompt) and prompt.prefix is not None else []
                # The prompt but its last token on the grid (the note's end is a mark); generate evaluates the last.
                try:
                    self.last_prefix_hit = self._evaluate(ids, len(ids) - 1, len(note), stop_event)
                except Exception as exc:
                    raise _generation_error(exc) from exc
                # Draft from the prompt only for greedy answers that ask for it (the same tokens, sooner).
                greedy = not settings.do_sample and settings.prompt_lookup > 0
                self.llm.draft_model = self._draft if greedy else None
                tokens = self.llm.generate(ids, reset=True, **sampling)  # a generator: runs once iterated
                try:
                    for token in tokens if not stop_event.is_set() else ():  # Stop while the prompt was read
                        if first is None:
                            first = time.perf_counter() - start
                        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                            break
                        piece = self._token_bytes(token)
                        if not new and self._spm and piece.startswith(b" "):
                            piece = piece[1:]  # sentencepiece drops the first word's space, as transformers does
                        new.append(int(token))
                        text += decoder.decode(piece)
                        if len(new) >= settings.max_new_tokens or stop_event.is_set():
                            break
                        now = time.perf_counter()
                        if now - last >= min_interval:
                            last = now
                            yield StreamUpdate(text, len(new), now - start, prompt_tokens=len(ids),
                                               first_token_s=first)
                except Exception as exc:
                    raise _generation_error(exc) from exc
                finally:
                    tokens.close()
                self._keep_note(ids, common_prefix(note, ids, len(ids) - 1))
        # A character the answer stopped in the middle of (Stop, the token limit) is left out, not shown as "\ufffd":
        # the decoder's unfinished bytes are dropped (no final decode).
        yield StreamUpdate(text, len(new), time.perf_counter() - start, done=True, stopped=stop_event.is_set(),
                           prompt_tokens=len(ids), first_token_s=first)

    # Notes kept for reuse -----------------------------------------------------------------------------------------
    def _save(self) -> ctypes.Array:
        """The context's state now (its KV cache), as llama.cpp serialises it."""
        import llama_cpp

        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_get_size(ctx)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_get_data(ctx, buf, size)
        return (ctypes.c_uint8 * n).from_buffer_copy(buf) if n < size else buf

    def _evaluate(self, ids: list[int], end: int, mark: int, stop: Stop | None = None,
                  progress: Progress | None = None) -> int:
        """Bring ``ids[:end]`` into the context: reuse the longest prefix known (``_resume``), then evaluate the rest
        block by block on the grid (``block_ends``; ``stop`` is checked between blocks). Returns the tokens reused."""
        start = self._resume(ids, end, mark)
        try:
            read_in_pieces(ids[:end], start, self._unit, self.llm.eval, stop, progress,
                           block_ends(start, end, self._unit, mark))
        finally:  # the context's blocks end where the evaluation stopped (``end``, or short of it)
            self._grid = (mark, self.llm.n_tokens)
        return start

    def _resume(self, ids: list[int], limit: int, mark: int) -> int:
        """Bring the longest reusable prefix of ``ids`` (at most ``limit`` tokens) into the context, what it holds
        already or a saved state that gives more, each cut back to the grid of ``mark`` (``reuse_point``). Returns
        that prefix's length (the tokens not to evaluate)."""
        import llama_cpp

        llm = self.llm
        own = common_prefix(llm.input_ids[:llm.n_tokens].tolist(), ids, limit)
        start = reuse_point(own, self._unit, mark, self._grid)
        key, state, grid, n = self.states.best(ids, limit)
        if state is not None and (saved := reuse_point(n, self._unit, mark, grid)) > start:
            if llama_cpp.llama_state_set_data(llm._ctx.ctx, state, len(state)) != len(state):
                raise GenerationError("llama.cpp could not restore a saved note state.")
            llm.input_ids[:len(key)] = key
            self.states.hits += 1
            start = saved
        llm.n_tokens = start  # eval drops the context's cells after this
        return start

    def _keep_note(self, ids: list[int], keep: int) -> None:
        """Save the context's state after an answer when its note (``ids[:keep]``) is not kept yet (follow-ups
        restore it); the question and answer in it are dropped when it is restored."""
        keep = min(keep, self.llm.n_tokens)
        if keep >= MIN_STATE_TOKENS and self.states.max_entries > 0 and not self.states.covers(ids[:keep]):
            self.states.store(ids[:keep], self._save(), self._grid)

    def prefill(self, prefix: str, stop: Stop | None = None, progress: Progress | None = None) -> Prefilled:
        """Evaluate ``prefix`` into the context block by block on the grid (``block_ends``: ``n_ubatch`` tokens each,
        the same blocks a cold Ask evaluates), continuing from what is kept, and save the state; ``stop`` is checked
        between blocks and the blocks done are kept (see ``Engine.prefill``)."""
        stop = stop if stop is not None else threading.Event()
        with self._turn(stop) as ready:
            if not ready or self._closed:  # tokenising needs the model: only under the lock, never after close
                return Prefilled(0, 1)
            ids = self.encode(prefix)
            self.check_prefix(len(ids))
            if len(ids) < MIN_STATE_TOKENS:
                return Prefilled(0, len(ids))
            if self.states.covers(ids):
                return Prefilled(len(ids), len(ids))
            try:
                self._evaluate(ids, len(ids), len(ids), stop, progress)
            except Exception as exc:
                raise _generation_error(exc) from exc
            done = self.llm.n_tokens
            if done >= MIN_STATE_TOKENS and not self.states.covers(ids[:done]):
                self.states.store(ids[:done], self._save(), self._grid)
        return Prefilled(done, len(ids))

    def cache_usage(self) -> CacheUsage:
        s = self.states
        return CacheUsage(len(s), s.max_entries, s.nbytes, s.max_bytes)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.llm.close()


def _generation_error(exc: BaseException) -> GenerationError:
    if isinstance(exc, GenerationError):
        return exc
    if isinstance(exc, MemoryError) or "memory" in str(exc).lower():
        return GenerationError("Out of memory while generating. Lower max new tokens, shorten the note, or use a "
                               "smaller quantisation (q4_k_m).")
    return GenerationError(f"llama.cpp failed: {type(exc).__name__}: {exc}")


# Loading ---------------------------------------------------------------------------------------------------------

def gguf_path(model: str, gguf_file: str | None = None, revision: str | None = None) -> tuple[Path, str | None]:
    """The .gguf file named by ``model`` (a file, a folder + ``gguf_file``, or a hub repo + ``gguf_file``,
    downloaded) and the hub commit it came from (``None`` for a local file)."""
    model = model.strip()
    path = Path(model).expanduser()
    if path.is_file():
        if gguf_file:
            raise ModelLoadError(f"--gguf-file names a file inside a folder or hub repo, but --model {model} is "
                                 "already a file.")
        return path, None
    if path.is_dir():
        if gguf_file:
            target = path / gguf_file
            if not target.is_file():
                raise ModelLoadError(f"{gguf_file} is not in {path}.")
            return target, None
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0], None
        names = ", ".join(p.name for p in found) or "none"
        raise ModelLoadError(f"{path} is a folder: name the GGUF file in it with --gguf-file (found: {names}).")
    if model.lower().endswith(".gguf") or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelLoadError(f"GGUF file not found: {path}")
    if not gguf_file:
        raise ModelLoadError(f"{model} looks like a Hugging Face repo: name the GGUF file in it with --gguf-file "
                             "(e.g. --gguf-file model.Q4_K_M.gguf).")
    try:
        from huggingface_hub import hf_hub_download

        local = hf_hub_download(model, gguf_file, revision=revision)
    except Exception as exc:  # offline, missing file, no access
        why = ("you are offline (HF_HUB_OFFLINE=1) and it is not in the local cache" if hub_offline() else
               f"it could not be downloaded ({type(exc).__name__}: {exc})")
        raise ModelLoadError(f"Cannot get {gguf_file} from {model} on the Hugging Face hub: {why}. "
                             "Download it on a connected machine and pass the file with --model FILE.gguf.") from exc
    local_path = Path(local)
    commit = local_path.parent.name if local_path.parent.parent.name == "snapshots" else None
    return local_path, commit


def _fingerprint(path: Path) -> str:
    """A short content fingerprint: the size and the first 4 MiB (header, metadata, vocabulary, first tensors)."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as f:
        h.update(f.read(4 << 20))
    return "gguf-" + h.hexdigest()[:12]


def _spec_for(options: LoadOptions, path: Path, metadata: dict[str, str]) -> ModelSpec:
    """The registry entry this GGUF is a conversion of: by the hub repo, the folder, the file or its metadata name."""
    stem = path.name.split(".")[0]
    candidates = [options.model, str(path.parent), stem, metadata.get("general.name", ""),
                  metadata.get("general.basename", "")]
    for c in candidates:
        spec = lookup(c) if c else None
        if spec is not None:
            return spec
    return resolve(stem)



def quiet_openmp() -> None:
    """Let llama.cpp's idle OpenMP threads sleep instead of spinning (unless ``OMP_WAIT_POLICY`` is set already).

    Requests reach the model from different threads (the page's workers, the note reader), and each calling thread
    gets its own OpenMP team; a spinning idle team took the cores from the next one. Measured on this 2-core machine
    (515M q4_k_m, 24 greedy tokens right after another thread evaluated a prompt): 0.9-1.9 tok/s against 2.2-15.6
    solo; with passive waiting 10.4-14.3 against 13.2-28.6. It takes effect before llama.cpp's library loads.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load(options: LoadOptions) -> LlamaCppEngine:
    """Load the GGUF ``options`` name; every failure becomes a ``ModelLoadError``.

    ``options.extra["llama_cpp"]`` holds further ``llama_cpp.Llama`` arguments (e.g. ``flash_attn``, ``type_k``,
    ``kv_overrides``) for programmatic use.
    """
    quiet_openmp()
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    own = options.options_for(Options)
    path, commit = gguf_path(options.model, own.gguf_file, options.revision)
    notices: list[str] = []
    if own.n_gpu_layers and not llama_cpp.llama_supports_gpu_offload():
        notices.append(f"--n-gpu-layers {own.n_gpu_layers} was asked for, but this llama-cpp-python build has "
                       "no GPU support: running on the CPU.")
    try:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True  # the metadata only: no weights, no context
        probe = LlamaModel(path_model=str(path), params=params, verbose=False)
        metadata = dict(probe.metadata())
        probe.close()
        trained = int(metadata[f"{metadata.get('general.architecture', 'llama')}.context_length"])
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        raise ModelLoadError(f"llama.cpp could not read {path}: {exc}. Is it a GGUF file (made by "
                             "`python -m asclepius_ui.convert` or published as .gguf)?") from exc
    is_demo = marks_demo(path.parent)
    spec = REGISTRY[DEMO_NAME] if is_demo else _spec_for(options, path, metadata)
    context = trained
    if spec.known:
        if spec.context_length != trained:
            notices.append(f"The GGUF says its context is {trained} tokens; {spec.name} was trained with "
                           f"{spec.context_length}. Using {min(trained, spec.context_length)}.")
        context = min(trained, spec.context_length)
    else:
        notices.append(f"{path.name} is not a known Asclepius variant: using the {options.template or 'asclepius'} "
                       "template. Pick another with --template.")
    if options.context_length and options.context_length < context:
        notices.append(f"Context limited to {options.context_length} tokens by --context-length (model: {context}).")
        context = int(options.context_length)
    draft = {}
    if own.draft_prompt_lookup > 0:  # speculative drafts copied from the prompt; keeps every position's logits
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        draft = dict(draft_model=LlamaPromptLookupDecoding(num_pred_tokens=int(own.draft_prompt_lookup)),
                     logits_all=True)
    try:
        threads = int(own.threads or physical_cores())
        llm = llama_cpp.Llama(str(path), n_ctx=context, n_batch=min(int(own.n_batch), context),
                              n_ubatch=min(int(own.n_ubatch), int(own.n_batch), context), n_threads=threads,
                              n_threads_batch=threads, n_gpu_layers=int(own.n_gpu_layers or 0),
                              flash_attn=own.flash_attn == "on", last_n_tokens_size=context, verbose=False, **draft,
                              **options.extra.get("llama_cpp", {}))
    except (ValueError, RuntimeError, OSError, MemoryError) as exc:
        raise ModelLoadError(f"llama.cpp could not load {path}: {exc}. Not enough memory? Try a smaller "
                             "quantisation (q4_k_m) or --context-length.") from exc
    file_type = file_types().get(int(metadata.get("general.file_type", -1)), "unknown")
    if draft and file_type not in ("f32", "f16", "bf16"):
        # Measured (bench/generation.py, random 515M LLaMA): f16 drafts gave the same greedy tokens, 2-3.7x faster;
        # q4_k_m gave other tokens on every task and no reliable speed-up. llama.cpp computes a batch of drafted
        # positions with other quantised kernels than one position at a time, so near-ties can flip.
        notices.append(f"--draft-prompt-lookup on a {file_type} GGUF: llama.cpp checks drafted tokens with other "
                       "kernels than one token at a time, so greedy answers may differ slightly from answers without "
                       "drafting. Use an f16 GGUF where answers must match exactly.")
    return LlamaCppEngine(llm=llm, path=path, spec=spec, options=options,
                          template=options.template or spec.template, context_length=int(context),
                          precision=f"gguf-{file_type}", revision=commit or _fingerprint(path), is_demo=is_demo,
                          notices=notices, states=StateCache(int(own.kv_states), int(own.kv_states_bytes)))
