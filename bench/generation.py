"""Generation speed per backend and precision: decode tok/s, time to first token (first and follow-up question),
peak memory, the app path against the bare backend, and prompt-lookup decoding on and off.

    python bench/generation.py --backends transformers llamacpp           # ~0.5B random LLaMA built here
    python bench/generation.py --quick                                    # a smaller, shorter smoke run
    python bench/generation.py --model DIR --configs transformers:bf16 llamacpp:q4_k_m

One random LLaMA (a sentencepiece tokenizer trained here on synthetic notes) is built once; the GGUF files are
made from it with ``python -m asclepius_ui.convert``. Every configuration runs in its own process, so its peak
RSS is its own and nothing it leaves behind (threads, allocator state) touches the next. Inside a process:

* **app vs bare**: the app path (``engine.stream``, 50 ms updates, as the chat page calls it) and the bare backend
  (``model.generate`` / ``Llama.__call__`` with the same settings, same thread count) alternate over ``--rounds``
  rounds, in a swapped order every other round; each round has a note of its own and the caches are emptied
  before every run (both paths process the whole prompt). Both must produce the same tokens (checked); the ratio
  is per adjacent pair, then the median and range.
* **time to first token**: a fresh ~``--note-tokens`` note, its first question, then a follow-up question
  (prefix reuse: transformers' KV cache of the note, llama.cpp's own prompt cache).
* **prompt lookup**: each Asclepius task on real-style notes (``--notes``, public clinical text), drafting on
  and off alternated; decode tok/s after the first token and whether the greedy tokens agree.

* **prefill on paste** (``--think-time [S]``, this section alone): per backend, the time from Ask to the first token
  when the note was pasted S seconds earlier (read ahead in the background, as the chat page does), against a cold
  Ask on the same note (both timed from the call into the ask flow, so its checks and the wait for a running read
  to stop at a chunk boundary are counted): once with S past the measured prefill time (``ttft_ready``; from the
  paste to "Note ready", as the page sees it) and once at half of it (``ttft_half``: half of the same note's reading
  time in the same round, as this machine's speed drifts); S given: that S as well. The share of the note read when
  the Ask came is printed beside them. Then the decode speed (first token to last) of a
  session that asks while another note is being read, over its solo speed (``concurrent_decode``; its extra wait
  for the first token is printed beside it), and whether the answers' tokens are identical with and without the
  read-ahead. Last line: ``prefill_on_paste ttft_ready=… ttft_half=… concurrent_decode=…`` (the
  backend measured last). ``python -m bench.generation --think-time --quick`` builds its own small model.

Figures are medians with their range (min-max). The machine this runs on may be shared: compare within one run.
The last line is ``llamacpp_q4_k_m_vs_transformers_fp32 decode=X.XX ttft=Y.YY rss=Z.ZZ`` (q4_k_m over fp32: decode
speed, first-question time to first token, peak RSS).

Why an earlier version printed stream/bare 2.43 (bf16) and 0.77 (8-bit): **thread placement**. ``engine.stream``
runs ``generate`` in a worker thread; the old bare path called it from the main thread. On this shared 2-core
machine (load average 6-11 from other processes) torch's OpenMP team spin-waits at its barriers, and from the main
thread that made the very same ``generate`` 4-10x slower than from a worker thread (16 tokens after a 480-token
prompt, 0.5 GB model: main 6-14 s, worker 1.0-2.7 s, alternated in one process). With ``torch.set_num_threads(1)``
or ``OMP_WAIT_POLICY=PASSIVE`` both placements take the same 1.1-1.9 s. How large the effect is depends on how
busy the machine is at that moment, so the old best-of-3 unpaired runs, on one repeated prompt, with
``min_new_tokens`` forced on the model's shared generation config inside the timed app path only, could print
almost any ratio. Now both paths run in the same placement (the bare call in a worker thread too), paired and
alternated, on fresh notes, with identical settings (greedy output is the same on both paths, which is checked);
the median of the paired ratios is reported with its range, and the main-vs-worker ratio of the bare call is
printed as a diagnostic (``main/worker``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data")
TRANSFORMERS = ("fp32", "bf16", "8bit", "4bit")
GGUF = ("f16", "q8_0", "q4_k_m")
QUESTIONS = ("Summarize the key findings, treatments and discharge plan from this discharge summary.",
             "What medications was the patient discharged on?")
REFERENCE, TARGET = "transformers:fp32", "llamacpp:q4_k_m"


# Helpers that run in the children ------------------------------------------------------------------------------
def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stats(values: list[float]) -> dict:
    return dict(median=statistics.median(values), lo=min(values), hi=max(values), n=len(values)) if values else {}


def _synthetic_text(engine, tokens: int, seed: int) -> str:
    """Synthetic discharge summaries joined and cut (on a token boundary) to ``tokens`` tokens."""
    from train.notes import make_notes

    parts, text = [], ""
    for note in make_notes(200, seed=seed):
        parts.append(note.text)
        text = "\n".join(parts)
        if engine.count_tokens(text) >= tokens:
            break
    spans = engine.token_spans(text)
    return text[:spans[min(tokens, len(spans)) - 1][1]]


def _fresh(text: str, i: int) -> str:
    """``text`` with a first line of its own, so no cache can carry one run into the next."""
    return f"Record {i:04d}-{os.getpid()}.\n{text}"


def _load(config: str, model: str, gguf: str | None, threads: int, draft: int = 0):
    """One engine; ``draft`` > 0 loads llama.cpp with prompt-lookup drafting (``--draft-prompt-lookup``), which a
    request then turns on or off with its ``prompt_lookup`` setting, as transformers does per request."""
    from asclepius_ui.engines import LoadOptions, load_engine

    backend, variant = config.split(":")
    if backend == "llamacpp":
        return load_engine(LoadOptions(gguf, backend="llamacpp", threads=threads, draft_prompt_lookup=draft))
    return load_engine(LoadOptions(model, backend="transformers", precision=variant, device="cpu"))


def _app(engine, asked: tuple[str, str], settings) -> dict:
    """The app path: the ask flow the chat page runs for (note, question), streamed (its default 50 ms updates).

    ``seconds`` is the whole call; ``ttft`` the engine's own time to the first token; ``ask_ttft`` the time from the
    call (the Ask) to the first token, including checks and any wait for a read-ahead to stop; ``decode_s`` the
    engine's time from the first token to the last (what decode speed is computed from)."""
    from asclepius_ui import ask

    t = time.perf_counter()
    prepared = ask.prepare(engine, ask.Request(*asked, settings=settings, guard=ask.GUARD_SEND))
    shown = None  # when the first piece of the answer reached the caller (the first update is sent at once)
    for last in ask.stream(prepared):
        if shown is None and last.new_tokens:
            shown = time.perf_counter() - t
    first = last.first_token_s
    return dict(seconds=time.perf_counter() - t, tokens=last.new_tokens, text=last.text, ttft=first,
                ask_ttft=shown, decode_s=None if first is None else last.seconds - first)


