"""Shared fixtures: tiny models built once per session, a real Gradio server on loopback, a real browser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ports import free_port  # noqa: F401  (used by the fixtures below)

from .gguf_fixtures import gguf_engine, tiny_gguf  # noqa: F401 - GGUF fixtures (skip without llama-cpp-python)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The longest test files (measured with --durations) start first, so the parallel run does not end on one of them.
SLOW_FIRST = ("test_train_ddp.py", "test_server_kill.py", "test_ui_offline.py", "test_ui_study.py",
              "test_eval_analysis_ui.py", "test_app_cli.py", "test_ui_chat.py", "test_ui_workspace.py",
              "test_llamacpp_ui.py")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: file order kept otherwise


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]



@pytest.fixture(scope="session")
def corpus() -> list[str]:
    from asclepius_ui.prompts import build_prompt
    from train.notes import make_notes

    notes = make_notes(120, seed=1)
    texts = [n.text for n in notes]
    texts += [build_prompt(n.text, q) + a for n in notes[:30] for _, q, a in n.qa]
    return texts


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, corpus) -> Path:
    from train.tokenizer import train_sentencepiece

    return train_sentencepiece(corpus, tmp_path_factory.mktemp("tok"), vocab_size=400)


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())


@pytest.fixture(scope="session")
def tiny_bin_model(tmp_path_factory, tokenizer_dir) -> Path:
    """A random tiny LLaMA in the Asclepius-7B layout: fp32 sharded .bin + index, slow sentencepiece tokenizer."""
    from train.tiny_model import init_model, save_sharded_bin, tiny_llama_config

    out = tmp_path_factory.mktemp("tiny-bin")
    save_sharded_bin(init_model(tiny_llama_config(400, context=1024)), out, shards=2)
    _copy_tokenizer(tokenizer_dir, out)
    return out


@pytest.fixture(scope="session")
def tiny_safetensors_model(tmp_path_factory, tokenizer_dir) -> Path:
    """The same kind of model saved the newer way: safetensors (and tokenizer.json written by transformers)."""
    from transformers import AutoTokenizer

    from train.tiny_model import init_model, tiny_llama_config

    out = tmp_path_factory.mktemp("tiny-st")
    init_model(tiny_llama_config(400, context=1024), seed=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_engine(tiny_bin_model):
    from asclepius_ui.engines import LoadOptions, load_engine

    return load_engine(LoadOptions(str(tiny_bin_model), precision="fp32", device="cpu"))


@pytest.fixture(scope="session")
def launch_app():
    """Start ``build_app(ctx)`` on a free loopback port; returns its URL. All servers close at session end."""
    from asclepius_ui.ui.app import build_app
    from asclepius_ui.ui.server import ServerOptions, serve

    started = []

    def _launch(ctx, auth=None, **options) -> str:
        demo = build_app(ctx)
        port = free_port()
        serve(demo, ServerOptions(port=port, **options), auth=auth, block=False, quiet=True)
        started.append(demo)
        return f"http://127.0.0.1:{port}/"

    yield _launch
    for demo in started:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser).

    Module scope: sync Playwright keeps an event loop running in the main thread while it is open, which
    would break ``asyncio.run`` in later test modules.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    """A fresh page that records every request URL in ``page.seen_urls``."""
    context = browser.new_context()
    pg = context.new_page()
    pg.seen_urls = []
    pg.on("request", lambda r: pg.seen_urls.append(r.url))
    yield pg
    context.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models train fastest on one thread, and the test machine's cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
