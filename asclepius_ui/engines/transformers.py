"""The transformers backend: a causal LM in full precision, 8-bit or 4-bit, streamed, with a per-request stop.

Two speed-ups that never change the tokens of a greedy answer:

* **Prefix reuse.** The Asclepius prompt puts the note before the question, so every follow-up question on one
  note starts with the same tokens. The KV cache of that note part is kept (``PrefixCache``, a small LRU keyed by
  the exact token ids; ``LoadOptions.extra["prefix_cache_entries"]``/``["prefix_cache_bytes"]``, 0 entries = off)
  and a follow-up only processes its question: time to first token drops to a fraction.
* **Prompt-lookup decoding** (``GenerationSettings.prompt_lookup`` > 0, greedy only): drafts tokens by matching
  the last words against the prompt and verifies them in one forward pass, faster when the answer copies the note.
  It streams like plain greedy decoding. transformers' assisted decoding re-feeds the whole prompt on its first
  step, so it cannot start from a cached prefix: a follow-up that reuses the note decodes without drafts.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..demo import model_name
from ..errors import GenerationError, ModelLoadError
from ..registry import DEMO_NAME, REGISTRY, ModelSpec, resolve
from ..tokenization import encode_prompt, pad_token_id, tokenizer_spans
from . import torch_threads
from .base import (
    DEVICES,
    PRECISIONS,
    YIELD_S,
    CacheUsage,
    Capabilities,
    Engine,
    GenerationResult,
    GenerationSettings,
    LoadOptions,
    Prefilled,
    Progress,
    Prompt,
    Stop,
    StreamUpdate,
    hub_offline,
    marks_demo,
    read_in_pieces,
    reusable,
    unfinished_character,
)

if TYPE_CHECKING:  # torch and transformers load with the first model (flags and ``--help`` stay fast)
    import torch
    from transformers import DynamicCache


@dataclass
class Options:
    """The transformers backend's own load options (``LoadOptions(..., prefix_cache_entries=0)``); each field with
    help is a command-line flag."""

    prefix_cache_entries: int = field(default=4, metadata={
        "help": "notes whose KV cache is kept for follow-up questions (0: off)", "metavar": "N"})
    prefix_cache_bytes: int = field(default=2 * 2**30, metadata={
        "help": "memory those caches may take, in bytes (default 2 GiB)", "metavar": "BYTES"})
    prefill_chunk: int = field(default=512, metadata={
        "help": f"most tokens per step when a note is read ahead of the question; steps are sized to take about "
                f"{YIELD_S} s (an Ask waits at most one step)", "metavar": "N"})


def claims(options: LoadOptions) -> bool:
    """``--backend auto``: transformers takes whatever no other backend claimed (it is last in ``BACKENDS``)."""
    return True


PRECISION_LABELS = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "8bit": "8-bit (bitsandbytes)",
                    "4bit": "4-bit nf4 (bitsandbytes)"}


@functools.cache
def _hooks() -> tuple[type, type]:
    """The stopping criterion and the streamer, defined once torch and transformers are loaded."""
    import torch
    from transformers import StoppingCriteria
    from transformers.generation.streamers import BaseStreamer

    class EventStop(StoppingCriteria):
        """Stops generation when this request's event is set."""

        def __init__(self, event: threading.Event):
            self.event = event

        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)

    class IdQueue(BaseStreamer):
        """Hands new token ids to the consumer thread; decoding happens there, off the generation loop."""

        def __init__(self, skip: int):
            self.q: queue.SimpleQueue = queue.SimpleQueue()
            self._skip = skip  # generate() first puts the prompt ids

        def put(self, value) -> None:
            if self._skip:
                self._skip = 0
                return
            self.q.put(value.reshape(-1).tolist())

        def end(self) -> None:
            self.q.put(None)

    return EventStop, IdQueue


def _drain(q: queue.SimpleQueue, into: list[int]) -> bool:
    """Move every id already waiting in ``q`` into ``into``; True once the end marker has been taken."""
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return False
        if item is None:
            return True
        into.extend(item)


MIN_PREFIX_TOKENS = 16  # shorter shared prefixes are not worth a cache entry


