"""Where in the note: the note's sentences that support an answer, ranked, and the answer's unsupported sentences.

Pure and offline. Each answer sentence's content words are matched to the note's words with rapidfuzz (so
"furosemid" still finds "furosemide"), weighted by how rare each word is across the note's sentences; a note
sentence supports an answer sentence by the weighted share of that answer sentence's words it contains. An
answer sentence with no note sentence above ``SUPPORTED`` is flagged as possibly unsupported (a likely
hallucination). ``render_html`` escapes everything that comes from the note or the answer.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import asdict, dataclass

import numpy as np
from rapidfuzz import fuzz, process

SUPPORTED = 0.5  # weighted share of an answer sentence's words that one note sentence must contain
WORD_MATCH = 85  # rapidfuzz ratio for two words to count as the same word
TOP = 5  # note sentences highlighted at most
FLAG_SHOWN = 3  # unsupported sentences quoted in the flag; the rest are counted
# Inline styles, so the view holds wherever it is shown (the CSP allows inline styles, nothing loads)
_BADGE = ("display:inline-block;min-width:1.4em;margin-right:.45em;padding:0 .35em;border-radius:.7em;"
          "background:#1f5fa8;color:#fff;font-size:.8em;font-weight:600;text-align:center")
_WRAP = "white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;max-width:100%"

_STOP = frozenset("""a an the and or but if of to in on at by for with without from as is are was were be been being
this that these those it its he she they them his her their there here which who whom what when where why how
not no yes do does did done has have had having will would should could may might can also than then so such
patient patients pt note summary discharge about into over under after before during while per any all each
i you we our your me my mr mrs ms""".split())
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[^\sa-z])|\n+")
_WORD = re.compile(r"[A-Za-z][A-Za-z\-']*[A-Za-z]|[A-Za-z]|\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class Support:
    """One note sentence that supports the answer: its character span in the note, score in [0, 1] and rank."""

    start: int
    end: int
    text: str
    score: float
    rank: int


@dataclass(frozen=True)
class Evidence:
    """The supporting note sentences (best first) and the answer sentences nothing in the note supports."""

    spans: list[Support]
    unsupported: list[str]

    def as_dict(self) -> dict:
        """JSON-ready, as stored with a rating."""
        return {"spans": [asdict(s) for s in self.spans], "unsupported": list(self.unsupported)}


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line of ``text``, without surrounding whitespace; empty ones dropped."""
    spans, pos = [], 0
    for m in [*_SENT_END.finditer(text), None]:
        end = m.start() if m else len(text)
        piece = text[pos:end]
        lead = len(piece) - len(piece.lstrip())
        s, e = pos + lead, pos + len(piece.rstrip())
        if e > s:
            spans.append((s, e))
        if m:
            pos = m.end()
    return spans


def content_words(text: str) -> list[str]:
    """Lower-cased words and numbers of ``text`` that carry content (no stop words)."""
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in _STOP]


