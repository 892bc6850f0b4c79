"""The paper's 4-point answer rubric, shared by the LLM judge and the human rating pages."""

from __future__ import annotations

RUBRIC_VERSION = "asclepius-4pt-v1"

SCORES: dict[int, str] = {1: "Unacceptable", 2: "Poor", 3: "Satisfactory", 4: "Excellent"}

DESCRIPTIONS: dict[int, str] = {
    1: (
        "The answer includes incorrect or irrelevant content; or, for an unanswerable instruction, "
        "it does not say so and answers wrongly."
    ),
    2: "Nothing in the answer is incorrect or irrelevant, but it omits significant or crucial content.",
    3: "Nothing in the answer is incorrect or irrelevant, and it omits only minor content.",
    4: (
        "The answer contains all necessary information; for an unanswerable instruction, "
        "it says that the instruction cannot be answered from the note."
    ),
}

MIN_SCORE = min(SCORES)
MAX_SCORE = max(SCORES)


def label(score: int) -> str:
    """'3 - Satisfactory' style label for a score."""
    return f"{score} - {SCORES[score]}"


def rubric_text() -> str:
    """The rubric as plain text, one score per line, best suited for prompts and help text."""
    return "\n".join(f"{s} ({SCORES[s]}): {DESCRIPTIONS[s]}" for s in sorted(SCORES))
