"""The judge prompt (note, instruction, anonymous answers, rubric) and parsing of the judge's scores."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from asclepius_ui.rubric import MAX_SCORE, MIN_SCORE, RUBRIC_VERSION, rubric_text

SYSTEM = ("You are a meticulous clinician reviewing answers that AI assistants wrote about a patient's discharge "
          "summary. You grade strictly by the rubric and reply with scores only.")


def agent_order(models: list[str], row_key: str, seed: int = 0) -> list[str]:
    """The models in the shuffled order their answers are shown in, deterministic per row and seed."""
    order = list(models)
    random.Random(f"{seed}:{row_key}").shuffle(order)
    return order


def build_judge_prompt(note: str, question: str, answers: list[str]) -> str:
    """One prompt with the note, the instruction and the answers as Agent 1..N, the rubric and the reply format."""
    n = len(answers)
    blocks = "\n\n".join(f"[Agent {i} Answer Begin]\n{a.strip()}\n[Agent {i} Answer End]"
                         for i, a in enumerate(answers, start=1))
    format_lines = "\n".join(f"Agent {i}: <score>" for i in range(1, n + 1))
    return (
        "Below are a patient's discharge summary, an instruction from a healthcare professional about it, and the "
        f"answers of {n} anonymous agents to that instruction.\n\n"
        f"[Discharge Summary Begin]\n{note.strip()}\n[Discharge Summary End]\n\n"
        f"[Instruction Begin]\n{question.strip()}\n[Instruction End]\n\n"
        f"{blocks}\n\n"
        f"Score each agent's answer on this {MIN_SCORE}-to-{MAX_SCORE} scale "
        f"(rubric {RUBRIC_VERSION}):\n{rubric_text()}\n\n"
        "Judge each answer on its own against the discharge summary; the order of the agents means nothing. "
        f"Reply with exactly {n} lines and nothing else, one integer score per agent:\n{format_lines}"
    )


def build_judge_messages(note: str, question: str, answers: list[str]) -> list[dict]:
    """Chat messages for one judge request."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": build_judge_prompt(note, question, answers)}]


@dataclass
class ParsedScores:
    """Scores by agent number (1-based); ``None`` where missing or invalid, with the reason in ``error``."""

    scores: dict[int, int | None]
    error: str | None = None


_LINE = re.compile(
    r"agent[\s_#-]*(\d+)\W{0,6}?\s*(?:score\s*)?[:=\-\u2013\u2014>)]+\s*\**\s*(?:score\s*(?:of|is|[:=])?\s*)?\**\s*"
    r"(-?\d+(?:\.\d+)?)(?:\s*/\s*\d+)?",
    re.IGNORECASE,
)
_JSON = re.compile(r"\{.*\}", re.DOTALL)


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*\d+)?\s*", value)
        return float(m.group(1)) if m else None
    if isinstance(value, dict):
        for k in ("score", "Score", "rating"):
            if k in value:
                return _number(value[k])
    return None


def _from_json(text: str) -> dict[int, list[float | None]] | None:
    m = _JSON.search(text)
    if not m:
        return None
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("scores"), (list, dict)):
        obj = obj["scores"]
    found: dict[int, list[float | None]] = {}
    if isinstance(obj, list):
        for i, v in enumerate(obj, start=1):
            found.setdefault(i, []).append(_number(v))
        return found
    if not isinstance(obj, dict):
        return None
    for k, v in obj.items():
        km = re.search(r"(\d+)", str(k))
        if km:
            found.setdefault(int(km.group(1)), []).append(_number(v))
    return found or None


def parse_scores(text: str | None, n_agents: int) -> ParsedScores:
    """Scores for agents 1..n from a judge reply: ``Agent 1: 3`` lines (markdown, dashes, ``3/4`` tolerated) or JSON.

    A score that is missing, conflicting, fractional or outside the rubric is ``None`` and named in ``error``:
    it is never turned into a number.
    """
    empty = {i: None for i in range(1, n_agents + 1)}
    if not text or not text.strip():
        return ParsedScores(empty, "empty reply")
    found = _from_json(text)
    if found is None:
        found = {}
        for m in _LINE.finditer(text):
            found.setdefault(int(m.group(1)), []).append(float(m.group(2)))
    if not found:
        return ParsedScores(empty, "no scores found in the reply")
    scores: dict[int, int | None] = {}
    problems: list[str] = []
    for i in range(1, n_agents + 1):
        values = {v for v in found.get(i, [])}
        if not values:
            problems.append(f"no score for Agent {i}")
            scores[i] = None
        elif len(values) > 1:
            shown = ", ".join(f"{v:g}" for v in sorted(v for v in values if v is not None))
            problems.append(f"conflicting scores for Agent {i}: {shown}")
            scores[i] = None
        else:
            v = values.pop()
            if v is None:
                problems.append(f"Agent {i} score is not a number")
                scores[i] = None
            elif v != int(v) or not MIN_SCORE <= v <= MAX_SCORE:
                problems.append(f"Agent {i} score {v:g} is not an integer from {MIN_SCORE} to {MAX_SCORE}")
                scores[i] = None
            else:
                scores[i] = int(v)
    extra = sorted(k for k in found if not 1 <= k <= n_agents)
    if extra:
        problems.append(f"scores for unknown agent(s) {extra}")
    return ParsedScores(scores, "; ".join(problems) or None)
