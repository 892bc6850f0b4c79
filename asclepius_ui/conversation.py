"""Pure helpers for the chat: follow-up instructions, answer footers and rating snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

HISTORY_NOTE = "Earlier questions and answers about this note:"


def with_history(instruction: str, turns: list[tuple[str, str]], max_turns: int = 3) -> str:
    """The instruction with the last ``max_turns`` question-answer pairs written before it.

    Asclepius was trained on single-turn prompts, so history never becomes extra chat turns: it is
    folded into the one instruction of the official template, and only when the user asks for it.
    """
    turns = [(q, a) for q, a in turns if q.strip() and a.strip()][-max_turns:] if max_turns > 0 else []
    if not turns:
        return instruction
    lines = [HISTORY_NOTE]
    for q, a in turns:
        lines += [f"Q: {q.strip()}", f"A: {a.strip()}"]
    return "\n".join(lines) + "\n\nCurrent instruction: " + instruction.strip()


def stats_line(model_id: str, precision: str, new_tokens: int, seconds: float, stopped: bool = False,
               preset: str = "") -> str:
    """The line shown under each answer (the decoding preset first when there is one)."""
    rate = new_tokens / seconds if seconds > 0 else 0.0
    tail = " · stopped" if stopped else ""
    head = f"{model_id} · {precision}" + (f" · preset {preset}" if preset else "")
    return f"{head} · {new_tokens} tokens · {seconds:.2f} s · {rate:.1f} tokens/s{tail}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def snapshot(*, note: str, task: str, instruction: str, prompt: str, answer: str, model_id: str, revision: str,
             precision: str, template: str, settings: dict, started_at: str, finished_at: str, seconds: float,
             new_tokens: int, stopped: bool = False, preset: str = "", evidence: dict | None = None,
             claims: dict | None = None, guard: dict | None = None) -> dict:
    """Everything that was judged when an answer is rated: stored with the rating.

    The decoding ``preset``, the supporting note spans the rater was shown (``evidence``, from
    ``evidence.find_evidence(...).as_dict()``), the claim check's findings (``claims``, from
    ``claims.check_answer(...).as_dict()``) and what the privacy guard did (``guard``) travel inside
    ``settings``, the JSON the ratings table stores and the export writes, and at the top level too.
    """
    extra = {k: v for k, v in (("preset", preset), ("evidence", evidence), ("claims", claims), ("guard", guard)) if v}
    return dict(note=note, task=task, instruction=instruction, prompt=prompt, answer=answer, model_id=model_id,
                model_revision=revision, precision=precision, template=template, settings={**settings, **extra},
                **extra,
                started_at=started_at, finished_at=finished_at, generation_seconds=round(seconds, 4),
                new_tokens=new_tokens, stopped=stopped)
