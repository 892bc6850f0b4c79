"""Convert a checkpoint to GGUF once, for llama.cpp on a laptop: ``python -m asclepius_ui.convert``.

    python -m asclepius_ui.convert --model starmpcc/Asclepius-7B --out asclepius-7b.q4_k_m.gguf --quant q4_k_m --verify

Steps: (1) find the checkpoint (a folder, a registry name or a hub id), (2) find llama.cpp's own converter
(``convert_hf_to_gguf.py`` and ``gguf-py`` from the llama-cpp-python source distribution of the installed version,
fetched once with pip into a cache; or ``--llama-cpp DIR``), (3) run it as a subprocess to write an f16 GGUF,
(4) quantise with ``llama_cpp.llama_model_quantize`` (q8_0, q4_k_m), (5) with ``--verify``, compare the first 32
greedy tokens of the transformers model and the GGUF on a few prompts.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .engines.base import hub_offline
from .errors import InputError, ModelLoadError, UserError

QUANTS = ("f16", "q8_0", "q4_k_m")
# What llama_model_quantize calls each type (llama.h: enum llama_ftype).
FTYPE_NAMES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
CONVERTER = "convert_hf_to_gguf.py"
SDIST_PREFIX = "vendor/llama.cpp/"  # where the llama-cpp-python sdist keeps llama.cpp
NEEDED = (CONVERTER, "conversion/", "gguf-py/", "LICENSE")
# For a config.json without "architectures" (llama.cpp's converter needs it): the class for each model_type.
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}
VERIFY_TOKENS = 32


class ConvertError(UserError):
    """A conversion step failed; the message names the step and what to do."""


@dataclass
class ConvertOptions:
    """What to convert and how (the CLI flags)."""

    model: str
    out: Path
    quant: str = "f16"
    verify: bool = False
    llama_cpp: Path | None = None
    revision: str | None = None
    threads: int | None = None
    cache_dir: Path | None = None
    progress: bool = True


@dataclass
class Agreement:
    """How many of the first greedy tokens of the two models agree on one prompt."""

    prompt: str
    reference: list[int]
    gguf: list[int]

    @property
    def prefix(self) -> int:
        """Tokens that agree before the first difference."""
        n = 0
        for a, b in zip(self.reference, self.gguf, strict=False):
            if a != b:
                break
            n += 1
        return n

    @property
    def same_positions(self) -> int:
        return sum(a == b for a, b in zip(self.reference, self.gguf, strict=False))


@dataclass
class ConvertResult:
    """The written file and what the steps reported."""

    out: Path
    quant: str
    bytes: int
    fallback_tensors: int = 0
    total_tensors: int = 0
    agreements: list[Agreement] = field(default_factory=list)


# Step 1: the checkpoint ----------------------------------------------------------------------------------------
def resolve_checkpoint(model: str, revision: str | None = None) -> Path:
    """A local folder for ``model`` (a folder, a registry name or a hub id; hub ones are downloaded)."""
    path = Path(model).expanduser()
    if path.exists():
        if path.is_file():
            raise InputError(f"{path} is a file; --model takes a model folder or a Hugging Face id "
                             "(a .gguf file needs no conversion).")
        check_checkpoint(path)
        return path
    from .registry import lookup

    spec = lookup(model)
    repo = spec.hub_id if spec is not None and spec.hub_id else model
    if spec is not None and spec.local_only and not spec.hub_id:
        raise InputError(f"{spec.name} is not on the Hugging Face hub: {spec.note}")
    if repo.count("/") != 1 or model.startswith((".", "/", "~")):
        raise InputError(f"Model folder not found: {path}")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo, revision=revision, allow_patterns=[
            "*.json", "*.model", "*.safetensors", "*.bin", "tokenizer*"])
    except Exception as exc:  # offline, unknown repo, no access: all end here with the fix
        why = "you are offline (HF_HUB_OFFLINE=1) and it is not in the local cache" if hub_offline() else \
            f"it could not be downloaded ({type(exc).__name__}: {exc})"
        raise ModelLoadError(f"Cannot get {repo!r} from the Hugging Face hub: {why}. Download it on a connected "
                             "machine and pass the folder with --model DIR.") from exc
    check_checkpoint(Path(folder))
    return Path(folder)


def check_checkpoint(path: Path) -> None:
    """A clear error unless ``path`` holds a config, weights and a tokenizer."""
    if not (path / "config.json").exists():
        raise InputError(f"{path} is not a model folder: it has no config.json.")
    if not any(p.suffix in (".safetensors", ".bin") for p in path.iterdir()):
        raise InputError(f"{path} has a config.json but no weights (*.safetensors or pytorch_model*.bin).")
    if not any((path / f).exists() for f in ("tokenizer.model", "tokenizer.json")):
        raise InputError(f"{path} has no tokenizer (tokenizer.model or tokenizer.json).")


def staged_checkpoint(path: Path, stage: Path) -> Path:
    """``path`` itself, or a folder of links to it with ``architectures`` added to config.json when it is missing
    (a config saved without a model class, e.g. ``LlamaConfig.save_pretrained``)."""
    config = json.loads((path / "config.json").read_text())
    if config.get("architectures"):
        return path
    arch = ARCHITECTURES.get(str(config.get("model_type", "")))
    if arch is None:
        raise ConvertError(f"{path}/config.json names no architecture and its model_type "
                           f"{config.get('model_type')!r} is not one this command knows ({', '.join(ARCHITECTURES)}).")
    stage.mkdir(parents=True, exist_ok=True)
    for f in path.iterdir():
        if f.name != "config.json":
            try:
                (stage / f.name).symlink_to(f.resolve())
            except OSError:  # no symlinks (Windows without developer mode)
                shutil.copy2(f, stage / f.name)
    (stage / "config.json").write_text(json.dumps({**config, "architectures": [arch]}, indent=2))
    return stage


# Step 2: llama.cpp's converter ---------------------------------------------------------------------------------
def installed_llama_cpp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        raise ConvertError("llama-cpp-python is not installed: `pip install -r requirements.txt` "
                           "(it compiles llama.cpp: cmake and a C++ compiler are needed).") from None


def default_cache_dir() -> Path:
    base = os.environ.get("ASCLEPIUS_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "asclepius-studio"


def find_converter(llama_cpp_dir: Path) -> Path:
    """``convert_hf_to_gguf.py`` in a llama.cpp checkout or an unpacked llama-cpp-python sdist."""
    for candidate in (llama_cpp_dir, llama_cpp_dir / "vendor" / "llama.cpp"):
        if (candidate / CONVERTER).is_file() and (candidate / "gguf-py").is_dir():
            return candidate / CONVERTER
    raise ConvertError(f"{llama_cpp_dir} has no {CONVERTER} with gguf-py beside it: pass a llama.cpp checkout "
                       "or an unpacked llama-cpp-python source distribution with --llama-cpp.")


def fetch_converter(cache_dir: Path, version: str, progress: bool = True) -> Path:
    """llama.cpp's converter from the llama-cpp-python sdist of ``version``, unpacked once into ``cache_dir``."""
    target = cache_dir / f"llama.cpp-{version}"
    if (target / CONVERTER).is_file():
        return target / CONVERTER
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
               "--disable-pip-version-check", "-q", "-d", tmp, f"llama-cpp-python=={version}"]
        if progress:
            print(f"  fetching the llama-cpp-python {version} source distribution with pip (once)", file=sys.stderr)
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise ConvertError(f"Could not fetch llama-cpp-python=={version}'s source with pip (no network to PyPI?):"
                               f"\n{(done.stderr or done.stdout).strip()[-1500:]}\nOn a machine without network, "
                               "unpack that sdist (or clone llama.cpp) and pass the folder with --llama-cpp DIR.")
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(archives[0]) as tar:
            members = []
            for m in tar.getmembers():
                inner = m.name.split("/", 1)[1] if "/" in m.name else ""
                if inner.startswith(SDIST_PREFIX) and inner[len(SDIST_PREFIX):].startswith(NEEDED):
                    m.name = inner[len(SDIST_PREFIX):]
                    members.append(m)
            tar.extractall(unpacked, members=members, filter="data")
        if not (unpacked / CONVERTER).is_file():
            raise ConvertError(f"The llama-cpp-python {version} sdist has no vendor/llama.cpp/{CONVERTER}.")
        unpacked.replace(target)
    return target / CONVERTER