def find_evidence(note: str, answer: str, top: int = TOP) -> Evidence:
    """The note sentences supporting ``answer`` (at most ``top``, best first) and its unsupported sentences."""
    note_spans = sentence_spans(note or "")
    note_words = [set(content_words(note[s:e])) for s, e in note_spans]
    answer_sents = [answer[s:e] for s, e in sentence_spans(answer or "")]
    answer_words = [list(dict.fromkeys(content_words(a))) for a in answer_sents]
    if not note_spans or not any(answer_words):
        return Evidence([], [a for a, w in zip(answer_sents, answer_words, strict=True) if w] if not note_spans
                        else [])
    vocab = sorted(set().union(*note_words))
    asked = sorted({w for ws in answer_words for w in ws})
    # which note words each answer word matches (exact or close spelling)
    close = process.cdist(asked, vocab, scorer=fuzz.ratio, score_cutoff=WORD_MATCH, dtype=np.uint8) if vocab else \
        np.zeros((len(asked), 0), dtype=np.uint8)
    in_sentence = np.zeros((len(vocab), len(note_spans)), dtype=bool)
    index = {w: i for i, w in enumerate(vocab)}
    for j, words in enumerate(note_words):
        in_sentence[[index[w] for w in words], j] = True
    hits = (close > 0).astype(np.float32) @ in_sentence.astype(np.float32) > 0  # answer word x note sentence
    n = len(note_spans)
    df = hits.sum(axis=1)
    idf = np.log1p(n / np.maximum(df, 1)).astype(np.float32)
    idf[df == 0] = math.log1p(n)  # a word the note never uses weighs as much as the rarest one
    row = {w: i for i, w in enumerate(asked)}
    best_for_note = np.zeros(n, dtype=np.float32)
    unsupported = []
    for sent, words in zip(answer_sents, answer_words, strict=True):
        if not words:
            continue
        ids = [row[w] for w in words]
        weights = idf[ids]
        scores = weights @ hits[ids].astype(np.float32) / float(weights.sum())
        if scores.max() < SUPPORTED and sent not in unsupported:  # a looping answer's repeats once
            unsupported.append(sent)
        best_for_note = np.maximum(best_for_note, scores)
    order = [j for j in np.argsort(-best_for_note, kind="stable") if best_for_note[j] >= SUPPORTED][:top]
    spans = [Support(note_spans[j][0], note_spans[j][1], note[note_spans[j][0]:note_spans[j][1]],
                     round(float(best_for_note[j]), 3), rank + 1) for rank, j in enumerate(order)]
    return Evidence(spans, unsupported)


def render_html(note: str, evidence: Evidence | dict | None) -> str:
    """The note with its supporting sentences highlighted (rank in a badge), plus the unsupported-sentence flag.

    Every piece of note and answer text is HTML-escaped, so nothing in them runs or loads.
    """
    if evidence is None:
        return ""
    if isinstance(evidence, dict):
        evidence = Evidence([Support(**s) for s in evidence.get("spans", [])], list(evidence.get("unsupported", [])))
    parts = []
    unsupported = list(dict.fromkeys(evidence.unsupported))  # stored before repeats were dropped: drop them here
    if unsupported:
        quoted = "; ".join(f"“{html.escape(s)}”" for s in unsupported[:FLAG_SHOWN])
        more = len(unsupported) - FLAG_SHOWN
        rest = f" and {more} more sentence{'s' if more > 1 else ''}" if more > 0 else ""
        parts.append(f'<div class="ev-flag" style="{_WRAP}">⚠ Nothing in the note supports: {quoted}{rest} '
                     "(check it: a likely hallucination)</div>")
    if not evidence.spans:
        parts.append('<div class="ev-none">No sentence of the note supports this answer.</div>')
    else:
        ranked = "".join(f'<li style="{_WRAP}"><span class="ev-rank" style="{_BADGE}">{s.rank}</span> '
                         f'{html.escape(s.text)} <span class="ev-score">({s.score:.0%} of the answer\'s words)'
                         "</span></li>" for s in evidence.spans)
        # the badge is the number: no list numbering on top of it
        parts.append(f'<ol class="ev-list" style="list-style:none;padding-left:0">{ranked}</ol>')
        body, pos = [], 0
        for s in sorted(evidence.spans, key=lambda s: s.start):
            body.append(html.escape(note[pos:s.start]))
            body.append(f'<mark class="ev-mark" data-rank="{s.rank}"><span class="ev-rank" style="{_BADGE}" '
                        f'aria-label="rank {s.rank}">{s.rank}</span> {html.escape(note[s.start:s.end])}</mark>')
            pos = s.end
        body.append(html.escape(note[pos:]))
        parts.append(f'<details class="ev-note"><summary>The note, highlighted</summary><pre style="{_WRAP}">'
                     f'{"".join(body)}</pre></details>')
    return f'<div class="evidence">{"".join(parts)}</div>'