class PrefixCache:
    """A small thread-safe LRU of KV caches keyed by the exact token ids of a prompt prefix (a note's part).

    Entries are never mutated once stored: ``lookup`` hands out a private copy (``generate`` grows the cache it is
    given). Bounded by ``max_entries`` and ``max_bytes``; ``max_entries=0`` turns reuse off. ``hits``, ``misses``
    and ``reused_tokens`` count what happened, so callers (tests, the benchmark) can see that reuse took place.
    """

    def __init__(self, max_entries: int = 4, max_bytes: int = 2 * 2**30):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], tuple[DynamicCache, int]] = OrderedDict()  # noqa: F821
        self._lock = threading.Lock()
        self.hits = self.misses = self.reused_tokens = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(n for _, n in self._entries.values())

    def lookup(self, ids: list[int], limit: int | None = None) -> tuple[DynamicCache | None, int]:
        """A private copy of the entry ``ids`` can reuse most of (at most ``limit`` tokens, default ``len(ids) - 1``:
        generate needs one new token), cropped to what they share, and that length.

        An entry of a note read ahead (``prefill``), whole or in part, serves a prompt that starts with it, even when
        the last token of the note part alone tokenises differently inside the prompt (``reusable``)."""
        if not self.enabled:
            return None, 0
        limit = len(ids) - 1 if limit is None else limit
        with self._lock:
            best, n = None, 0
            for k in self._entries:
                if (c := reusable(k, ids, limit)) > n:
                    best, n = k, c
            if best is None or n < MIN_PREFIX_TOKENS:
                self.misses += 1
                return None, 0
            self._entries.move_to_end(best)
            entry = self._entries[best][0]
            self.hits += 1
            self.reused_tokens += n
        # A private cache over the entry's tensors: only plain full-attention layers are stored (``_croppable``),
        # and those grow by ``torch.cat`` and crop by slicing, never in place, so the entry stays as it was without
        # copying its memory (a deep copy cost 20-90 ms of a read-ahead note's first token, measured).
        cache = copy.copy(entry)
        cache.layers = [copy.copy(layer) for layer in entry.layers]
        if cache.get_seq_length() > n:
            cache.crop(n - cache.get_seq_length())  # a negative count removes that many trailing tokens
        return cache, n

    def store(self, ids: list[int], cache: DynamicCache, compact: bool = True) -> bool:
        """Keep ``cache`` cropped to ``len(ids)`` tokens (it is cropped in place, then compacted: ``compact=False``
        for a cache that holds just ``ids`` in tensors of its own, a read-ahead's); True if kept."""
        n = len(ids)
        if not self.enabled or not _croppable(cache) or cache.get_seq_length() < n:
            return False
        cache.crop(n - cache.get_seq_length())  # a negative count removes that many trailing tokens
        nbytes = 0
        for layer in cache.layers:
            if compact:  # drop the generated tail's memory
                layer.keys, layer.values = layer.keys.clone(), layer.values.clone()
            nbytes += layer.keys.nbytes + layer.values.nbytes
        if nbytes > self.max_bytes:
            return False
        key = tuple(ids)
        with self._lock:
            for k in [k for k in self._entries if len(k) < n and key[:len(k)] == k]:
                del self._entries[k]  # a part of this note read earlier: this entry holds all of it
            self._entries[key] = (cache, nbytes)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries or sum(b for _, b in self._entries.values()) > self.max_bytes:
                self._entries.popitem(last=False)
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def covers(self, ids: list[int]) -> bool:
        """Whether an entry already holds all of ``ids``."""
        with self._lock:
            return any(len(k) >= len(ids) and k[:len(ids)] == tuple(ids) for k in self._entries)