def _in_worker(fn):
    """``fn`` run on the engine's torch worker threads, as ``engine.stream`` runs ``generate``: both paths get the
    same thread placement (torch's OpenMP team behaves very differently across threads, see ``torch_threads``)."""
    from asclepius_ui.engines import torch_threads

    def run(asked: tuple[str, str]) -> dict:
        box: dict = {}
        torch_threads.run(lambda: box.update(result=fn(asked))).wait()
        return box["result"]
    return run


def _bare_call(engine, settings):
    """The backend called directly, with the settings the engine passes it (nothing of ours in between)."""
    if engine.backend == "transformers":
        import torch

        kwargs = engine._generate_kwargs(settings)

        def run(asked: tuple[str, str]) -> dict:
            ids = torch.tensor([engine.encode(engine.prompt(*asked))], device=engine.model.device)
            t = time.perf_counter()
            with torch.inference_mode():
                out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
            seconds = time.perf_counter() - t
            new = engine._strip_eos(out[0, ids.shape[1]:].tolist())
            return dict(seconds=seconds, tokens=len(new), text=engine._decode(new))
        return run

    llm = _llama_object(engine)

    def run(asked: tuple[str, str]) -> dict:
        t = time.perf_counter()
        out = llm(engine.prompt(*asked), max_tokens=settings.max_new_tokens, temperature=0.0, top_k=1, top_p=1.0,
                  min_p=0.0, repeat_penalty=float(settings.repetition_penalty))
        seconds = time.perf_counter() - t
        return dict(seconds=seconds, tokens=out["usage"]["completion_tokens"], text=out["choices"][0]["text"])
    return run


def _llama_object(engine):
    for name in ("llm", "llama", "_llm", "_llama", "model"):
        obj = getattr(engine, name, None)
        if obj is not None and type(obj).__name__ == "Llama":
            return obj
    raise RuntimeError("cannot find the llama_cpp.Llama object inside the llama.cpp engine")


