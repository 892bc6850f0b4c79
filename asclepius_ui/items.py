"""What names an evaluation item everywhere (batch answers, judge, report, studies): one definition each."""

from __future__ import annotations

import hashlib

ANSWER_PREFIX = "answer_"  # a wide row's ``answer_<model>`` columns


def item_id(note: str, question: str) -> str:
    """A stable id for a question about a note (when the row gives none): a short hash of both."""
    return "h" + hashlib.sha256(f"{note}\x1f{question}".encode()).hexdigest()[:16]