# Step 3: the f16 GGUF --------------------------------------------------------------------------------------------
def run_converter(converter: Path, checkpoint: Path, out: Path, progress: bool = True) -> None:
    """Run llama.cpp's converter (f16 output) with a progress bar over the tensors it writes."""
    cmd = [sys.executable, str(converter), str(checkpoint), "--outfile", str(out), "--outtype", "f16"]
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # use the gguf-py beside the converter
    env["PYTHONUNBUFFERED"] = "1"
    tail: deque[str] = deque(maxlen=25)
    bar = tqdm(desc="  tensors converted", unit="tensor", disable=not progress, file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip())
        if "-->" in line:
            bar.update(1)
    rc = proc.wait()
    bar.close()
    if rc != 0 or not out.is_file():
        raise ConvertError(f"llama.cpp's converter failed (exit {rc}) on {checkpoint}:\n" + "\n".join(tail))


# Step 4: quantisation ----------------------------------------------------------------------------------------------
_TENSOR_LINE = re.compile(r"\[\s*(\d+)/\s*(\d+)\]")


def quantize(src: Path, dst: Path, quant: str, threads: int | None = None, progress: bool = True) -> tuple[int, int]:
    """Quantise the GGUF ``src`` into ``dst`` with ``llama_model_quantize``; returns (fallback, total) tensors.

    Tensors whose rows do not divide into the type's blocks (256 values for k-quants, 32 for q8_0) fall back to
    another type, as llama.cpp decides; the count is returned so the caller can say so.
    """
    import llama_cpp
    import llama_cpp._logger as llama_logger

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPE_NAMES[quant])
    params.nthread = int(threads or 0)
    bar = tqdm(desc=f"  tensors quantised ({quant})", unit="tensor", disable=not progress, file=sys.stderr)
    state = {"fallback": 0, "total": 0, "log": deque(maxlen=20)}

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace")
        state["log"].append(line)
        m = _TENSOR_LINE.search(line)
        if m:
            bar.total = state["total"] = int(m.group(2))
            bar.update(1)
        if "falling back" in line:
            state["fallback"] += 1

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    finally:
        llama_cpp.llama_log_set(llama_logger.llama_log_callback, ctypes.c_void_p(0))
        bar.close()
    if rc != 0 or not dst.is_file():
        raise ConvertError(f"llama.cpp could not quantise {src.name} to {quant} (code {rc}):\n"
                           + "".join(state["log"]).strip())
    return state["fallback"], state["total"]