def measure(args: argparse.Namespace) -> dict:
    """One configuration: load, app vs bare over alternated rounds, time to first token, peak RSS."""
    from asclepius_ui.engines import GenerationSettings

    t = time.perf_counter()
    engine = _load(args.config, args.model, args.gguf, args.threads)
    load_s = time.perf_counter() - t
    rss_loaded = _rss_mib()
    settings = GenerationSettings(max_new_tokens=args.new_tokens, prompt_lookup=0)
    bare = _bare_call(engine, settings)
    base = _synthetic_text(engine, args.decode_prompt_tokens, seed=11)
    question = QUESTIONS[0]

    def app(asked):
        return _app(engine, asked, settings)

    worker = _in_worker(bare) if engine.backend == "transformers" else bare  # llama.cpp has its own threads

    def forget() -> None:
        """Drop what the last request left in the caches, so each run of a pair processes the whole prompt."""
        if engine.backend == "transformers":
            engine.prefix_cache.clear()
        else:
            _llama_object(engine).reset()  # llama.cpp would reuse the longest common prefix with the last prompt

    app((_fresh(base, 9999), question))  # warm-up of both paths
    worker((_fresh(base, 9998), question))
    rows = []
    for i in range(args.rounds):
        order = (("app", app), ("bare", worker)) if i % 2 == 0 else (("bare", worker), ("app", app))
        pair = {}
        asked = (_fresh(base, i), question)  # one note per pair: same work, comparable tokens
        for name, path in order:
            forget()
            pair[name] = path(asked)
        rows.append(pair)
    ratios = [(r["app"]["tokens"] / r["app"]["seconds"]) / (r["bare"]["tokens"] / r["bare"]["seconds"]) for r in rows]
    decode = [(r["app"]["tokens"] - 1) / r["app"]["decode_s"] for r in rows
              if r["app"]["tokens"] > 1 and r["app"]["decode_s"]]
    same = all(r["app"]["tokens"] == r["bare"]["tokens"] and r["app"]["text"] == r["bare"]["text"] for r in rows)
    placement = []  # diagnostic: the bare call from the main thread against the same call from a worker thread
    if engine.backend == "transformers":
        for i in range(args.placement_rounds):
            pair = [worker((_fresh(base, 7000 + 2 * i), question)), bare((_fresh(base, 7001 + 2 * i), question))]
            placement.append((pair[1]["tokens"] / pair[1]["seconds"]) / (pair[0]["tokens"] / pair[0]["seconds"]))

    phases = {"load": load_s, "app_vs_bare": time.perf_counter() - t - load_s}
    long_note = _synthetic_text(engine, args.note_tokens, seed=23)
    ttft_settings = GenerationSettings(max_new_tokens=2, prompt_lookup=0)
    first, follow = [], []
    hits0 = getattr(getattr(engine, "prefix_cache", None), "hits", None)
    for i in range(args.ttft_rounds):
        note = _fresh(long_note, 5000 + i)
        first.append(_app(engine, (note, QUESTIONS[0]), ttft_settings)["ttft"])
        follow.append(_app(engine, (note, QUESTIONS[1]), ttft_settings)["ttft"])
    hits = None if hits0 is None else engine.prefix_cache.hits - hits0
    phases["ttft"] = time.perf_counter() - t - sum(phases.values())
    return dict(config=args.config, label=engine.precision_label, load_s=load_s, rss_loaded_mib=rss_loaded,
                peak_rss_mib=_rss_mib(), app_over_bare=_stats(ratios), decode_tok_s=_stats(decode),
                main_over_worker=_stats(placement), seconds=time.perf_counter() - t, phases=phases,
                app_tok_s=_stats([r["app"]["tokens"] / r["app"]["seconds"] for r in rows]),
                bare_tok_s=_stats([r["bare"]["tokens"] / r["bare"]["seconds"] for r in rows]),
                tokens=sorted({r["app"]["tokens"] for r in rows} | {r["bare"]["tokens"] for r in rows}),
                same_tokens=same, prompt_tokens=engine.count_tokens(engine.prompt(_fresh(base, 0), question)),
                note_tokens=engine.count_tokens(engine.prompt(_fresh(long_note, 0), QUESTIONS[0])),
                ttft_first=_stats(first), ttft_follow=_stats(follow), prefix_hits=hits,
                follow_over_first=_stats([b / a for a, b in zip(first, follow, strict=True)]))


def _forget(engine) -> None:
    """Empty every cache the engine keeps, so the next Ask on a note is cold."""
    if engine.backend == "transformers":
        engine.prefix_cache.clear()
    else:
        engine.states.clear()
        _llama_object(engine).reset()


