"""The layer contracts (pyproject.toml, run by `lint-imports` in CI) cover every module of the core package."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = {"asclepius_ui.ui", "asclepius_ui.launch", "asclepius_ui.cli"}  # the app and its launcher sit on top


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["name"]: c for c in config["contracts"]}


def test_every_module_is_either_core_or_top():
    core = set(_contracts()["The core imports nothing from eval/, train/, the UI or the launcher"]["source_modules"])
    modules = {f"asclepius_ui.{p.stem}" for p in (ROOT / "asclepius_ui").glob("*.py") if p.stem != "__init__"}
    modules |= {f"asclepius_ui.{p.name}" for p in (ROOT / "asclepius_ui").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    unclassified = modules - core - TOP
    assert not unclassified, f"name these in the core contract of pyproject.toml (or move them to the UI): " \
                             f"{sorted(unclassified)}"
    assert not core & TOP


def test_the_core_may_not_import_what_sits_above_it():
    forbidden = set(_contracts()["The core imports nothing from eval/, train/, the UI or the launcher"]
                    ["forbidden_modules"])
    assert {"eval", "train", "gradio"} | TOP <= forbidden
