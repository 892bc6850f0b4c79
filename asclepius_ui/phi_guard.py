"""The guard before a note leaves the machine: find protected health information, redact it, say what it misses.

Built on Presidio's analyzer *pattern* recognisers (regular expressions plus checksums and the phonenumbers
library), which need no downloaded NER model and make no network request: the e-mail recogniser's domain check
uses tldextract's bundled suffix list, never a download. Without an NER model the guard cannot find names,
places or organisations in free text; it finds a name after a title, a "Name:"/"Patient:" label or a relative's
word ("husband"), or written the way Synthea writes names (digits after it), and then finds that name's words
everywhere else in the note. The rule-based clinical de-identifiers on PyPI (philter-ucsf, philter-lite) were
measured for this and left out: both tag parts of speech with NLTK's tagger, whose data is a run-time download.
``bench/phi_guard.py`` measures the recall stated in ``about_markdown``.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
import threading
from dataclasses import asdict, dataclass

DETECTS = {
    "PERSON_LABELLED": "names after a title (Mr, Mrs, Ms, Dr) or a Name:/Patient: label",
    "PERSON": "names after a relative's word (husband Jose Gonzalez), Synthea's digit-suffixed names (Sumiko254 "
              "Larue605), and every other place in the note where a name found once appears",
    "DATE_TIME": "dates (e.g. 03/14/1956, 2024-05-01, March 14, 1956, January 15, 2019, 15 Jan 2019, "
                 "March 2019, March 14)",
    "PHONE_NUMBER": "phone and fax numbers (e.g. (413) 555-0123, 413.555.0123, +1 413 555 0123)",
    "EMAIL_ADDRESS": "e-mail addresses",
    "US_SSN": "US social security numbers written 123-45-6789, also the ones no real number uses",
    "AGE_OVER_89": "ages over 89 written as a number before years/y.o. or after age/aged",
    "MRN": "medical record and account numbers after an MRN/record/account label",
    "US_HEALTH_INSURANCE_MEMBER_ID": "health insurance member ids after an insurance/member label",
    "STREET_ADDRESS": "street addresses (number, name, Street/Avenue/Road...)",
    "ZIP_CODE": "US ZIP codes after a state abbreviation",
    "URL": "web addresses",
    "IP_ADDRESS": "IP addresses",
    "CREDIT_CARD": "payment card numbers",
    "US_NPI": "US national provider ids",
    "MEDICAL_LICENSE": "US medical license (DEA) numbers",
    "UUID": "record ids written as UUIDs (as Synthea writes them)",
}
CANNOT_DETECT = ("names with no title, label or relative's word before them that appear nowhere else in the note, "
                 "towns, hospitals and other organisations in running text (no NER model is loaded), ages written "
                 "in words, device serial numbers, photographs, and anything misspelled or written in an unusual "
                 "format")
# measured by ``python bench/phi_guard.py`` (seed 0); update both when the patterns change
RECALL = ("95% of 1,050 identifiers (names 87%, phone numbers 98%, every other kind 100%) in 50 Synthea notes "
          "with identifiers inserted in several formats each; the names it missed had no title, label or relative's "
          "word before them")
LISTED = 12  # findings named one by one on the page; the rest are counted
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
          r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_RELATIVE = (r"(?:husband|wife|spouse|partner|son|daughter|mother|father|brother|sister|mom|dad|grandson|"
             r"granddaughter|grandmother|grandfather|aunt|uncle|niece|nephew|cousin|fiance|fiancee|friend|"
             r"guardian|caregiver)")
_NAME_WORD = r"\p{Lu}[\p{L}'\-]+\d*"  # Presidio matches with the ``regex`` module: \p{..} is any script's letter
_SYNTHEA = r"\p{Lu}(?:\p{Ll}|['\-]\p{L})*\p{Ll}\d{1,4}"  # Synthea's names: Sumiko254, O'Neil12 (not Indole-3)
# capitalised words that label a note's parts, never taken as a name's words to look for elsewhere
_NOT_NAMES = {"Patient", "Name", "The", "Mr", "Mrs", "Ms", "Miss", "Dr", "MD", "Is", "And", "Was", "Has", "His",
              "Her", "History", "Plan"}


_LABELLED = {"PERSON_LABELLED", "MRN", "US_HEALTH_INSURANCE_MEMBER_ID"}
_NAMES = {"PERSON_LABELLED", "PERSON"}
_LABEL = re.compile(r"(?:(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+|[^:#\n]*[:#]\s*)?")


@dataclass(frozen=True)
class Finding:
    """One identifier found in the note: its kind, character span, text and the recogniser's confidence."""

    kind: str
    start: int
    end: int
    text: str
    score: float