def _croppable(cache) -> bool:
    """Only plain full-attention layers can be cut back to a prefix and reused as they are."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return isinstance(cache, DynamicCache) and bool(cache.layers) and all(
        type(layer) is DynamicLayer and layer.is_initialized for layer in cache.layers)


def _is_local(model: str) -> bool:
    p = Path(model).expanduser()
    return p.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1



def _check_folder(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"Model folder not found: {path}")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file; --model takes a model folder or a Hugging Face id.")
    if not (path / "config.json").exists():
        raise ModelLoadError(f"{path} is not a model folder: it has no config.json.")
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")]
    if not weights:
        raise ModelLoadError(f"{path} has a config.json but no weights (*.safetensors or pytorch_model*.bin).")
    tok_files = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")
    if not any((path / f).exists() for f in tok_files):
        raise ModelLoadError(f"{path} has no tokenizer (tokenizer.model or tokenizer.json).")


def _local_revision(path: Path) -> str:
    """A short fingerprint of a local folder: config plus weight file names and sizes."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for p in sorted(path.iterdir()):
        if p.suffix in (".safetensors", ".bin"):
            h.update(f"{p.name}:{p.stat().st_size}".encode())
    return "local-" + h.hexdigest()[:12]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device not in DEVICES:
        raise ModelLoadError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on the CPU."""
    if precision not in PRECISIONS:
        raise ModelLoadError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision != "auto":
        return precision
    import torch

    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def _quantization_config(precision: str, device: str):
    import torch

    from ..quantization import int8_config, nf4_config

    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or a broken native library
        raise ModelLoadError(f"{precision} loading needs bitsandbytes, which is not usable here ({exc}). "
                             "Install it with `pip install bitsandbytes`, or load in bf16/fp32.") from exc
    if precision == "8bit":
        return int8_config()
    return nf4_config(torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32)


CPU_4BIT_BLOCK = 32  # bitsandbytes packs 4-bit weights for AVX512-BF16 CPUs in blocks of 32 output rows


def cpu_4bit_packs(module) -> bool:
    """Whether bitsandbytes can repack this 4-bit layer for AVX512-BF16 CPUs."""
    state = getattr(module.weight, "quant_state", None)
    block = getattr(state, "blocksize", 64) or 64
    return module.out_features % CPU_4BIT_BLOCK == 0 and module.in_features % block == 0


def _plain_cpu_4bit_where_packing_fails(model: torch.nn.Module) -> int:
    """On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights on the first forward pass, which needs each
    layer's output width to be a multiple of 32 and its input width a multiple of the quantisation block. Layers
    that do not fit keep bitsandbytes' plain CPU path instead (same results, no repacking); returns how many."""
    n = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False) and not cpu_4bit_packs(module):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