def think(args: argparse.Namespace) -> dict:
    """Prefill on paste: Ask-to-first-token after S seconds of reading ahead vs cold, decode beside a prefill."""
    from asclepius_ui import ask, prefill
    from asclepius_ui.engines import GenerationSettings

    engine = _load(args.config, args.model, args.gguf, args.threads)
    settings = GenerationSettings(max_new_tokens=args.new_tokens, prompt_lookup=0)
    long_note = _synthetic_text(engine, args.note_tokens, seed=23)
    question = QUESTIONS[1]
    reader = prefill.prefiller(engine)

    def read(note: str, session: str) -> prefill.Job:
        return ask.read_ahead(engine, note, session, ask.GUARD_SEND)

    def prefill_seconds(note: str) -> float:
        """From the paste (the read handed to the worker) to "Note ready", as the page sees it."""
        _forget(engine)
        job = read(note, "timing")
        t = time.perf_counter()
        reader.wait(job)
        assert job.state == prefill.READY, job
        return time.perf_counter() - t

    _app(engine, (_fresh(long_note, 9999), question), settings)  # warm-up: both paths
    prefill_seconds(_fresh(long_note, 9998))
    t_prefill = statistics.median(prefill_seconds(_fresh(long_note, 8000 + i)) for i in range(3))
    waits = {"ready": max(1.2 * t_prefill, t_prefill + 0.5), "half": t_prefill / 2}
    if args.think_time and args.think_time > 0:
        waits["given"] = args.think_time
    cold, after, differ, read_at_ask = [], {k: [] for k in waits}, [], {k: [] for k in waits}
    used = {k: [] for k in waits}
    for i in range(args.ttft_rounds):
        note = _fresh(long_note, 6000 + i)
        _forget(engine)
        base = _app(engine, (note, question), settings)
        cold.append(base["ask_ttft"])
        this_round = dict(waits)
        for k in waits:
            wait = this_round[k]
            used[k].append(wait)
            _forget(engine)
            job = read(note, f"paste-{k}-{i}")
            time.sleep(wait)
            read_at_ask[k].append(job.fraction)
            if k == "ready" and job.state == prefill.READY:
                # This machine's speed drifts between minutes: half of this very note's reading time, just measured,
                # is the round's "half" (the reading starts at once: the worker is idle).
                this_round["half"] = job.seconds / 2
            r = _app(engine, (note, question), settings)
            after[k].append(r["ask_ttft"] / base["ask_ttft"])
            if r["text"] != base["text"] or r["tokens"] != base["tokens"]:
                differ.append(dict(case=k, round=i, cold=base["text"][:60], read_ahead=r["text"][:60]))
            reader.wait(reader.job(f"paste-{k}-{i}"), timeout=60)  # a preempted read finishes before the next run

    # A second session decoding while a note is being read: solo and beside a prefill, alternated.
    short = _fresh(_synthetic_text(engine, 200, seed=5), 1)
    decode_settings = GenerationSettings(max_new_tokens=args.decode_tokens, prompt_lookup=0)

    def decode_rate(beside: bool, i: int) -> tuple[float, float]:
        """(decode tok/s after the first token, Ask-to-first-token s) of the short note's session."""
        _forget(engine)
        _app(engine, (short, question), GenerationSettings(max_new_tokens=1, prompt_lookup=0))  # its note is read
        if beside:
            job = read(_fresh(long_note, 4000 + i), f"other-{i}")
            while job.state == prefill.QUEUED and not job.done:
                time.sleep(0.01)  # the other note is being read when this session asks
        r = _app(engine, (short, question), decode_settings)
        return (r["tokens"] - 1) / r["decode_s"], r["ask_ttft"]

    solo, beside, preempted = [], [], reader.preemptions
    for i in range(args.rounds):
        for b in ((False, True) if i % 2 == 0 else (True, False)):
            (beside if b else solo).append(decode_rate(b, i))
            if b:
                reader.wait(reader.job(f"other-{i}"), timeout=300)  # nothing is read during the next run
    return dict(config=args.config, label=engine.precision_label, prefill_s=t_prefill,
                waits={k: statistics.median(v) for k, v in used.items()},
                note_tokens=engine.count_tokens(engine.prompt(_fresh(long_note, 0), question)),
                cold_ttft=_stats(cold), ratios={k: _stats(v) for k, v in after.items()}, same_tokens=not differ,
                differ=differ,
                read_at_ask={k: _stats(v) for k, v in read_at_ask.items()},
                solo_decode=_stats([a for a, _ in solo]), beside_decode=_stats([b for b, _ in beside]),
                concurrent=_stats([b[0] / a[0] for a, b in zip(solo, beside, strict=True)]),
                solo_first=_stats([a for _, a in solo]), beside_first=_stats([b for _, b in beside]),
                preemptions=reader.preemptions - preempted)


def report_think(results: dict[str, dict], args: argparse.Namespace, notes: list[str]) -> None:
    print()
    print(f"prefill on paste: Ask-to-first-token after reading the note ahead, over a cold Ask on the same note "
          f"({args.ttft_rounds} rounds); decode of a session beside a prefill over solo ({args.rounds} rounds, "
          f"{args.decode_tokens} tokens); {args.threads} threads")
    print(f"{'configuration':<22}{'note tok':>9}{'prefill s':>10}{'cold TTFT s':>22}{'ready/cold':>20}"
          f"{'half/cold':>20}{'given/cold':>20}{'decode beside/solo':>22}{'same':>6}")
    last = None
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<22}skipped: {r['error']}")
            continue
        last = r
        print(f"{name:<22}{r['note_tokens']:>9}{r['prefill_s']:>10.2f}{_fmt(r['cold_ttft']):>22}"
              f"{_fmt(r['ratios']['ready'], '.3f'):>20}{_fmt(r['ratios']['half'], '.3f'):>20}"
              f"{_fmt(r['ratios'].get('given', {}), '.3f'):>20}{_fmt(r['concurrent'], '.3f'):>22}"
              f"{'yes' if r['same_tokens'] else 'NO':>6}")
        print(f"{'':<22}waits: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["waits"].items())
              + f"; solo decode {_fmt(r['solo_decode'], '.1f')} tok/s, beside a prefill "
              f"{_fmt(r['beside_decode'], '.1f')} tok/s; {r['preemptions']} prefill(s) preempted by those Asks")
        for d in r["differ"]:
            print(f"{'':<22}tokens differ ({d['case']}, round {d['round']}): cold {d['cold']!r}, read ahead "
                  f"{d['read_ahead']!r}")
        print(f"{'':<22}share of the note read when the Ask came: " + ", ".join(
            f"{k} {_fmt(v, '.2f')}" for k, v in r["read_at_ask"].items()))
        print(f"{'':<22}that session's Ask to first token: solo {_fmt(r['solo_first'], '.3f')} s, beside a "
              f"prefill {_fmt(r['beside_first'], '.3f')} s (the wait for the read to stop at a chunk boundary)")
    for note in notes:
        print(note)
    print("targets: ready/cold <= 0.1, half/cold <= 0.6, decode beside/solo >= 0.9, same tokens")
    print()
    if last is None:
        print("prefill_on_paste ttft_ready=nan ttft_half=nan concurrent_decode=nan")
        return
    print(f"prefill_on_paste ttft_ready={last['ratios']['ready']['median']:.3f} "
          f"ttft_half={last['ratios']['half']['median']:.3f} concurrent_decode={last['concurrent']['median']:.3f}")