# Step 5: verification --------------------------------------------------------------------------------------------
VERIFY_QUESTIONS = ("Summarize the hospital course.", "List the discharge medications.",
                    "What abbreviations are used and what do they mean?")


def verify_notes() -> list[str]:
    """The shipped example notes (or a short built-in note), one per verification question."""
    from .examples import example_notes

    notes = list(example_notes().values()) or [
        "Patient: 64-year-old man. CXR showed RLL infiltrate; treated for CAP with ceftriaxone and improved."]
    return [notes[i % len(notes)] for i in range(len(VERIFY_QUESTIONS))]


def greedy_reference(checkpoint: Path, n: int) -> list[tuple[str, list[int], list[int]]]:
    """(prompt, prompt ids, first ``n`` greedy ids) from the transformers model in fp32, EOS not stopping it.

    Each prompt is an Asclepius prompt on an example note, the note shortened until prompt and answer fit the
    model's context.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .prompts import build_prompt
    from .tokenization import encode_prompt

    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    model.eval()
    context = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    out = []
    with torch.inference_mode():
        for note, question in zip(verify_notes(), VERIFY_QUESTIONS, strict=True):
            prompt = build_prompt(note, question)
            ids = encode_prompt(tok, prompt)
            while len(ids) + n > context and note:
                note = note[: len(note) * 3 // 4]
                prompt = build_prompt(note, question)
                ids = encode_prompt(tok, prompt)
            past, step, new = None, torch.tensor([ids]), []
            for _ in range(n):
                res = model(input_ids=step, cache=past, use_cache=True)
                past = res.cache
                nxt = int(res.logits[0, -1].argmax())
                new.append(nxt)
                step = torch.tensor([[nxt]])
            out.append((prompt, ids, new))
    del model
    return out


def greedy_gguf(gguf: Path, prompt_ids: list[list[int]], n: int, threads: int | None = None) -> list[list[int]]:
    """The first ``n`` greedy ids of the GGUF for each prompt (the same prompt ids), EOS not stopping it."""
    import llama_cpp

    longest = max(len(ids) for ids in prompt_ids) + n + 8
    llm = llama_cpp.Llama(str(gguf), n_ctx=longest, n_threads=threads, n_threads_batch=threads, verbose=False)
    try:
        out = []
        for ids in prompt_ids:
            new = []
            for tok in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
                new.append(int(tok))
                if len(new) >= n:
                    break
            out.append(new)
        return out
    finally:
        llm.close()


def verify(checkpoint: Path, gguf: Path, threads: int | None = None, n: int = VERIFY_TOKENS) -> list[Agreement]:
    """Greedy agreement between the checkpoint (transformers, fp32) and the GGUF on Asclepius prompts."""
    reference = greedy_reference(checkpoint, n)
    ggufs = greedy_gguf(gguf, [ids for _, ids, _ in reference], n, threads)
    return [Agreement(p, ref, g) for (p, _, ref), g in zip(reference, ggufs, strict=True)]


# The whole conversion ----------------------------------------------------------------------------------------------
def convert(opts: ConvertOptions, say: Callable[[str], None] | None = None) -> ConvertResult:
    """Run every step; raises a ``UserError`` naming the step that failed."""
    say = say or (lambda msg: print(msg, file=sys.stderr))
    if opts.quant not in QUANTS:
        raise InputError(f"Unknown quantisation {opts.quant!r}; choose one of {', '.join(QUANTS)}.")
    out = Path(opts.out).expanduser()
    if out.suffix.lower() != ".gguf":
        raise InputError(f"--out must end in .gguf: {out}")
    if not out.parent.is_dir():
        raise InputError(f"The folder for --out does not exist: {out.parent}")
    steps = 4 + opts.verify
    say(f"[1/{steps}] checkpoint {opts.model}")
    checkpoint = resolve_checkpoint(opts.model, opts.revision)
    say(f"[2/{steps}] llama.cpp converter")
    if opts.llama_cpp is not None:
        converter = find_converter(Path(opts.llama_cpp).expanduser())
    else:
        converter = fetch_converter(opts.cache_dir or default_cache_dir(), installed_llama_cpp_version(),
                                    opts.progress)
    say(f"  {converter}")
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=out.parent) as tmp:
        f16 = Path(tmp) / "model-f16.gguf"
        say(f"[3/{steps}] f16 GGUF from {checkpoint}")
        stage = Path(tmp) / "stage" / checkpoint.name  # the converter names the model after the folder
        run_converter(converter, staged_checkpoint(checkpoint, stage), f16, opts.progress)
        fallback = total = 0
        if opts.quant == "f16":
            say(f"[4/{steps}] no quantisation (f16)")
            done = f16
        else:
            say(f"[4/{steps}] quantising to {opts.quant}")
            done = Path(tmp) / f"model-{opts.quant}.gguf"
            fallback, total = quantize(f16, done, opts.quant, opts.threads, opts.progress)
            if fallback:
                say(f"  {fallback} of {total} tensors have rows that do not split into {opts.quant} blocks: "
                    "llama.cpp stored them in another type")
        done.replace(out)
    result = ConvertResult(out, opts.quant, out.stat().st_size, fallback, total)
    say(f"  wrote {out} ({result.bytes / 2**20:.1f} MiB)")
    if opts.verify:
        say(f"[5/{steps}] verifying: first {VERIFY_TOKENS} greedy tokens, transformers fp32 vs the GGUF")
        result.agreements = verify(checkpoint, out, opts.threads)
        for i, a in enumerate(result.agreements, 1):
            say(f"  prompt {i}: first {a.prefix}/{VERIFY_TOKENS} tokens agree "
                f"({a.same_positions}/{VERIFY_TOKENS} positions equal)")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m asclepius_ui.convert", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model folder, registry name (Asclepius-7B) or Hugging Face id")
    p.add_argument("--out", required=True, type=Path, help="the .gguf file to write")
    p.add_argument("--quant", choices=QUANTS, default="q4_k_m",
                   help="f16 (exact), q8_0 (~half of f16), q4_k_m (~quarter; the laptop choice)")
    p.add_argument("--verify", action="store_true", help="compare the first 32 greedy tokens with transformers")
    p.add_argument("--llama-cpp", type=Path, help="a llama.cpp checkout or unpacked llama-cpp-python sdist "
                                                  "(default: fetched with pip into the cache once)")
    p.add_argument("--revision", help="hub revision (branch, tag or commit)")
    p.add_argument("--threads", type=int, help="threads for quantisation and verification")
    p.add_argument("--cache-dir", type=Path, help="where the converter is kept (default ~/.cache/asclepius-studio)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = ConvertOptions(model=args.model, out=args.out, quant=args.quant, verify=args.verify,
                          llama_cpp=args.llama_cpp, revision=args.revision, threads=args.threads,
                          cache_dir=args.cache_dir, progress=not args.no_progress)
    try:
        convert(opts)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
