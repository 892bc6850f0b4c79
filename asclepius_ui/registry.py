"""Known model variants: their prompt template and context length."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    """What the app needs to know about a model beyond its weights."""

    name: str
    hub_id: str | None
    template: str
    context_length: int
    base: str
    local_only: bool = False
    known: bool = True
    note: str = ""


DEMO_NAME = "asclepius-studio-demo"

REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("Asclepius-7B", "starmpcc/Asclepius-7B", "asclepius", 2048, "LLaMA-1 7B"),
        ModelSpec("Asclepius-13B", "starmpcc/Asclepius-13B", "asclepius", 2048, "LLaMA-1 13B"),
        ModelSpec("Asclepius-Llama2-7B", "starmpcc/Asclepius-Llama2-7B", "asclepius", 4096, "Llama 2 7B"),
        ModelSpec("Asclepius-Llama2-13B", "starmpcc/Asclepius-Llama2-13B", "asclepius", 4096, "Llama 2 13B"),
        ModelSpec("Asclepius-Llama3-8B", "starmpcc/Asclepius-Llama3-8B", "asclepius", 8192, "Llama 3 8B"),
        ModelSpec(
            "Asclepius-Mistral-7B-v0.3", "starmpcc/Asclepius-Mistral-7B-v0.3", "asclepius", 8192, "Mistral 7B v0.3"
        ),
        ModelSpec(
            "Asclepius-R",
            None,
            "asclepius",
            2048,
            "LLaMA-1 7B",
            local_only=True,
            note="Trained on MIMIC-III; credentialed PhysioNet access. Load it from a local folder.",
        ),
        # Baselines of the paper's comparison, prompted as the authors prompted them (src/utils.get_prompt).
        ModelSpec("LLaMA-7B", "huggyllama/llama-7b", "asclepius-base", 2048, "LLaMA-1 7B",
                  note="Baseline (base model): the Asclepius prompt followed by 'Response: ', as in the paper."),
        ModelSpec("PMC-LLaMA-7B", "chaoyi-wu/PMC_LLAMA_7B", "asclepius-base", 2048, "LLaMA-1 7B",
                  note="Baseline (base model): the Asclepius prompt followed by 'Response: ', as in the paper."),
        ModelSpec("Alpaca-7B", "chavinlo/alpaca-native", "alpaca", 2048, "LLaMA-1 7B",
                  note="Baseline: the Alpaca prompt, as in the paper."),
        ModelSpec("MedAlpaca-7B", "medalpaca/medalpaca-7b", "medalpaca", 2048, "LLaMA-1 7B",
                  note="Baseline: the MedAlpaca prompt, as in the paper."),
        ModelSpec(
            DEMO_NAME,
            None,
            "asclepius",
            2048,
            "tiny LLaMA built by train.toy",
            local_only=True,
            note="Demo model, not for clinical use.",
        ),
    ]
}

_BY_HUB_ID = {s.hub_id.lower(): s for s in REGISTRY.values() if s.hub_id}


def lookup(model: str) -> ModelSpec | None:
    """Find the registry entry for a hub id, a registry name or a local folder named after one."""
    key = model.rstrip("/").lower()
    if key in _BY_HUB_ID:
        return _BY_HUB_ID[key]
    for spec in REGISTRY.values():
        if spec.name.lower() == key:
            return spec
    name = Path(model.rstrip("/")).name.lower()
    for spec in sorted(REGISTRY.values(), key=lambda s: -len(s.name)):
        if spec.name.lower() == name or (spec.hub_id and spec.hub_id.split("/")[-1].lower() == name):
            return spec
    return None


def resolve(model: str, context_length: int | None = None) -> ModelSpec:
    """The spec for ``model``; an unknown model gets the Asclepius template and ``known=False``."""
    spec = lookup(model)
    if spec is not None:
        return spec
    return ModelSpec(
        name=Path(model.rstrip("/")).name or model,
        hub_id=None,
        template="asclepius",
        context_length=context_length or 2048,
        base="unknown",
        known=False,
        note="Unknown model: using the Asclepius prompt template. Pick another with --template.",
    )