def cpu_settings(args: argparse.Namespace) -> dict:
    """llama.cpp prompt evaluation (prefill) tok/s per n_batch (= n_ubatch), flash attention on/off and threads;
    the read-ahead path against one call; decode tok/s with flash attention off and on."""
    from asclepius_ui.engines import LoadOptions, load_engine
    from asclepius_ui.engines.llamacpp import physical_cores

    rows = []
    ids = None
    for threads in sorted({physical_cores(), os.cpu_count() or 1}):
        for flash in ("off", "on"):
            for batch in (64, 128, 256, 512):
                engine = load_engine(LoadOptions(args.gguf, backend="llamacpp", threads=threads, n_batch=batch,
                                                 n_ubatch=batch, flash_attn=flash, kv_states=0))
                llm = _llama_object(engine)
                if ids is None:
                    ids = engine.encode(_synthetic_text(engine, args.note_tokens, seed=31))
                rates = []
                for _ in range(args.rounds):
                    llm.reset()
                    t = time.perf_counter()
                    llm.eval(ids)
                    rates.append(len(ids) / (time.perf_counter() - t))
                engine.close()
                rows.append(dict(threads=threads, flash_attn=flash, n_batch=batch, tok_s=_stats(rates)))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    # The read-ahead path with the defaults: blocks of n_ubatch tokens, the grid every prompt is evaluated on (an
    # Ask waits at most one), against the same prompt in one call, alternated.
    engine = load_engine(LoadOptions(args.gguf, backend="llamacpp", kv_states=1))
    llm, text = _llama_object(engine), _synthetic_text(engine, args.note_tokens, seed=31)
    pieces, whole = [], []
    for i in range(args.rounds):
        for in_pieces in ((True, False) if i % 2 == 0 else (False, True)):
            engine.states.clear()
            llm.reset()
            t = time.perf_counter()
            n = engine.prefill(text).done if in_pieces else (llm.eval(ids) or len(ids))
            (pieces if in_pieces else whole).append(n / (time.perf_counter() - t))
    engine.close()
    # Decode (what the clinician watches) with flash attention off and on: 48 greedy tokens after a short note.
    from asclepius_ui.engines import GenerationSettings

    fa = {f: load_engine(LoadOptions(args.gguf, backend="llamacpp", flash_attn=f, kv_states=0)) for f in ("off", "on")}
    note, decode = _synthetic_text(fa["off"], args.decode_prompt_tokens, seed=37), {"off": [], "on": []}
    for i in range(args.rounds):
        for f in (("off", "on") if i % 2 == 0 else ("on", "off")):
            _llama_object(fa[f]).reset()
            out = fa[f].generate(fa[f].make_prompt(note, QUESTIONS[1]),
                                 GenerationSettings(max_new_tokens=48, prompt_lookup=0))
            decode[f].append((out.new_tokens - 1) / (out.seconds - out.first_token_s))
    for e in fa.values():
        e.close()
    return dict(tokens=len(ids), rows=rows, pieces=_stats(pieces), whole=_stats(whole), unit=engine._unit,
                decode={f: _stats(v) for f, v in decode.items()},
                ratio=_stats([p / w for p, w in zip(pieces, whole, strict=True)]))