@dataclass(eq=False)
class TransformersEngine(Engine):
    """A transformers model and tokenizer with what the app shows about them."""

    model: torch.nn.Module
    tokenizer: object
    spec: ModelSpec
    options: LoadOptions
    template: str
    context_length: int
    precision: str
    device: str
    revision: str
    is_demo: bool = False
    notices: list[str] = field(default_factory=list)
    prefix_cache: PrefixCache = field(default_factory=PrefixCache)
    capabilities: Capabilities = Capabilities(batch=True, prefix_cache=True, prompt_lookup=True, prefill=True)
    prefill_chunk: int = 512
    backend = "transformers"

    @property
    def model_id(self) -> str:
        return model_name(self.options.model)  # the folder's or file's name, never the path

    @property
    def precision_label(self) -> str:
        return PRECISION_LABELS[self.precision]

    @property
    def eos_token_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def encode(self, prompt: str) -> list[int]:
        """Prompt ids with BOS exactly once."""
        return encode_prompt(self.tokenizer, prompt)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return tokenizer_spans(self.tokenizer, text)

    def _generate_kwargs(self, settings: GenerationSettings, batch: int = 1) -> dict:
        """``generate`` keywords; prompt-lookup drafting only for one greedy sequence (its output is then the
        same token for token; transformers' assisted decoding takes one sequence and no beams)."""
        kw = dict(settings.to_kwargs(), eos_token_id=self.eos_token_ids, pad_token_id=pad_token_id(self.tokenizer))
        if settings.prompt_lookup > 0 and batch == 1 and settings.num_beams == 1 and not settings.do_sample:
            kw["prompt_lookup_num_tokens"] = int(settings.prompt_lookup)
        return kw

    def _prefix_length(self, prompt: Prompt) -> int:
        """How many leading ids of ``prompt`` depend only on the note (the prompt up to the question), 0 when none.

        The note part is tokenised alone and compared with the prompt's ids: only the tokens on which both agree
        count, so a boundary that tokenises differently inside the prompt costs a token or two, never correctness.
        """
        if prompt.prefix is None:
            return 0
        ids = prompt.ids
        alone = self._prefix_ids(prompt.prefix)
        n = 0
        for a, b in zip(alone, ids, strict=False):
            if a != b:
                break
            n += 1
        n = min(n, len(ids) - 1)  # generate needs at least one new token to process
        return n if n >= MIN_PREFIX_TOKENS else 0

    def _prefix_ids(self, prefix: str) -> list[int]:
        """The note part's ids alone, remembered for the last note: its follow-up questions tokenise it once."""
        last = getattr(self, "_last_prefix", None)
        if last is None or last[0] != prefix:
            last = self._last_prefix = (prefix, self.encode(prefix))
        return last[1]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def prefill(self, prefix: str, stop: Stop | None = None, progress: Progress | None = None) -> Prefilled:
        """Read ``prefix`` into the ``PrefixCache`` in pieces (``read_in_pieces``: about ``YIELD_S`` each, at most
        ``prefill_chunk`` tokens), continuing from what is cached; ``stop`` is checked between chunks and the chunks
        done are kept (see ``Engine.prefill``)."""
        import torch
        from transformers import DynamicCache

        ids = self.encode(prefix)
        self.check_prefix(len(ids))
        if not self.prefix_cache.enabled or len(ids) < MIN_PREFIX_TOKENS:
            return Prefilled(0, len(ids))
        if self.prefix_cache.covers(ids):
            return Prefilled(len(ids), len(ids))
        cache, done = self.prefix_cache.lookup(ids, limit=len(ids))
        cache = cache if cache is not None else DynamicCache(config=self.model.config)
        start, box = done, {"done": done}

        def evaluate(piece: list[int]) -> None:
            chunk = torch.tensor([piece], device=self.model.device)
            self.model(input_ids=chunk, cache=cache, use_cache=True, logits_to_keep=1)

        def work() -> None:
            try:
                with torch.inference_mode():
                    box["done"] = read_in_pieces(ids, start, max(1, int(self.prefill_chunk)), evaluate, stop,
                                                 progress)
            except BaseException as exc:  # reported in the caller's thread
                box["error"] = exc

        torch_threads.run(work).wait()  # on the thread ``generate`` runs on (see ``torch_threads``)
        if "error" in box:
            raise _generation_error(box["error"]) from box["error"]
        done = box["done"]
        if done > start:  # every chunk grew the layers by ``torch.cat``: new tensors, exactly ``done`` long
            self.prefix_cache.store(ids[:done], cache, compact=False)
        return Prefilled(done, len(ids))

    def cache_usage(self) -> CacheUsage:
        c = self.prefix_cache
        return CacheUsage(len(c), c.max_entries, c.nbytes, c.max_bytes)

    def stream(self, prompt: str | Prompt, settings: GenerationSettings | None = None,
               stop_event: threading.Event | None = None, min_interval: float = 0.05) -> Iterator[StreamUpdate]:
        """Yield the growing answer; setting ``stop_event`` ends this request (and no other) early.

        Token ids are handed over through a queue and decoded here, at most every ``min_interval``
        seconds, so streaming costs the generation loop next to nothing. Beam search is not streamed, and
        ``min_interval=inf`` asks for no intermediate updates: then the one update arrives when it is done.
        """
        import torch
        from transformers import DynamicCache, StoppingCriteriaList

        settings = settings or GenerationSettings()
        stop_event = stop_event or threading.Event()
        prompt = self.fit(prompt, settings)
        ids = list(prompt.ids)
        kwargs = self._generate_kwargs(settings)
        updates = settings.num_beams == 1 and min_interval != float("inf")
        event_stop, id_queue = _hooks()
        streamer = id_queue(skip=1) if updates else None
        input_ids = torch.tensor([ids], device=self.model.device)
        box: dict = {}
        # Prefix reuse: start from the note's cached KV (a private copy) and keep this note's for the next question.
        # Beam search reorders and widens the cache, so it starts from scratch.
        keep = self._prefix_length(prompt) if self.prefix_cache.enabled and settings.num_beams == 1 else 0
        cache, reused = self.prefix_cache.lookup(ids) if keep else (None, 0)
        if reused:
            # transformers' assisted decoding feeds the whole prompt on its first step, so it cannot start from a
            # cached prefix: a follow-up drops prompt-lookup drafting (a saved prefill is worth more on a CPU).
            kwargs.pop("prompt_lookup_num_tokens", None)
        elif keep:
            cache = DynamicCache(config=self.model.config)
        if cache is not None:
            kwargs["cache"] = cache  # transformers 5 names it `cache` (`past_key_values` is deprecated)

        def work() -> None:
            try:
                with torch.inference_mode():
                    box["out"] = self.model.generate(
                        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([event_stop(stop_event)]), **kwargs)
                if keep > reused:
                    self.prefix_cache.store(ids[:keep], cache)
            except BaseException as exc:  # reported in the consumer thread
                box["error"] = exc
            finally:
                if streamer is not None:
                    streamer.end()

        start = time.perf_counter()
        finished_work = torch_threads.run(work)
        new: list[int] = []
        last = 0.0
        first: float | None = None
        if streamer is not None:
            while True:
                item = streamer.q.get()  # wait for the next token (or the end)
                if item is None:
                    break
                if first is None:
                    first = time.perf_counter() - start
                new.extend(item)
                finished = _drain(streamer.q, new)
                now = time.perf_counter()
                if now - last >= min_interval:
                    last = now
                    yield StreamUpdate(self._stable_text(self._strip_eos(new)), len(new), now - start,
                                       prompt_tokens=len(ids), first_token_s=first)
                if finished:
                    break
                # Wake at most once per interval rather than once per token: the GIL stays with generate().
                time.sleep(max(0.0, last + min_interval - time.perf_counter()))
        finished_work.wait()
        if "error" in box:
            raise _generation_error(box["error"]) from box["error"]
        if streamer is None:
            new = box["out"][0, len(ids):].tolist()
        new = self._strip_eos(new)
        yield StreamUpdate(self._answer_text(new), len(new), time.perf_counter() - start, done=True,
                           stopped=stop_event.is_set(), prompt_tokens=len(ids), first_token_s=first)

    @functools.cached_property
    def _byte_pieces(self) -> dict[int, int]:
        """Sentencepiece byte-fallback pieces (``<0xE2>``), id -> byte: a character may span several of them."""
        vocab = self.tokenizer.get_vocab()
        return {i: int(t[3:5], 16) for t, i in vocab.items() if len(t) == 6 and t.startswith("<0x") and t.endswith(">")}

    def _stable_text(self, ids: list[int]) -> str:
        """The text of ``ids`` without a trailing partial character (it arrives with the next update)."""
        end = len(ids)
        while end and ids[end - 1] in self._byte_pieces:
            end -= 1
        text = self._decode(ids[:end])
        return text.rstrip("\ufffd")

    def _answer_text(self, ids: list[int]) -> str:
        """The finished answer: a character it stopped in the middle of (Stop, the token limit) is left out, not
        shown as "\ufffd" (as llama.cpp's engine and the streamed updates leave it out)."""
        tail = []
        for i in reversed(ids[-4:]):  # a UTF-8 character is at most 4 bytes
            if i not in self._byte_pieces:
                break
            tail.insert(0, self._byte_pieces[i])
        cut = unfinished_character(bytes(tail))
        return self._decode(ids[:len(ids) - cut])

    def _strip_eos(self, ids: list[int]) -> list[int]:
        eos = set(self.eos_token_ids)
        for i, t in enumerate(ids):
            if t in eos:
                return ids[:i]
        return ids

    def generate_batch(self, prompts: list[str | Prompt], settings: GenerationSettings | None = None,
                       ) -> list[GenerationResult]:
        """Answer several prompts in one left-padded batch (for batch evaluation on a GPU)."""
        import torch

        settings = settings or GenerationSettings()
        kwargs = self._generate_kwargs(settings, batch=len(prompts))
        encoded = [list(self.fit(p, settings).ids) for p in prompts]
        width = max(len(ids) for ids in encoded)
        pad = kwargs["pad_token_id"]
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=self.model.device)
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        except Exception as exc:
            raise _generation_error(exc) from exc
        seconds = time.perf_counter() - start
        results = []
        for row, ids in zip(out, encoded, strict=True):
            new = self._strip_eos(row[width:].tolist())
            results.append(GenerationResult(self._answer_text(new), len(new), seconds, done=True,
                                            prompt_tokens=len(ids)))
        return results


