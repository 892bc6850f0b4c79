"""The judge prompt (note, instruction, anonymous answers, rubric) and parsing of the judge's scores.

Two protocols: ``paper`` (the default) follows the Asclepius authors' GPT-4 evaluation in content, in our own
words: one user message, answers labelled A, B, C…, the judge first works out the answer itself and then compares
each response with it on the four levels, and the first line of its reply holds only the N scores separated by
spaces. ``lines`` is the earlier format (Agent 1..N, a system message, one "Agent i: s" line each). A user prompt
file replaces the wording of either (see ``PLACEHOLDERS``).
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass

from asclepius_ui.prompts import fill_placeholders
from asclepius_ui.rubric import MAX_SCORE, MIN_SCORE, RUBRIC_VERSION, rubric_text

PROTOCOLS = ("paper", "lines")
# How a reply becomes scores: ``strict`` (``parse_scores``, the default) or ``reference`` (``parse_scores_reference``).
PARSE_RULES = ("strict", "reference")

# What a ``--prompt-file`` may use; ``{num_samples}`` is accepted as another name of ``{num_answers}``.
PLACEHOLDERS = {
    "note": "the discharge summary",
    "question": "the instruction",
    "answers": "the answers, each between '[Agent X's Answer Begin]' and '[Agent X's Answer End]' lines",
    "num_answers": "how many answers there are",
    "num_samples": "the same as {num_answers}",
    "labels": "the answer labels in order, e.g. 'A, B, C'",
}
REQUIRED_PLACEHOLDERS = ("note", "question", "answers")

# The four levels with the criteria of the authors' evaluation script, in our own words.
PAPER_CRITERIA = """\
1. Unacceptable (1 point): the response contains something incorrect or irrelevant; or the instruction cannot be \
answered from the summary and the response fails to say so and gives a wrong answer.
2. Poor (2 points): the response contains nothing incorrect or irrelevant, but it leaves out significant or \
essential content that the instruction asks for.
3. Satisfactory (3 points): the response contains nothing incorrect or irrelevant, and it leaves out only minor or \
unimportant content that the instruction asks for.
4. Excellent (4 points): the response contains everything the instruction asks for; if the instruction cannot be \
answered from the summary, the response recognises this and says that it is unanswerable."""

ANSWER_FIRST = ("Read the discharge summary and the instruction carefully and first work out the answer to the "
                "instruction yourself. Then compare each model's response with your own answer and grade it with "
                "the criteria below.")

PAPER_TEMPLATE = """You are a clinical language model with expert knowledge, asked to grade other models.

[Discharge Summary Begin]
{note}
[Discharge Summary End]

[Instruction Begin]
{question}
[Instruction End]

{answers}
Above are a discharge summary, an instruction that a healthcare professional gave about it, and the responses of \
{num_answers} different clinical models to that instruction, labelled {labels}.
""" + ANSWER_FIRST + """

Criteria:
""" + PAPER_CRITERIA + """

