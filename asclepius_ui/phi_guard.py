"""The guard before a note leaves the machine: find protected health information, redact it, say what it misses.

Built on Presidio's analyzer *pattern* recognisers (regular expressions plus checksums and the phonenumbers
library), which need no downloaded NER model and make no network request: the e-mail recogniser's domain check
uses tldextract's bundled suffix list, never a download. Without an NER model the guard cannot find names,
places or organisations in free text; it finds a name only after a title or a "Name:"/"Patient:" label.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from dataclasses import asdict, dataclass

DETECTS = {
    "PERSON_LABELLED": "names after a title (Mr, Mrs, Ms, Dr) or a Name:/Patient: label",
    "DATE_TIME": "dates (e.g. 03/14/1956, 2024-05-01, March 14, 1956)",
    "PHONE_NUMBER": "phone and fax numbers",
    "EMAIL_ADDRESS": "e-mail addresses",
    "US_SSN": "US social security numbers",
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
CANNOT_DETECT = ("names, towns, hospitals and other organisations in running text (no NER model is loaded), "
                 "ages over 89, relatives' names, device serial numbers, photographs, and anything misspelled or "
                 "written in an unusual format")


_LABELLED = {"PERSON_LABELLED", "MRN", "US_HEALTH_INSURANCE_MEMBER_ID"}
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
        pattern("PERSON_LABELLED", r"(?:\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+(?:[A-Z][a-zA-Z'\-]*\d*\s?){1,3}"
                                   r"|(?:\b(?:Patient|Name|Patient name)\s*:\s*)(?:[A-Z][a-zA-Z'\-]*\d*[ \t]?){1,3})"),
        pattern("MRN", r"(?i)\b(?:MRN|medical record(?: number| no\.?)?|record (?:number|no\.?)|account(?: number| "
                       r"no\.?)?|acct)\s*[:#]?\s*[A-Z0-9\-]{5,}"),
        pattern("US_HEALTH_INSURANCE_MEMBER_ID", r"(?i)\b(?:member|insurance|policy|subscriber)\s*(?:id|number|no\.?|"
                                                 r"#)\s*[:#]?\s*[A-Z0-9\-]{5,}"),
        pattern("STREET_ADDRESS", r"\b\d{1,6}\s+(?:[A-Z][a-zA-Z]*\.?\s+){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|"
                                  r"Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Circle)\b\.?"),
        pattern("ZIP_CODE", r"\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b"),
    ]


def scan(note: str, min_score: float = 0.3) -> list[Finding]:
    """Every identifier the guard can find in ``note``, in order; overlapping findings are merged."""
    if not (note or "").strip():
        return []
    results = []
    for rec in _recognizers():
        results += rec.analyze(note, rec.supported_entities, None)
    spans = sorted(((r.start, r.end, r.entity_type, float(r.score)) for r in results if r.score >= min_score),
                   key=lambda x: (x[0], -x[1]))
    merged: list[list] = []
    for start, end, kind, score in spans:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            if score > last[3]:
                last[2], last[3] = kind, score
            last[1] = max(last[1], end)
            continue
        merged.append([start, end, kind, score])
    found = []
    for s, e, kind, score in merged:
        if kind in _LABELLED:  # keep the label ("MRN:", "Dr.") and redact what follows it
            s += len(_LABEL.match(note[s:e]).group())
        text = note[s:e].rstrip()
        if text:
            found.append(Finding(kind, s, s + len(text), text, round(score, 2)))
    return found


def warm_up() -> threading.Thread:
    """Import Presidio in the background (it takes seconds) so the first scan is quick."""
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
        return "The guard found no identifiers it knows (it cannot find names or places in running text)."
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    kinds = ", ".join(f"{n} × {k}" for k, n in counts.items())
    return f"The guard found {len(findings)} likely identifier(s): {kinds}."


def as_dicts(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]


def leaves_machine(engine) -> bool:
    """True for an engine that sends the prompt to another host: its ``capabilities.remote`` says so (any backend
    may declare it; the guard never guesses from the class)."""
    return bool(engine.capabilities.remote)


def about_markdown() -> str:
    """What the guard can and cannot detect, for the page."""
    can = "; ".join(DETECTS.values())
    return (f"**Privacy guard.** Before a note is sent to a remote model, it is scanned on this machine with "
            f"Presidio's pattern recognisers (no NER model). It can detect: {can}. It **cannot** detect "
            f"{CANNOT_DETECT}. You must confirm each note before it is sent, or send a redacted copy.")