def note_key(note: str) -> str:
    """A short fingerprint of a note: a confirmation holds for exactly this text."""
    return hashlib.sha256(note.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@functools.cache
def _recognizers() -> list:
    """Presidio's pattern recognisers plus ours; built once (importing Presidio takes seconds)."""
    import tldextract
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        DateRecognizer,
        EmailRecognizer,
        IpRecognizer,
        MedicalLicenseRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsHealthInsuranceMemberIdRecognizer,
        UsNpiRecognizer,
        UsSsnRecognizer,
        UuidRecognizer,
    )

    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # the bundled list: no download

    class OfflineEmail(EmailRecognizer):
        def validate_result(self, pattern_text: str):
            return offline(pattern_text.rsplit("@", 1)[-1]).suffix != ""

    def pattern(entity: str, regex: str, score: float = 0.7) -> PatternRecognizer:
        return PatternRecognizer(supported_entity=entity, patterns=[Pattern(entity.lower(), regex, score)],
                                 global_regex_flags=re.MULTILINE)  # case matters: names start with a capital

    return [
        OfflineEmail(), PhoneRecognizer(), UsSsnRecognizer(), DateRecognizer(), IpRecognizer(), UrlRecognizer(),
        CreditCardRecognizer(), UsNpiRecognizer(), MedicalLicenseRecognizer(), UsHealthInsuranceMemberIdRecognizer(),
        UuidRecognizer(),
        pattern("PERSON_LABELLED", r"(?:\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+(?:\p{Lu}[\p{L}'\-]*\d*\s?){1,3}"
                                   r"|(?:\b(?:Patient|Name|Patient name)\s*:\s*)(?:(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+)?"
                                   r"(?:\p{Lu}[\p{L}'\-]*\d*[ \t]?){1,3})"),
        pattern("MRN", r"(?i)\b(?:MRN|medical record(?: number| no\.?)?|record (?:number|no\.?)|account(?: number| "
                       r"no\.?)?|acct)\s*[:#]?\s*[A-Z0-9\-]{5,}"),
        pattern("US_HEALTH_INSURANCE_MEMBER_ID", r"(?i)\b(?:member|insurance|policy|subscriber)\s*(?:id|number|no\.?|"
                                                 r"#)\s*[:#]?\s*[A-Z0-9\-]{5,}"),
        pattern("STREET_ADDRESS", r"\b\d{1,6}\s+(?:[A-Z][a-zA-Z]*\.?\s+){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|"
                                  r"Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Circle)\b\.?"),
        pattern("ZIP_CODE", r"\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b"),
        # written-out dates, which Presidio's date patterns leave out: March 14, 1956 / 15 Jan 2019 / Jan. 15, 2019
        pattern("DATE_TIME", rf"\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b"
                             rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\.?,?\s+\d{{4}}\b"
                             rf"|\b{_MONTH}\.?,?\s+(?:19|20)\d\d\b|\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?![:.]\d)",
                0.7),
        # any 3-2-4 number: Presidio drops the ones no real SSN uses (123-45-6789), which a note may still hold
        pattern("US_SSN", r"\b\d{3}-\d{2}-\d{4}\b|(?i:\bSSN\b\s*[:#]?\s*)\d{9}\b", 0.6),
        # US-shaped phone numbers whatever their area code (phonenumbers rejects unassigned ones)
        pattern("PHONE_NUMBER", r"(?:\+1[ .-]?)?(?:\(\d{3}\)\s?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b", 0.6),
        pattern("PERSON", rf"(?<=\b{_RELATIVE}\s){_NAME_WORD}(?:[ \t]{_NAME_WORD})?"
                          rf"|(?<=\b{_RELATIVE},\s){_NAME_WORD}(?:[ \t]{_NAME_WORD})?"
                          rf"|\b{_SYNTHEA}(?:[ \t]+{_SYNTHEA})*\b", 0.6),
        pattern("AGE_OVER_89", r"\b(?:9\d|1[01]\d)(?=[- ]?(?:years?|yrs?|y/?o|y\.o\.)\b)"
                               r"|(?<=\baged\s)(?:9\d|1[01]\d)\b|(?<=\bage\s)(?:9\d|1[01]\d)\b"
                               r"|(?<=\bage:\s)(?:9\d|1[01]\d)\b", 0.6),
    ]


def _merge(spans: list[tuple[int, int, str, float]]) -> list[list]:
    """Overlapping spans as one, kind of the most confident."""
    merged: list[list] = []
    for start, end, kind, score in sorted(spans, key=lambda x: (x[0], -x[1])):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            if score > last[3]:
                last[2], last[3] = kind, score
            last[1] = max(last[1], end)
            continue
        merged.append([start, end, kind, score])
    return merged