Grade every response on its own: no response may change the grade you give another.
The first line of your reply must hold only the {num_answers} scores, one per response in the order {labels}, \
separated by single spaces.
Give the scores without any explanation."""

SYSTEM = ("You are a meticulous clinician reviewing answers that AI assistants wrote about a patient's discharge "
          "summary. You grade strictly by the rubric and reply with scores only.")


def agent_order(models: list[str], row_key: str, seed: int = 0) -> list[str]:
    """The models in the shuffled order their answers are shown in, deterministic per row and seed."""
    order = list(models)
    random.Random(f"{seed}:{row_key}").shuffle(order)
    return order


def labels(n: int) -> list[str]:
    """Answer labels A, B, C … (then AA, AB … past 26)."""
    letters = string.ascii_uppercase
    return [letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26] for i in range(n)]


def answer_blocks(answers: list[str]) -> str:
    """The answers as labelled blocks, each followed by a blank line."""
    return "".join(f"[Agent {label}'s Answer Begin]\n{a.strip()}\n[Agent {label}'s Answer End]\n\n"
                   for label, a in zip(labels(len(answers)), answers, strict=True))


def fill_judge_template(template: str, note: str, question: str, answers: list[str]) -> str:
    """A paper-style template (ours or a user's prompt file) filled with the labelled answers."""
    n = len(answers)
    values = {"note": note.strip(), "question": question.strip(), "answers": answer_blocks(answers),
              "num_answers": str(n), "num_samples": str(n), "labels": ", ".join(labels(n))}
    return fill_placeholders(template, values, REQUIRED_PLACEHOLDERS)


def build_lines_prompt(note: str, question: str, answers: list[str]) -> str:
    """The ``lines`` protocol: the answers as Agent 1..N, the rubric and one "Agent i: <score>" line each."""
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


def build_judge_prompt(note: str, question: str, answers: list[str], protocol: str = "paper",
                       template: str | None = None) -> str:
    """The judge's prompt: a user ``template`` (placeholders as ``PLACEHOLDERS``), else the protocol's own."""
    if template is not None:
        return fill_judge_template(template, note, question, answers)
    if protocol == "paper":
        return fill_judge_template(PAPER_TEMPLATE, note, question, answers)
    if protocol == "lines":
        return build_lines_prompt(note, question, answers)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def build_judge_messages(note: str, question: str, answers: list[str], protocol: str = "paper",
                         template: str | None = None) -> list[dict]:
    """Chat messages for one judge request: one user message (``lines`` adds its system message)."""
    user = {"role": "user", "content": build_judge_prompt(note, question, answers, protocol, template)}
    if protocol == "lines" and template is None:
        return [{"role": "system", "content": SYSTEM}, user]
    return [user]


@dataclass
class ParsedScores:
    """Scores by answer position (1-based; A = 1); ``None`` where missing or invalid, with the reason in ``error``."""

    scores: dict[int, int | float | None]
    error: str | None = None

    def valid(self) -> int:
        return sum(v is not None for v in self.scores.values())


_LINE = re.compile(
    r"agent[\s_#-]*(\d+|[a-z](?![a-z]))(?:'s)?\W{0,6}?\s*(?:score\s*)?[:=\-\u2013\u2014>)]+\s*\**\s*"
    r"(?:score\s*(?:of|is|[:=])?\s*)?\**\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*\d+)?",
    re.IGNORECASE,
)
_JSON = re.compile(r"\{.*\}", re.DOTALL)
_NUMBERS_LINE = re.compile(r"-?\d+(?:\.\d+)?(?:[\s,;]+-?\d+(?:\.\d+)?)*")


def _position(label: str) -> int | None:
    """1 for "1" or "A" (and "Agent A"), 2 for "2" or "B" …"""
    m = re.fullmatch(r"\s*(?:agent|model|response)?[\s_#-]*(\d+|[a-z])\s*", label, re.IGNORECASE)
    if not m:
        return None
    token = m.group(1)
    return int(token) if token.isdigit() else ord(token.upper()) - ord("A") + 1


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


def _from_first_line(text: str) -> list[float] | None:
    """The paper's format: the first non-empty line holds only numbers (quotes stripped, as the authors did)."""
    for line in text.strip().splitlines():
        line = line.strip().strip("\"'`*").strip()
        if line:
            return [float(x) for x in re.split(r"[\s,;]+", line)] if _NUMBERS_LINE.fullmatch(line) else None
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
        pos = _position(str(k))
        if pos is not None:
            found.setdefault(pos, []).append(_number(v))
    return found or None


def parse_scores(text: str | None, n_agents: int) -> ParsedScores:
    """Scores for answers 1..n (A..) from a judge reply.

    Read in this order: the paper's first line of exactly n space-separated integers; JSON; "Agent X: s" lines
    (X a number or a letter; markdown, dashes and ``3/4`` tolerated). A first line with the wrong count of numbers
    leaves every score missing. A score that is missing, conflicting, fractional or outside the rubric is
    ``None`` and named in ``error``: it is never turned into a number.
    """
    empty = {i: None for i in range(1, n_agents + 1)}
    if not text or not text.strip():
        return ParsedScores(empty, "empty reply")
    first = _from_first_line(text)
    if first is not None:
        if len(first) != n_agents:
            return ParsedScores(empty, f"the first line holds {len(first)} score(s), expected {n_agents}")
        found: dict[int, list[float | None]] = {i: [v] for i, v in enumerate(first, start=1)}
    else:
        found = _from_json(text) or {}
        if not found:
            for m in _LINE.finditer(text):
                pos = _position(m.group(1))
                if pos is not None:
                    found.setdefault(pos, []).append(float(m.group(2)))
    if not found:
        return ParsedScores(empty, "no scores found in the reply")
    scores: dict[int, int | None] = {}
    problems: list[str] = []
    for i in range(1, n_agents + 1):
        values = set(found.get(i, []))
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


def _reference_number(token: str) -> int | float | None:
    try:
        value = float(token)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def parse_scores_reference(text: str | None, n_agents: int) -> ParsedScores:
    """Scores read as the authors' ``eval/gpt4_evaluate.py`` read them, for reproducing the paper's tables.

    Double, then single quotes are stripped from the ends of the whole reply, the reply is split on any whitespace
    (newlines included, so ``"3\n4"`` is two scores) and the first ``n_agents`` values are the scores, whatever
    follows and whatever their range. With fewer values every answer scores 0 (the reference's rule), and so does a
    value that is not a number (the reference kept the string; a number is needed here). ``error`` says why.
    """
    tokens = (text or "").strip('"').strip("'").split()
    if len(tokens) < n_agents:
        return ParsedScores({i: 0 for i in range(1, n_agents + 1)},
                            f"reference rule: {len(tokens)} value(s) for {n_agents} answers; every answer scored 0")
    values = [_reference_number(t) for t in tokens[:n_agents]]
    if any(v is None for v in values):
        bad = next(t for t, v in zip(tokens, values, strict=False) if v is None)
        return ParsedScores({i: 0 for i in range(1, n_agents + 1)},
                            f"reference rule: {bad[:20]!r} is not a number; every answer scored 0")
    return ParsedScores(dict(enumerate(values, start=1)))


def parse_with(rule: str, text: str | None, n_agents: int) -> ParsedScores:
    """``parse_scores`` (``strict``) or ``parse_scores_reference`` (``reference``)."""
    if rule == "strict":
        return parse_scores(text, n_agents)
    if rule == "reference":
        return parse_scores_reference(text, n_agents)
    raise ValueError(f"unknown parse rule {rule!r}; choose one of {', '.join(PARSE_RULES)}")