def _generation_error(exc: BaseException) -> GenerationError:
    import torch

    text = str(exc)
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in text.lower():
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return GenerationError("Out of memory while generating. Lower max new tokens, shorten the note, or load "
                               "the model in 8-bit or 4-bit.")
    if isinstance(exc, GenerationError):
        return exc
    return GenerationError(f"Generation failed: {type(exc).__name__}: {text}")



def load(options: LoadOptions) -> TransformersEngine:
    """Load model and tokenizer as ``options`` say; every failure becomes a ``ModelLoadError``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    own = options.options_for(Options)
    model = options.model.strip()
    if not model:
        raise ModelLoadError("No model given: pass --model with a Hugging Face id or a local folder.")
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device)
    local = _is_local(model)
    path = Path(model).expanduser() if local else None
    if path is not None:
        _check_folder(path)
    is_demo = marks_demo(path)
    spec = REGISTRY[DEMO_NAME] if is_demo else resolve(model)
    if spec.local_only and not local and spec.hub_id is None:
        raise ModelLoadError(f"{spec.name} is not on the Hugging Face hub: {spec.note}")
    source = str(path) if path is not None else (spec.hub_id or model)

    kwargs: dict = {"revision": options.revision} if options.revision and not local else {}
    if precision in ("8bit", "4bit"):
        kwargs["quantization_config"] = _quantization_config(precision, device)
        kwargs["device_map"] = "auto" if device == "cuda" else {"": "cpu"}
    else:
        kwargs["dtype"] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        kwargs["device_map"] = "auto" if device == "cuda" else {"": "cpu"}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **({"revision": options.revision} if "revision" in kwargs
                                                             else {}))
        lm = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except ModelLoadError:
        raise
    except OSError as exc:
        if local:
            raise ModelLoadError(f"Could not load the model in {source}: {exc}") from exc
        hint = ("You are offline (HF_HUB_OFFLINE=1) and it is not in the local cache. " if hub_offline() else
                "It could not be downloaded (no network?) and is not in the local cache. ")
        raise ModelLoadError(f"Cannot load {source!r} from the Hugging Face hub. {hint}"
                             "Download it on a connected machine and pass the folder with --model DIR.") from exc
    except (ImportError, RuntimeError, ValueError) as exc:
        text = str(exc)
        if "bitsandbytes" in text.lower() or precision in ("8bit", "4bit"):
            raise ModelLoadError(f"{precision} loading failed: bitsandbytes is not usable on this platform ({text}). "
                                 "Load in bf16 or fp32 instead.") from exc
        if "out of memory" in text.lower():
            raise ModelLoadError(f"Out of memory loading {source}. Try --load-in-8bit or --load-in-4bit.") from exc
        raise ModelLoadError(f"Could not load {source}: {type(exc).__name__}: {text}") from exc
    lm.eval()
    if precision == "4bit" and device == "cpu":
        _plain_cpu_4bit_where_packing_fails(lm)

    notices = []
    if not spec.known:
        notices.append(f"{source} is not a known Asclepius variant: using the "
                       f"{options.template or 'asclepius'} template. Pick another with --template.")
    config_ctx = getattr(lm.config, "max_position_embeddings", None)
    context = spec.context_length if spec.known else (config_ctx or spec.context_length)
    if config_ctx:
        context = min(context, config_ctx)
    if path is not None:
        revision = _local_revision(path)
    else:
        revision = getattr(lm.config, "_commit_hash", None) or options.revision or "unknown"
    cache = PrefixCache(int(own.prefix_cache_entries), int(own.prefix_cache_bytes))
    return TransformersEngine(model=lm, tokenizer=tokenizer, spec=spec, options=options,
                  template=options.template or spec.template, context_length=int(context), precision=precision,
                  device=device, revision=revision, is_demo=is_demo, notices=notices, prefix_cache=cache,
                  prefill_chunk=int(own.prefill_chunk))
