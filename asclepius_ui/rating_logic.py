"""Pure helpers shared by the rating pages, the storage layer and the export: vocabularies, blind sides, DPO pairs."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from .errors import InputError, StorageError  # noqa: F401  (StorageError re-exported for older imports)
from .rubric import SCORES
from .text_input import finite_number

REASON_TAGS = ("incorrect", "irrelevant", "major omission", "minor omission", "unsafe", "other")
WINNERS = {"A": "A better", "B": "B better", "tie": "Tie", "both_bad": "Both bad"}
SOURCES = ("chat", "compare")


def new_uid() -> str:
    """An idempotency key for one write (made when the form is shown, reused on retry)."""
    return uuid.uuid4().hex


def check_rating(score: object, tags: list[str] | tuple[str, ...] = ()) -> int:
    """The score as an int; raises ``InputError`` with a user-facing message when the rating is not valid."""
    if score is None or score == "":
        raise InputError("Pick a score from 1 to 4 first.")
    value = finite_number(score, "The score", integer=True)
    if value not in SCORES:
        raise InputError(f"The score must be one of {', '.join(map(str, SCORES))}.")
    unknown = [t for t in tags if t not in REASON_TAGS]
    if unknown:
        raise InputError(f"Unknown reason tag(s): {', '.join(unknown)}.")
    return value


def check_winner(winner: str) -> str:
    if winner not in WINNERS:
        raise InputError(f"The vote must be one of {', '.join(WINNERS)}.")
    return winner


@dataclass(frozen=True)
class Sides:
    """Which contender is shown as Model A (left) and which as Model B (right)."""

    a: str
    b: str
    swapped: bool


def assign_sides(first: str, second: str, rng: random.Random | None = None) -> Sides:
    """Put the two contenders left/right at random (a fair coin per trial)."""
    swapped = (rng or random.SystemRandom()).random() < 0.5
    return Sides(second, first, True) if swapped else Sides(first, second, False)


def draw_pair(names: list[str], rng: random.Random | None = None) -> tuple[str, str]:
    """Two different contenders drawn uniformly from ``names``, in the order ``names`` lists them.

    Sides are assigned afterwards by ``assign_sides``, so its ``swapped`` flag says whether Model A is the
    contender listed later.
    """
    if len(names) < 2:
        raise InputError("Compare mode needs at least two contenders.")
    names = list(names)
    a, b = sorted((rng or random.SystemRandom()).sample(names, 2), key=names.index)
    return a, b


def winner_model(winner: str, model_a: str, model_b: str) -> str | None:
    """The name of the preferred model, or None for a tie or both bad."""
    return {"A": model_a, "B": model_b}.get(winner)


def dpo_pair(row: dict) -> dict | None:
    """A (prompt, chosen, rejected) preference pair from one comparison row; None when there is no winner."""
    if row.get("winner") == "A":
        chosen, rejected = row["answer_a"], row["answer_b"]
    elif row.get("winner") == "B":
        chosen, rejected = row["answer_b"], row["answer_a"]
    else:
        return None
    if chosen == rejected:
        return None
    return {"prompt": row["prompt"], "chosen": chosen, "rejected": rejected,
            "chosen_model": winner_model(row["winner"], row["model_a"], row["model_b"]),
            "rejected_model": row["model_b"] if row["winner"] == "A" else row["model_a"],
            "comparison_id": row["id"]}