def real_notes(engine, count: int, tokens: int, path: Path | None) -> list[str]:
    """Public clinical notes (``--notes``: Synthea jsonl or ACI-Bench csv) cut to about ``tokens`` tokens."""
    texts: list[str] = []
    files = [path] if path else [DATA / "synthea_notes_sample50.jsonl", DATA / "aci_bench_notes.csv"]
    for f in files:
        if not f or not f.exists():
            continue
        if f.suffix == ".jsonl":
            texts += [json.loads(line)["text"] for line in f.read_text().splitlines() if line.strip()]
        else:
            csv.field_size_limit(10**8)
            with f.open(newline="") as fh:
                texts += [row.get("note") or row.get("text") or "" for row in csv.DictReader(fh)]
    texts = [t.strip() for t in texts if len(t) > 800]
    if not texts:  # the project's own example notes
        texts = [p.read_text() for p in sorted((ROOT / "assets" / "notes").glob("*.txt"))]
    picked = []
    for t in texts[::max(1, len(texts) // count)][:count]:
        spans = engine.token_spans(t)
        picked.append(t[:spans[min(tokens, len(spans)) - 1][1]])
    return picked


def lookup(args: argparse.Namespace) -> dict:
    """Prompt lookup on and off per task on real-style notes: decode tok/s after the first token, same tokens."""
    from asclepius_ui.engines import GenerationSettings
    from asclepius_ui.tasks import TASKS, fill_instruction

    engine = _load(args.config, args.model, args.gguf, args.threads, draft=args.draft)
    if not engine.capabilities.prompt_lookup:
        return {"error": f"the {engine.backend} engine does not offer prompt-lookup decoding"}
    if hasattr(engine, "prefix_cache"):
        engine.prefix_cache.max_entries = 0  # follow-ups reuse the note and then decode without drafts
    notes = real_notes(engine, args.lookup_notes, args.lookup_note_tokens, Path(args.notes) if args.notes else None)
    out = {}
    for key, task in TASKS.items():
        if key == "free":
            continue
        instruction = fill_instruction(task, task.example_arg)
        rates = {0: [], args.draft: []}
        same = True
        for i, note in enumerate(notes):
            results = {}
            for n in ((0, args.draft) if i % 2 == 0 else (args.draft, 0)):
                settings = GenerationSettings(max_new_tokens=args.lookup_tokens, prompt_lookup=n)
                r = _app(engine, (note, instruction), settings)
                results[n] = r
                if r["tokens"] > 1 and r["decode_s"]:
                    rates[n].append((r["tokens"] - 1) / r["decode_s"])
            same &= results[0]["text"] == results[args.draft]["text"]
        out[key] = dict(off=_stats(rates[0]), on=_stats(rates[args.draft]), same=same,
                        speedup=_stats([b / a for a, b in zip(rates[0], rates[args.draft], strict=False)]))
    return dict(config=args.config, label=engine.precision_label, draft=args.draft, notes=len(notes), tasks=out)


def build(args: argparse.Namespace) -> dict:
    """The random LLaMA and its sentencepiece tokenizer (trained on synthetic notes) in ``args.model``."""
    from transformers import AutoTokenizer

    from train.notes import make_notes
    from train.tiny_model import init_model, save_sharded_bin, tiny_llama_config
    from train.tokenizer import train_sentencepiece

    out = Path(args.model)
    train_sentencepiece([n.text for n in make_notes(400)], out, vocab_size=args.vocab)
    vocab = len(AutoTokenizer.from_pretrained(out))
    cfg = tiny_llama_config(vocab, hidden=args.hidden, layers=args.layers, heads=max(1, args.hidden // 128),
                            context=4096)
    model = init_model(cfg)
    save_sharded_bin(model, out, shards=2)
    params = sum(p.numel() for p in model.parameters())
    (out / "bench_params.json").write_text(json.dumps({"params": params}))
    return dict(params=params)


# The parent: builds, converts, runs each configuration in its own process, prints --------------------------------
def child(mode: str, args: argparse.Namespace, config: str | None = None, gguf: str | None = None,
          timeout: float = 1800) -> dict:
    cmd = [sys.executable, "-m", "bench.generation", "--child", mode, "--model", args.model, "--threads",
           str(args.threads)]
    for flag in ("new_tokens", "rounds", "ttft_rounds", "placement_rounds", "note_tokens", "decode_prompt_tokens",
                 "hidden", "layers", "vocab", "draft", "lookup_tokens", "lookup_notes", "lookup_note_tokens",
                 "decode_tokens", "think_time"):
        if getattr(args, flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.notes:
        cmd += ["--notes", args.notes]
    if config:
        cmd += ["--config", config]
    if gguf:
        cmd += ["--gguf", gguf]
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode < 0:
        return {"error": f"stopped by signal {-out.returncode}"}
    if out.returncode:
        lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def convert(args: argparse.Namespace, quant: str, out: Path) -> str | None:
    """``python -m asclepius_ui.convert``; the error line when it cannot run here."""
    if out.exists():
        return None
    cmd = [sys.executable, "-m", "asclepius_ui.convert", "--model", args.model, "--out", str(out), "--quant", quant]
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return "conversion timed out"
    if r.returncode or not out.exists():
        lines = [line for line in (r.stderr + r.stdout).strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit {r.returncode}"
    return None


def llamacpp_missing() -> str | None:
    probe = ("import importlib.util as u, sys; "
             "sys.exit(0 if u.find_spec('llama_cpp') and u.find_spec('asclepius_ui.convert') "
             "and u.find_spec('asclepius_ui.engines.llamacpp') else 1)")
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True)
    return None if r.returncode == 0 else ("llama-cpp-python, asclepius_ui.convert or the llama.cpp engine is not "
                                           "installed here")


def _fmt(s: dict, spec: str = ".2f") -> str:
    if not s:
        return "n/a"
    return f"{s['median']:{spec}} [{s['lo']:{spec}}-{s['hi']:{spec}}]"


def _ratio(a: dict, b: dict, key: str) -> float:
    try:
        return a[key]["median"] / b[key]["median"] if isinstance(a[key], dict) else a[key] / b[key]
    except (KeyError, TypeError, ZeroDivisionError):
        return float("nan")


def report(results: dict[str, dict], lookups: dict[str, dict], args: argparse.Namespace, params: int | None,
           notes: list[str]) -> None:
    print()
    about = f"{params / 1e6:.0f}M-parameter" if params else "given"
    print(f"model: {about} LLaMA (hidden {args.hidden}, {args.layers} layers) at {args.model}; "
          f"{args.new_tokens} greedy tokens; {args.rounds} alternated rounds; {args.threads} threads")
    ref = results.get(REFERENCE, {})
    timing: list[str] = []
    head = (f"{'configuration':<22}{'decode tok/s':>22}{'x fp32':>8}{'app/bare':>20}{'TTFT first s':>22}"
            f"{'follow-up s':>20}{'follow/first':>14}{'peak RSS MiB':>14}{'same':>6}{'main/worker':>13}")
    print(head)
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<22}skipped: {r['error']}")
            continue
        timing.append(f"{name} {r['seconds']:.0f} s (" + ", ".join(f"{k} {v:.0f}" for k, v in r["phases"].items())
                      + ")")
        print(f"{name:<22}{_fmt(r['decode_tok_s'], '.1f'):>22}{_ratio(r, ref, 'decode_tok_s'):>8.2f}"
              f"{_fmt(r['app_over_bare'], '.3f'):>20}{_fmt(r['ttft_first'], '.2f'):>22}"
              f"{_fmt(r['ttft_follow'], '.3f'):>20}{r['follow_over_first']['median']:>14.3f}"
              f"{r['peak_rss_mib']:>14.0f}{'yes' if r['same_tokens'] else 'NO':>6}"
              f"{r['main_over_worker']['median'] if r['main_over_worker'] else float('nan'):>13.2f}")
    some = next((r for r in results.values() if "error" not in r), None)
    if some:
        print(f"(decode prompt {some['prompt_tokens']} tokens, app/bare = app tok/s over bare tok/s per adjacent "
              f"pair; TTFT on a {some['note_tokens']}-token prompt, {args.ttft_rounds} rounds; 'same' = app and "
              "bare made identical tokens; main/worker = bare generate from the main thread over the same from a "
              "worker thread)")
    if timing:
        print("per configuration: " + ", ".join(timing))
    for note in notes:
        print(note)
    for name, lk in lookups.items():
        print()
        if "error" in lk:
            print(f"prompt lookup, {name}: skipped: {lk['error']}")
            continue
        print(f"prompt lookup ({lk['draft']} drafted tokens) on {lk['notes']} real-style notes, {name}: "
              "decode tok/s after the first token")
        print(f"{'task':<16}{'off':>20}{'on':>20}{'on/off':>20}{'same tokens':>13}")
        for task, t in lk["tasks"].items():
            print(f"{task:<16}{_fmt(t['off'], '.1f'):>20}{_fmt(t['on'], '.1f'):>20}{_fmt(t['speedup'], '.2f'):>20}"
                  f"{'yes' if t['same'] else 'NO':>13}")
    target = results.get(TARGET, {})
    print()
    print(f"llamacpp_q4_k_m_vs_transformers_fp32 decode={_ratio(target, ref, 'decode_tok_s'):.2f} "
          f"ttft={_ratio(target, ref, 'ttft_first'):.2f} rss={_ratio(target, ref, 'peak_rss_mib'):.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", nargs="+", choices=["transformers", "llamacpp"], default=["transformers", "llamacpp"])
    p.add_argument("--configs", nargs="+", help="e.g. transformers:fp32 llamacpp:q4_k_m (default: every one of "
                   "transformers fp32/bf16/8bit/4bit and GGUF f16/q8_0/q4_k_m for --backends)")
    p.add_argument("--model", help="model folder (default: build a random LLaMA in --workdir)")
    p.add_argument("--workdir", help="where the model and GGUF files go (kept; default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="a smaller model, fewer tokens and rounds (a smoke run)")
    p.add_argument("--hidden", type=int, default=1536)
    p.add_argument("--layers", type=int, default=18)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--ttft-rounds", type=int, default=3)
    p.add_argument("--placement-rounds", type=int, default=1,
                   help="bare generate from the main thread vs a worker thread (a diagnostic)")
    p.add_argument("--note-tokens", type=int, default=1500, help="note length for time to first token")
    p.add_argument("--decode-prompt-tokens", type=int, default=200)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads (torch uses all)")
    p.add_argument("--draft", type=int, default=10, help="prompt-lookup draft length")
    p.add_argument("--lookup-configs", nargs="*", default=["transformers:fp32", "llamacpp:q4_k_m"])
    p.add_argument("--lookup-tokens", type=int, default=48)
    p.add_argument("--lookup-notes", type=int, default=2)
    p.add_argument("--lookup-note-tokens", type=int, default=300)
    p.add_argument("--notes", help="a .jsonl (text) or .csv (note) of real-style notes (default: /work/shared/data)")
    p.add_argument("--think-time", type=float, nargs="?", const=-1.0, metavar="S",
                   help="prefill on paste only: Ask S seconds after the paste against a cold Ask (without S: after "
                        "the measured prefill time and after half of it)")
    p.add_argument("--decode-tokens", type=int, default=48, help="--think-time: tokens of the decoding session")
    p.add_argument("--cpu-settings", action="store_true",
                   help="only llama.cpp prefill tok/s per n_batch (= n_ubatch), flash attention and threads, on the "
                        "q4_k_m GGUF (how the llama.cpp defaults were chosen)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--gguf", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps({"build": build, "measure": measure, "lookup": lookup, "think": think,
                          "settings": cpu_settings}[args.child](args)))
        return
    if args.quick:
        args.hidden, args.layers, args.new_tokens, args.rounds, args.ttft_rounds = 512, 8, 16, 5, 2
        args.note_tokens, args.lookup_tokens, args.lookup_notes = 1500, 24, 1
    if args.think_time is not None and args.quick:
        args.ttft_rounds, args.rounds, args.note_tokens, args.decode_tokens = 7, 6, 1700, 96
    if args.cpu_settings:
        args.configs = [TARGET]
    if args.think_time is not None and not args.configs:  # the laptop pair: full-precision torch, q4_k_m GGUF
        args.configs = [c for c in (REFERENCE, TARGET) if c.split(":")[0] in args.backends]
    configs = args.configs or [f"transformers:{v}" for v in TRANSFORMERS if "transformers" in args.backends] + [
        f"llamacpp:{v}" for v in GGUF if "llamacpp" in args.backends]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.model:
            args.model = str(work / f"llama-h{args.hidden}-l{args.layers}")
            if not (Path(args.model) / "config.json").exists():
                print(f"building a random LLaMA (hidden {args.hidden}, {args.layers} layers) ...", flush=True)
                built = child("build", args)
                if "error" in built:
                    sys.exit(f"could not build the model: {built['error']}")
        stamp = Path(args.model) / "bench_params.json"
        params = json.loads(stamp.read_text())["params"] if stamp.exists() else None
        notes, ggufs = [], {}
        missing = llamacpp_missing() if any(c.startswith("llamacpp") for c in configs) else None
        for c in configs:
            backend, variant = c.split(":")
            if backend != "llamacpp":
                continue
            if missing:
                ggufs[c] = {"error": missing}
                continue
            out = work / f"{Path(args.model).name}-{variant}.gguf"
            print(f"converting to GGUF {variant} ...", flush=True)
            err = convert(args, variant, out)
            ggufs[c] = {"error": f"conversion failed: {err}"} if err else str(out)
        results: dict[str, dict] = {}
        mode = "settings" if args.cpu_settings else "measure" if args.think_time is None else "think"
        for c in configs:
            gguf = ggufs.get(c)
            if isinstance(gguf, dict):
                results[c] = gguf
                continue
            print(f"measuring {c} ...", flush=True)
            results[c] = child(mode, args, c, gguf)
            print(f"  {json.dumps(results[c])}", flush=True)  # kept in the log if a long run is cut short
        if mode == "settings":
            r = next(iter(results.values()))
            print() if "error" not in r else sys.exit(f"llama.cpp settings: {r['error']}")
            print(f"llama.cpp prefill tok/s on a {r['tokens']}-token prompt ({args.rounds} rounds, median [range])")
            for row in r["rows"]:
                print(f"threads {row['threads']}  flash_attn {row['flash_attn']:<3}  n_batch=n_ubatch "
                      f"{row['n_batch']:>4}  {_fmt(row['tok_s'], '.1f')}")
            print(f"read ahead in blocks of {r['unit']} tokens (defaults): {_fmt(r['pieces'], '.1f')} tok/s "
                  f"against {_fmt(r['whole'], '.1f')} in one call; ratio {_fmt(r['ratio'], '.2f')}")
            print(f"decode tok/s (48 tokens after a {args.decode_prompt_tokens}-token note): flash attention off "
                  f"{_fmt(r['decode']['off'], '.1f')}, on {_fmt(r['decode']['on'], '.1f')}")
            best = max(r["rows"], key=lambda row: row["tok_s"]["median"])
            faster = max(("off", "on"), key=lambda f: r["decode"][f]["median"])
            print(f"cpu_settings prefill_best: threads={best['threads']} flash_attn={best['flash_attn']} "
                  f"n_batch={best['n_batch']} decode_best: flash_attn={faster}")
            return
        if mode == "think":
            if missing:
                notes.append(f"llama.cpp rows skipped: {missing}.")
            notes.append(f"total run time {time.perf_counter() - started:.0f} s")
            report_think(results, args, notes)
            return
        lookups = {}
        for c in args.lookup_configs:
            if c not in configs or "error" in results.get(c, {"error": ""}):
                continue
            print(f"prompt lookup on {c} ...", flush=True)
            lookups[c] = child("lookup", args, c, ggufs.get(c) if c.startswith("llamacpp") else None)
            print(f"  {json.dumps(lookups[c])}", flush=True)
        if missing:
            notes.append(f"llama.cpp rows skipped: {missing}.")
        notes.append(f"total run time {time.perf_counter() - started:.0f} s")
        report(results, lookups, args, params, notes)


if __name__ == "__main__":
    main()