def _name_everywhere(note: str, found: list[Finding]) -> list[tuple[int, int, str, float]]:
    """Every other place in ``note`` where a word of a name already found appears (whole words, same case)."""
    words = {w.strip(".,;:'") for f in found if f.kind in _NAMES for w in f.text.split()}
    words = {w for w in words if len(w) > 1 and w[0].isupper() and w not in _NOT_NAMES}
    taken = [(f.start, f.end) for f in found]
    more = []
    for word in sorted(words):
        for m in re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", note):
            if not any(s <= m.start() < e for s, e in taken):
                more.append((m.start(), m.end(), "PERSON", 0.5))
    return more


def scan(note: str, min_score: float = 0.3) -> list[Finding]:
    """Every identifier the guard can find in ``note``, in order; overlapping findings are merged, and a name found
    once is found wherever its words appear again."""
    if not (note or "").strip():
        return []
    results = []
    for rec in _recognizers():
        results += rec.analyze(note, rec.supported_entities, None)
    spans = [(r.start, r.end, r.entity_type, float(r.score)) for r in results if r.score >= min_score]
    found = []
    for s, e, kind, score in _merge(spans):
        if kind in _LABELLED:  # keep the label ("MRN:", "Dr.") and redact what follows it
            s += len(_LABEL.match(note[s:e]).group())
        text = note[s:e].rstrip()
        if text:
            found.append(Finding(kind, s, s + len(text), text, round(score, 2)))
    more = _name_everywhere(note, found)
    if not more:
        return found
    spans = [(f.start, f.end, f.kind, f.score) for f in found] + more
    return [Finding(kind, s, e, note[s:e], score) for s, e, kind, score in _merge(spans)]


def warm_up() -> threading.Thread:
    """Import Presidio in the background (it takes seconds) so the first scan is quick.

    spaCy, which Presidio imports, is imported here in the calling thread: two threads importing it at once (this
    one and the answer check's) can leave it half-initialised."""
    import spacy  # noqa: F401

    t = threading.Thread(target=_recognizers, daemon=True)
    t.start()
    return t


def redact(note: str, findings: list[Finding]) -> str:
    """``note`` with each finding replaced by ``[KIND]``."""
    out, pos = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            continue
        out += [note[pos:f.start], f"[{f.kind}]"]
        pos = f.end
    out.append(note[pos:])
    return "".join(out)


def summary(findings: list[Finding]) -> str:
    """One line for the page: how many identifiers of which kinds."""
    if not findings:
        return ("The guard found no identifiers it knows (it cannot find names without a title, label or "
                "relative's word, nor places, in running text).")
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    kinds = ", ".join(f"{n} × {k}" for k, n in counts.items())
    return f"The guard found {len(findings)} likely identifier(s): {kinds}."


def listing(findings: list[Finding], limit: int = LISTED) -> str:
    """The first ``limit`` findings as "KIND: text" and, when the list is cut, how many were not listed."""
    shown = "; ".join(f"{f.kind}: {f.text}" for f in findings[:limit])
    rest = len(findings) - limit
    return shown + (f"; and {rest} more not listed here" if rest > 0 else "")


def diff_html(note: str, findings: list[Finding]) -> str:
    """The redacted copy as escaped HTML, diff-style: each finding struck through in ``<del>`` and followed by
    its replacement in ``<ins>``; the rest of the note as it is. Nothing in the note can run or load."""
    out, pos = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            continue
        out += [html.escape(note[pos:f.start]),
                f'<del class="guard-del" title="removed">{html.escape(note[f.start:f.end])}</del>'
                f'<ins class="guard-ins" title="sent instead">[{html.escape(f.kind)}]</ins>']
        pos = f.end
    out.append(html.escape(note[pos:]))
    return '<pre class="guard-diff" style="white-space: pre-wrap">' + "".join(out) + "</pre>"


def as_dicts(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]


def leaves_machine(engine) -> bool:
    """True for an engine that sends the prompt to another host: its ``capabilities.remote`` says so (any backend
    may declare it; the guard never guesses from the class)."""
    return bool(engine.capabilities.remote)


def about_markdown() -> str:
    """What the guard can and cannot detect, and its measured recall, for the page."""
    can = "; ".join(DETECTS.values())
    return (f"**Privacy guard.** Before a note is sent to a remote model, it is scanned on this machine with "
            f"Presidio's pattern recognisers and the guard's own patterns (no NER model). It can detect: {can}. "
            f"It **cannot** detect {CANNOT_DETECT}. Measured recall: it found {RECALL}. You must confirm each note "
            f"before it is sent, or send a redacted copy.")
