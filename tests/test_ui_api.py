"""The HTTP API a researcher scripts: stable names for ask, compare, vote and batch; internal events hidden."""

from __future__ import annotations

import pytest
from gradio_client import Client

from asclepius_ui.storage import open_storage
from asclepius_ui.ui.context import AppContext

NOTE = "DISCHARGE SUMMARY\nTreated for CAP with ceftriaxone and improved.\n"


@pytest.fixture(scope="module")
def api_url(launch_app, tiny_engine, tiny_safetensors_model, tmp_path_factory):
    from asclepius_ui.engines import LoadOptions, load_engine

    other = load_engine(LoadOptions(str(tiny_safetensors_model), precision="fp32", device="cpu"))
    st = open_storage(f"sqlite:///{tmp_path_factory.mktemp('api') / 'r.db'}")
    yield launch_app(AppContext(engine=tiny_engine, contenders={other.model_id: other}, storage=st))
    st.close()


def test_my_pages_expose_only_their_named_actions(api_url):
    names = set(Client(api_url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/ask", "/compare", "/vote", "/batch"} <= names
    # the chat, compare and batch pages' internal events (picker, budget, stop, uploads...) are not endpoints
    leaked = {n for n in names if n.startswith(("/on_task", "/on_arg", "/run", "/do_truncate", "/new_request",
                                                "/on_run", "/on_vote", "/on_upload", "/on_truncate", "/budget",
                                                "/regenerate", "/stop", "/partial"))}
    assert not leaked, leaked


def test_ask_and_compare_then_vote_through_gradio_client(api_url):
    client = Client(api_url, verbose=False)
    chat, status, evidence = client.predict(NOTE, "Free question", "What was the diagnosis?", False, "greedy", 4,
                                            False, 0.7, 0.9, 1, 1.0, "hold", api_name="/ask")
    assert "tokens/s" in status and "preset greedy" in status and chat[-1]["role"] == "assistant"
    # The session keeps its answers: a second question is added to the first (the page's chat, on the server).
    chat, status, _ = client.predict(NOTE, "Free question", "Which drug?", False, "greedy", 4, False, 0.7, 0.9, 1,
                                     1.0, "hold", api_name="/ask")
    assert [m["role"] for m in chat] == ["user", "assistant"] * 2 and "tokens/s" in status
    out = client.predict(NOTE, "Free question", "Why admitted?", 4, "hold", api_name="/compare")
    assert "Both answers are ready" in out[4]
    voted = client.predict("tie", None, None, api_name="/vote")
    assert "Saved comparison #" in voted[0]
