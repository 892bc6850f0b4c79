"""Every answer checked against its note, claim by claim: numbers, drugs, sides, negation and certainty.

Pure and offline. Each answer sentence is split into what a clinician must verify:

- **numbers** with their units (doses, vitals, labs, dates, durations, counts): "5 mg" = "5mg", "two" = "2",
  "1 g" = "1000 mg", "2 weeks" = "14 days", dates in any common format;
- **drugs**, generic or brand, through the drug-named-entity-recognition package's dictionary (DrugBank, MeSH,
  MedlinePlus and NHS names; "Lasix" is furosemide), with the abbreviations in ``drug_abbreviations.json``;
- **sides** (left, right, bilateral) with the site they qualify;
- **negation and certainty** of each concept, by negspacy's NegEx rules (its clinical termset) and the same
  algorithm with a termset of hedges ("possible", "suspected", "likely");
- the other content words, which only decide which note sentences support the answer sentence.

Support may be spread over several note sentences: the best ``WINDOW`` note sentences by rarity-weighted word overlap
are taken jointly. A number, drug or side the note does not contain (or gives only for something else), a negation
that disagrees with the supporting sentence, or a certainty the note does not have is a **finding**; an answer
sentence whose content words the window barely covers is **unsupported**. Paraphrase is neither.

``check_answer(note, answer) -> Check`` is the one call a page needs; ``render_answer_html(check)`` marks the
findings inline (safe HTML). The note's analysis is cached per note; the spaCy pipeline loads once, lazily.
"""

from __future__ import annotations

import bz2
import html
import importlib.util
import json
import math
import pickle
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy

from .evidence import sentence_spans

WINDOW = 3  # note sentences that jointly support one answer sentence
COVERED = 0.5  # weighted share of an answer sentence's content words the window must contain
NEAR = 4  # tokens between a side word and its site, or a number and what it measures
KINDS = ("number", "drug", "side", "negation", "certainty", "unsupported")
KIND_NAMES = {"number": ("number", "numbers"), "dose": ("dose", "doses"), "date": ("date", "dates"),
              "drug": ("drug", "drugs"), "side": ("side", "sides"), "negation": ("negation", "negations"),
              "certainty": ("certainty", "certainties"), "unsupported": ("sentence", "sentences")}
MARK_LABELS = {"number": "number not in the note", "dose": "dose not in the note", "date": "date not in the note",
               "drug": "drug not in the note", "side": "side not in the note",
               "negation": "negation disagrees with the note", "certainty": "more certain than the note",
               "unsupported": "not found in the note"}

_STOP = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been being
this that these those it its he she they them his her their there here which who whom what when where why how
yes do does did done has have had having will would should could may might can also than then so such very
patient patients pt note summary about into over under after before during while per any all each other
i you we our your me my mr mrs ms dr who had given take taken started continued noted showed seen found
day days week weeks month months year years old time times daily""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z\-']*[A-Za-z]|[A-Za-z]")
_DRUG_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9]|[A-Za-z]")

# ----- numbers ----------------------------------------------------------------------------------------------------
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
WORD_NUMBERS = {w: i for i, w in enumerate(_ONES)} | _TENS | {"hundred": 100, "a dozen": 12, "dozen": 12}
# alias -> (canonical unit, factor to it). Compound units stay whole ("mg/dl").
_UNIT_GROUPS: dict[tuple[str, float], tuple[str, ...]] = {
    ("mg", 1.0): ("mg", "milligram", "milligrams", "mgs"),
    ("mg", 1000.0): ("g", "gm", "gms", "gram", "grams"),
    ("mg", 0.001): ("mcg", "ug", "µg", "microgram", "micrograms"),
    ("kg", 1.0): ("kg", "kgs", "kilogram", "kilograms"),
    ("lb", 1.0): ("lb", "lbs", "pound", "pounds"),
    ("ml", 1.0): ("ml", "cc", "milliliter", "milliliters", "millilitre", "millilitres"),
    ("ml", 1000.0): ("l", "liter", "liters", "litre", "litres"),
    ("unit", 1.0): ("unit", "units", "u", "iu"),
    ("meq", 1.0): ("meq",),
    ("mmol", 1.0): ("mmol",),
    ("min", 1 / 60): ("second", "seconds", "sec", "secs"),
    ("min", 1.0): ("minute", "minutes", "min", "mins"),
    ("min", 60.0): ("hour", "hours", "hr", "hrs", "h"),
    ("day", 1.0): ("day", "days", "d"),
    ("day", 7.0): ("week", "weeks", "wk", "wks"),
    ("month", 1.0): ("month", "months", "mo", "mos"),
    ("year", 1.0): ("year", "years", "yr", "yrs", "y", "yo", "y/o", "year-old", "years-old", "year old",
                    "years old"),
    ("%", 1.0): ("%", "percent"),
    ("mmhg", 1.0): ("mmhg", "mm hg"),
    ("/min", 1.0): ("bpm", "/min", "beats per minute", "breaths per minute"),
    ("degf", 1.0): ("°f", "degrees f", "degrees fahrenheit", "fahrenheit", "f"),
    ("degc", 1.0): ("°c", "degrees c", "degrees celsius", "celsius", "c"),
    ("cm", 1.0): ("cm", "centimeter", "centimeters"),
    ("cm", 0.1): ("mm", "millimeter", "millimeters"),
    ("tab", 1.0): ("tab", "tabs", "tablet", "tablets"),
    ("cap", 1.0): ("capsule", "capsules"),
    ("puff", 1.0): ("puff", "puffs"),
    ("drop", 1.0): ("drop", "drops", "gtt", "gtts"),
    ("dose", 1.0): ("dose", "doses"),
}
UNITS: dict[str, tuple[str, float]] = {alias: key for key, aliases in _UNIT_GROUPS.items() for alias in aliases}
_COMPOUND = r"(?:mg|mcg|g|meq|mmol|ng|pg|u|iu|ml|l|units?)\s?/\s?(?:kg|dl|l|ml|min|hr|h|day|d|m2)"
_DOSE_UNITS = {"mg", "ml", "unit", "meq", "mmol", "tab", "cap", "puff", "drop", "dose"}
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMWORD = r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[- ](?:one|two|three|four|five|six|" \
           r"seven|eight|nine))?|zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|" \
           r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|hundred|a dozen|dozen)"
_UNIT_ALT = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
_QTY = re.compile(
    rf"(?<![\w.])(?<![A-Za-z]-)(?P<a>{_NUM}|\b{_NUMWORD}\b)(?:st|nd|rd|th)?"
    rf"(?:\s*(?:-|–|to)\s*(?P<b>{_NUM}|\b{_NUMWORD}\b))?"
    rf"(?:\s*-?\s*(?P<unit>{_COMPOUND}|(?:{_UNIT_ALT})(?![A-Za-z0-9])))?(?![\w])", re.I)
_RATIO = re.compile(r"(?<![\w./])(\d{2,3})/(\d{2,3})(?![\w/])")
_CLOCK = re.compile(r"(?<![\w:])(\d{1,2}):(\d{2})(?::\d{2})?(?:\s*([ap])\.?m\.?)?(?![\w:])", re.I)
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_MONTH = r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|" \
         r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DATES = [
    re.compile(r"(?<![\w/-])(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?:T[\d:.+-]+)?(?![\w/])"),
    re.compile(r"(?<![\w/.-])(?P<m>\d{1,2})[/.-](?P<d>\d{1,2})[/.-](?P<y>\d{4}|\d{2})(?![\w/])"),
    re.compile(rf"\b{_MONTH}\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(?P<y>\d{{4}}))?\b", re.I),
    re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:,?\s+(?P<y>\d{{4}}))?\b", re.I),
    re.compile(rf"\b{_MONTH},?\s+(?P<y>\d{{4}})\b", re.I),
]


@dataclass(frozen=True)
class Quantity:
    """A number found in a text: its value(s) in a canonical unit, the unit (None if bare) and where it is."""

    values: tuple[float, ...]
    unit: str | None
    start: int
    end: int
    label: str  # "dose", "date" or "number"


def _num(s: str) -> float:
    s = s.lower().replace(",", "").strip()
    if s in WORD_NUMBERS:
        return float(WORD_NUMBERS[s])
    if re.fullmatch(r"[a-z]+[- ][a-z]+", s):
        tens, ones = re.split(r"[- ]", s)
        return float(_TENS[tens] + WORD_NUMBERS[ones])
    return float(s)


def _date(m: re.Match) -> tuple[int | None, int | None, int | None]:
    g = m.groupdict()
    month = int(g["m"]) if g.get("m") else _MONTHS.get((g.get("mon") or "")[:3].lower())
    day = int(g["d"]) if g.get("d") else None
    year = int(g["y"]) if g.get("y") else None
    if year is not None and year < 100:
        year += 2000 if year < 50 else 1900
    return year, month, day


def quantities(text: str, offset: int = 0) -> list[Quantity]:
    """Every date, clock time, ratio (a blood pressure) and number with its unit in ``text``."""
    found: list[Quantity] = []
    taken = bytearray(len(text))

    def add(q: Quantity) -> None:
        found.append(q)
        taken[q.start - offset:q.end - offset] = b"\x01" * (q.end - q.start)

    def free(m: re.Match) -> bool:
        return not any(taken[m.start():m.end()])

    for pattern in _DATES:
        for m in pattern.finditer(text):
            y, mo, d = _date(m)
            if free(m) and mo and 1 <= mo <= 12 and (d is None or 1 <= d <= 31):
                add(Quantity((float(y or 0), float(mo), float(d or 0)), "date", offset + m.start(),
                             offset + m.end(), "date"))
    for m in _CLOCK.finditer(text):
        if free(m):
            h = int(m.group(1)) % 12 + (12 if (m.group(3) or "").lower() == "p" else 0) if m.group(3) else \
                int(m.group(1))
            add(Quantity((float(h), float(m.group(2))), "clock", offset + m.start(), offset + m.end(), "number"))
    for m in _RATIO.finditer(text):
        if free(m):
            add(Quantity((float(m.group(1)), float(m.group(2))), "ratio", offset + m.start(), offset + m.end(),
                         "number"))
    for m in _QTY.finditer(text):
        if not free(m):
            continue
        unit_text = (m.group("unit") or "").lower()
        unit, factor = (re.sub(r"\s", "", unit_text), 1.0) if "/" in unit_text and unit_text not in UNITS else \
            UNITS.get(unit_text, (None, 1.0))
        a = m.group("a")
        if unit is None and a.lower() in ("one", "a dozen", "dozen") and not m.group("b"):
            continue  # "one of her medications", "a dozen": rarely a figure to verify
        try:
            values = tuple(round(_num(v) * factor, 6) for v in (a, m.group("b")) if v)
        except (KeyError, ValueError):
            continue
        if unit == "degf" and not 90 <= values[0] <= 110 or unit == "degc" and not 30 <= values[0] <= 45:
            unit, values = None, tuple(round(_num(v), 6) for v in (a, m.group("b")) if v)  # "58F": age, sex
        if len(values) == 2 and values[1] <= values[0]:  # "from 9 to 3": two numbers, not a range
            add(Quantity(values[:1], unit, offset + m.start("a"), offset + m.end("a"), "number"))
            values, start = values[1:], m.start("b")
        else:
            start = m.start()
        label = "dose" if unit in _DOSE_UNITS or (unit and unit.split("/")[0] in ("mg", "mcg", "g", "u", "units"))\
            else "number"
        add(Quantity(values, unit, offset + start, offset + m.end(), label))
    return sorted(found, key=lambda q: q.start)


def _same_value(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)


def quantity_matches(a: Quantity, n: Quantity) -> bool:
    """Does the note's quantity ``n`` state the answer's ``a``? Units must agree when both have one; a single value
    matches either end of a range; dates match on the parts both give."""
    if a.unit == "date" or n.unit == "date":
        if a.unit != n.unit:
            return a.unit is None and len(a.values) == 1 and any(  # "in 2019" against a full date
                _same_value(a.values[0], v) for v in n.values[:1]) and a.values[0] > 1900
        return all(x == 0 or y == 0 or x == y for x, y in zip(a.values, n.values, strict=True)) and \
            any(x != 0 and x == y for x, y in zip(a.values, n.values, strict=True))
    if a.unit and n.unit and a.unit != n.unit:
        return False
    if a.unit in ("ratio", "clock") or n.unit in ("ratio", "clock"):
        return len(a.values) == len(n.values) and all(map(_same_value, a.values, n.values))
    if len(a.values) == len(n.values):
        return all(map(_same_value, a.values, n.values))
    if len(a.values) == 1:
        return any(_same_value(a.values[0], v) for v in n.values)
    return False


# ----- drugs ------------------------------------------------------------------------------------------------------
@cache
def drug_lexicon() -> dict[str, frozenset[str]]:
    """Lower-case drug name or brand (one or two words) -> its generic names.

    From the drug-named-entity-recognition package's dictionary, kept to entries with a MedlinePlus, NHS or
    DrugBank-and-MeSH identifier (medicines rather than every chemical and gene), without ordinary words, plus the
    abbreviations in ``drug_abbreviations.json``.
    """
    spec = importlib.util.find_spec("drug_named_entity_recognition")
    if spec is None or spec.origin is None:
        raise RuntimeError("the drug-named-entity-recognition package is not installed (see requirements.txt)")
    with bz2.open(Path(spec.origin).parent / "drug_ner_dictionary.pkl.bz2", "rb") as f:
        data = pickle.load(f)  # the package's own data file, as the package itself loads it
    extra = json.loads((Path(__file__).parent / "drug_abbreviations.json").read_text(encoding="utf-8"))
    canon = data["drug_canonical_to_data"]
    wanted = set(extra["extra"])

    def medicine(name: str) -> bool:
        d = canon.get(name, {})
        ids = ("drugbank_id", "medline_plus_id", "nhs_url", "mesh_id")
        return bool(d.get("drugbank_id") or d.get("medline_plus_id") or d.get("nhs_url") or name in wanted
                    or any(t.startswith(("D06.472", "D26")) for t in d.get("mesh_tree") or ())
                    or not any(d.get(k) for k in ids))  # a name-only entry: from the package's brand lists

    not_drugs = set(extra["not_drugs"]) | _STOP
    lexicon: dict[str, frozenset[str]] = {}
    for variant, names in data["drug_variant_to_canonical"].items():
        if len(variant) < 4 or variant in not_drugs or variant.count(" ") > 1 or not re.search("[a-z]", variant):
            continue
        keep = frozenset(n for n in names if medicine(n))
        if keep:
            lexicon[variant] = keep
    for name in wanted:
        lexicon.setdefault(name, frozenset([name]))
    for abbr, name in extra["abbreviations"].items():
        lexicon[abbr] = frozenset([name])
    return lexicon


def drugs(text: str, offset: int = 0) -> list[tuple[frozenset[str], int, int]]:
    """(generic names, start, end) of each drug named in ``text``; two-word names first ("metoprolol succinate")."""
    lex = drug_lexicon()
    toks = [(m.group().lower(), m.start(), m.end()) for m in _DRUG_TOKEN.finditer(text)]
    out, i = [], 0
    while i < len(toks):
        if i + 1 < len(toks) and (names := lex.get(f"{toks[i][0]} {toks[i + 1][0]}")):
            out.append((names, offset + toks[i][1], offset + toks[i + 1][2]))
            i += 2
            continue
        if names := lex.get(toks[i][0]):
            out.append((names, offset + toks[i][1], offset + toks[i][2]))
        i += 1
    return out


# ----- words, sides, negation -------------------------------------------------------------------------------------
def stem(word: str) -> str:
    """A crude stem for matching ("knees" = "knee", "fractured" = "fracture"): lower-case, first six letters."""
    w = word.lower().strip("-'")
    for suffix in ("'s", "ies", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not w.endswith("ss"):
            w = w[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    return w[:6]


_SIDE = re.compile(r"\b(left|right|bilateral(?:ly)?|both|lt|rt)\b", re.I)
_NOT_SIDE = re.compile(r"^(?:right\s+(?:away|now|after|before|here|there|on|in|to)\b|left\s+(?:the|against|ama|"
                       r"home|without|early|before|after|for|with|her|his|him|them|it|us|me|alone|over|behind|"
                       r"unchanged|untreated|in\s+place)\b)", re.I)
SIDES = {"left": "L", "lt": "L", "right": "R", "rt": "R", "bilateral": "B", "bilaterally": "B", "both": "B"}
SIDE_WORDS = {"L": "left", "R": "right", "B": "bilateral"}


def _tokens(text: str, offset: int = 0) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), offset + m.start(), offset + m.end()) for m in _WORD.finditer(text)]


def content_stems(text: str) -> list[str]:
    """Stems of the content words of ``text`` (no numbers, no stop words, no side words)."""
    return [stem(w) for w, _, _ in _tokens(text) if w not in _STOP and w not in SIDES and len(w) > 1]


_CONTEXT = re.compile(r"[A-Za-z][A-Za-z\-']*[A-Za-z]|[A-Za-z]|\d+(?:[./]\d+)*")


@dataclass(frozen=True)
class SideMention:
    side: str  # "L", "R" or "B"
    sites: frozenset[str]  # stems of the words it qualifies
    context: frozenset[str]  # "<stem" before it and ">stem" after it, to tell two mentions of one site apart
    start: int
    end: int


def side_mentions(text: str, offset: int = 0) -> list[SideMention]:
    """Each left/right/bilateral in ``text`` with the stems of the content words near it (its site)."""
    toks = [(m.group().lower(), offset + m.start(), offset + m.end()) for m in _CONTEXT.finditer(text)]
    out = []
    for m in _SIDE.finditer(text):
        word = m.group(1).lower()
        if _NOT_SIDE.match(text[m.start():m.start() + 40]):
            continue
        i = next((k for k, t in enumerate(toks) if t[1] == offset + m.start()), None)
        if i is None:
            continue
        after = [stem(w) for w, _, _ in toks[i + 1:i + 1 + NEAR] if w not in _STOP and w not in SIDES
                 and not w[0].isdigit()]
        before = [stem(w) for w, _, _ in toks[max(0, i - 2):i] if w not in _STOP and w not in SIDES
                  and not w[0].isdigit()]
        if word == "both" and not after:
            continue
        context = {f"<{stem(w)}" for w, _, _ in toks[max(0, i - NEAR):i] if w not in _STOP and w not in SIDES}
        context |= {f">{stem(w)}" for w, _, _ in toks[i + 1:i + 1 + 2 * NEAR] if w not in _STOP and w not in SIDES}
        out.append(SideMention(SIDES[word], frozenset(after[:3] or before), frozenset(context),
                               offset + m.start(), offset + m.end()))
    return out


HEDGES = {
    "pseudo_negations": ["not likely", "no suspicion", "without concern"],
    "preceding_negations": ["possible", "possibly", "probable", "probably", "likely", "suspected", "suspect",
                            "suspicious for", "suspicion of", "concerning for", "concern for", "questionable",
                            "question of", "may have", "might have", "could have", "may be", "might be", "could be",
                            "cannot exclude", "cannot be excluded", "can not exclude", "presumed", "presumably",
                            "presumptive", "rule out", "r/o", "versus", "vs", "differential", "cannot rule out",
                            "not ruled out", "not rule out", "equivocal", "borderline", "suggestive of",
                            "worrisome for", "evaluate for"],
    "following_negations": ["is suspected", "was suspected", "is possible", "is likely", "is questionable",
                            "cannot be excluded", "not excluded", "was considered", "is probable"],
    "termination": [],
}


@dataclass(frozen=True)
class Concept:
    """A run of content words with its NegEx polarity and hedging."""

    stems: frozenset[str]
    start: int
    end: int
    negated: bool
    hedged: bool


def warm_up() -> threading.Thread:
    """Load the rules and the drug list in the background (seconds), so the first checked answer need not wait.

    spaCy itself is imported here, in the calling thread: two threads importing it at once (this one and the
    privacy guard's) can leave it half-initialised."""
    import spacy  # noqa: F401

    t = threading.Thread(target=lambda: (_pipeline(), drug_lexicon()), daemon=True)
    t.start()
    return t


@cache
def _pipeline():
    """spacy.blank("en") + negspacy (negation) + negspacy with the hedge termset (certainty), and
    the cue pattern that says whether a text needs them. No model is downloaded: the blank pipeline is rules only."""
    import spacy
    from negspacy.negation import Negex  # noqa: F401  (registers the "negex" factory)
    from negspacy.termsets import termset

    patterns = termset("en_clinical").get_patterns()
    # a bracket or semicolon ends a cue's scope too ("not on anticoagulation (stopped apixaban ...)")
    patterns["termination"] = [*patterns["termination"], "(", ")", "[", "]", ";"]
    hedges = {**HEDGES, "termination": list(patterns["termination"])}
    cues = [t.lower() for ts in (patterns, hedges) for k in ("preceding_negations", "following_negations")
            for t in ts[k]]
    cue = re.compile(r"(?<![\w])(?:" + "|".join(sorted(map(re.escape, set(cues)), key=len, reverse=True))
                     + r")(?![\w])", re.I)
    cue_words = {w for terms in [*patterns.values(), *HEDGES.values()] for t in terms for w in t.lower().split()}
    nlp = spacy.blank("en")
    nlp.add_pipe("negex", name="negation", config={"neg_termset": patterns, "extension_name": "negex",
                                                              "span_keys": ["concepts"]})
    nlp.add_pipe("negex", name="hedging", config={"neg_termset": hedges, "extension_name": "hedged",
                                                            "span_keys": ["concepts"]})
    return nlp, cue, frozenset(_STOP | cue_words | set(SIDES))


_RUN_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]")


def _concept_runs(text: str, skip: frozenset[str]) -> list[tuple[int, int]]:
    """(start, end) of each run of content words (3+ letters, not stop, cue or side words) unbroken by punctuation."""
    runs, cur, last = [], None, 0
    for m in _RUN_WORD.finditer(text):
        w = m.group().lower()
        content = len(w) > 2 and w not in skip
        if cur is not None and (not content or text[last:m.start()].strip()):
            runs.append(cur)
            cur = None
        if content:
            cur = (cur[0] if cur else m.start(), m.end())
        last = m.end()
    if cur is not None:
        runs.append(cur)
    return runs


def concepts_of(texts: list[str], offsets: list[int]) -> list[list[Concept]]:
    """The concepts of each text (one sentence each), with negation and hedging (NegEx only where a cue is)."""
    nlp, cue, skip = _pipeline()
    from spacy.attrs import SENT_START as sent_start  # loaded with the pipeline, on first use
    out = []
    for text, offset in zip(texts, offsets, strict=True):
        runs = _concept_runs(text, skip)
        flags = [(False, False)] * len(runs)
        if runs and cue.search(text):
            doc = nlp.make_doc(text)
            spans = [doc.char_span(a, b, label="C", alignment_mode="expand") for a, b in runs]
            kept, end = [], -1
            for i, sp in enumerate(spans):
                if sp is not None and sp.start >= end:
                    kept.append((i, sp))
                    end = sp.end
            doc.spans["concepts"] = [sp for _, sp in kept]
            starts = numpy.full((len(doc), 1), -1, dtype="int64").astype("uint64")  # one sentence: the text
            starts[0, 0] = 1
            doc.from_array([sent_start], starts)
            for _, proc in nlp.pipeline:
                doc = proc(doc)
            for i, sp in kept:
                flags[i] = (bool(sp._.negex), bool(sp._.hedged))
        out.append([Concept(frozenset(stem(w) for w in text[a:b].split()), offset + a, offset + b, neg, hedged)
                    for (a, b), (neg, hedged) in zip(runs, flags, strict=True)])
    return out


# ----- the note's analysis (cached) -------------------------------------------------------------------------------
@dataclass
class NoteSentence:
    start: int
    end: int
    text: str
    stems: frozenset[str]
    quantities: list[Quantity]
    drugs: frozenset[str]
    sides: list[SideMention]
    concepts: list[Concept]
    dosed: dict[int, frozenset[str]]  # index in ``quantities`` of each dose next to a drug -> that drug


@dataclass
class NoteAnalysis:
    text: str
    sentences: list[NoteSentence]
    index: dict[str, list[int]]  # stem -> sentences that contain it
    idf: dict[str, float]
    drugs: frozenset[str]
    words: frozenset[str] = field(default_factory=frozenset)


def _analyse_sentences(text: str, spans: list[tuple[int, int]]) -> list[tuple]:
    pieces = [text[s:e] for s, e in spans]
    concepts = concepts_of(pieces, [s for s, _ in spans])
    out = []
    for (s, e), piece, cons in zip(spans, pieces, concepts, strict=True):
        named, qs = drugs(piece, s), quantities(piece, s)
        dosed = {i: d for i, q in enumerate(qs) if q.label == "dose" and (d := _dosed_drug(named, q)) is not None}
        out.append((s, e, piece, frozenset(content_stems(piece)), qs, frozenset(n for names, _, _ in named
                    for n in names), side_mentions(piece, s), cons, dosed))
    return out


@lru_cache(maxsize=32)
def analyse_note(note: str) -> NoteAnalysis:
    """Sentences, numbers, drugs, sides and concepts of ``note``, and the word index (cached per note text)."""
    sents = [NoteSentence(*row) for row in _analyse_sentences(note, sentence_spans(note))]
    index: dict[str, list[int]] = {}
    for j, s in enumerate(sents):
        for w in s.stems:
            index.setdefault(w, []).append(j)
    n = max(len(sents), 1)
    idf = {w: math.log1p(n / len(js)) for w, js in index.items()}
    all_drugs = frozenset(d for s in sents for d in s.drugs)
    words = frozenset(w for w, _, _ in _tokens(note))
    return NoteAnalysis(note, sents, index, idf, all_drugs, words)


# ----- the check --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One claim of the answer the note does not back: its kind, where it is in the answer and why."""

    kind: str  # one of KINDS
    label: str  # what to call it in words: "dose", "date", "number", "drug", ...
    start: int
    end: int
    text: str
    reason: str
    closest: str  # the closest note sentence ("" when none)


@dataclass(frozen=True)
class Check:
    """The findings of one answer against one note."""

    answer: str
    findings: list[Finding]
    sentences: int = 0
    checked: dict[str, int] = field(default_factory=dict)  # claims looked up, by kind

    @property
    def kinds(self) -> Counter:
        """How many distinct findings of each kind (a looping answer's repeats count once)."""
        return Counter(k for k, _ in {(f.kind, f.text.lower()) for f in self.findings})

    @property
    def verdict(self) -> str:
        """One line for under the answer, e.g. "1 dose and 1 drug are not in the note"."""
        return verdict(self.findings, self.sentences, self.checked)

    def as_dict(self) -> dict:
        """JSON-ready, as stored with a rating or written by ``eval.check``."""
        return {"verdict": self.verdict, "findings": [asdict(f) for f in self.findings],
                "kinds": dict(self.kinds), "sentences": self.sentences, "checked": dict(self.checked)}

    @classmethod
    def from_dict(cls, d: dict, answer: str = "") -> Check:
        """A stored check back (what ``as_dict`` wrote)."""
        return cls(answer, [Finding(**f) for f in d.get("findings", [])], int(d.get("sentences", 0)),
                   dict(d.get("checked", {})))


def _plural(n: int, label: str) -> str:
    one, many = KIND_NAMES.get(label, (label, label + "s"))
    return f"{n} {one if n == 1 else many}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


NOTHING = "Nothing to check."  # an empty answer
NOTHING_CHECKED = "No number, drug, side or negation here to check against the note."


def verdict(findings: list[Finding], sentences: int = 1, checked: dict[str, int] | None = None) -> str:
    """The one-line summary of ``findings`` (each distinct claim counted once); ``checked``: the claims looked up by
    kind (an answer such as "Yes." has none, and is not said to be all in the note)."""
    if not sentences:
        return NOTHING
    distinct = {(f.kind, f.label, f.text.lower()): f for f in findings}
    missing = Counter(label for kind, label, _ in distinct if kind in ("number", "drug", "side"))
    neg = sum(1 for kind, _, _ in distinct if kind == "negation")
    cert = sum(1 for kind, _, _ in distinct if kind == "certainty")
    unsup = sum(1 for kind, _, _ in distinct if kind == "unsupported")
    parts = []
    if missing:
        order = ["dose", "number", "date", "drug", "side"]
        items = [_plural(missing[k], k) for k in order if missing[k]]
        total = sum(missing.values())
        parts.append(f"{_join(items)} {'is' if total == 1 else 'are'} not in the note")
    if neg:
        parts.append(f"{_plural(neg, 'negation')} {'disagrees' if neg == 1 else 'disagree'} with the note")
    if cert:
        parts.append(f"{'1 claim is' if cert == 1 else f'{cert} claims are'} more certain than the note")
    if unsup:
        parts.append(f"{_plural(unsup, 'unsupported')} {'has' if unsup == 1 else 'have'} nothing in the note")
    if not parts:
        nothing = checked is not None and not any(checked.values())
        return NOTHING_CHECKED if nothing else "Every number, drug, side and negation checked is in the note."
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _window(note: NoteAnalysis, stems: list[str], sides: frozenset[str] = frozenset()) -> tuple[list[int], float]:
    """The note sentences that jointly support an answer sentence (best first, at most WINDOW) and the weighted
    share of its content words they cover; between equal sentences, the one with the answer's sides wins."""
    words = list(dict.fromkeys(stems))
    if not words or not note.sentences:
        return [], 0.0
    top = math.log1p(max(len(note.sentences), 1))
    weight = {w: note.idf.get(w, top) for w in words}
    total = sum(weight.values())
    left = set(words)
    chosen: list[int] = []
    for _ in range(WINDOW):
        gain: Counter = Counter()
        for w in left:
            for j in note.index.get(w, ()):
                gain[j] += weight[w]
        if not gain:
            break
        j, g = max(gain.items(), key=lambda kv: (round(kv[1], 9),
                                                 len(sides & {m.side for m in note.sentences[kv[0]].sides}), -kv[0]))
        if chosen and g < 0.1 * total:
            break
        chosen.append(j)
        left -= note.sentences[j].stems
    covered = total - sum(weight[w] for w in left)
    return chosen, covered / total if total else 0.0


def _dosed_drug(named: list[tuple[frozenset[str], int, int]], q: Quantity) -> frozenset[str] | None:
    """The drug a dose belongs to: the nearest named just before it ("furosemide 40 mg"), else just after it
    ("40 mg of furosemide")."""
    before = [(q.start - b, names) for names, a, b in named if b <= q.start and q.start - b <= 30]
    if before:
        return min(before, key=lambda t: t[0])[1]
    after = [(a - q.end, names) for names, a, b in named if a >= q.end and a - q.end <= 12]
    return min(after, key=lambda t: t[0])[1] if after else None


def _check_sentence(note: NoteAnalysis, answer: str, s: int, e: int, concepts: list[Concept],
                    checked: Counter) -> list[Finding]:
    piece = answer[s:e]
    stems = content_stems(piece)
    mentions = side_mentions(piece, s)
    window, coverage = _window(note, stems, frozenset(m.side for m in mentions))
    sents = note.sentences
    closest = sents[window[0]].text if window else ""
    findings: list[Finding] = []
    here: Counter = Counter()  # claims looked up in this sentence

    def add(kind: str, label: str, a: int, b: int, reason: str, near: str = closest) -> None:
        findings.append(Finding(kind, label, a, b, answer[a:b], reason, near))

    # drugs
    named = drugs(piece, s)
    for names, a, b in named:
        here["drug"] += 1
        if not names & note.drugs and answer[a:b].lower() not in note.words:
            add("drug", "drug", a, b, f"{answer[a:b]} is not named in the note")
    # numbers
    for q in quantities(piece, s):
        here["number"] += 1
        holders = [j for j, ns in enumerate(sents) if any(quantity_matches(q, n) for n in ns.quantities)]
        if not holders and len(q.values) == 2 and q.unit not in ("date", "clock", "ratio"):
            ends = [Quantity((v,), q.unit, q.start, q.end, q.label) for v in q.values]  # "from 1.1 to 1.4"
            found = [[j for j, ns in enumerate(sents) if any(quantity_matches(x, n) for n in ns.quantities)]
                     for x in ends]
            holders = found[0] if all(found) else []
        what = answer[q.start:q.end]
        if not holders:
            add("number", q.label, q.start, q.end, f"{what} is not in the note")
            continue
        # a dose next to a drug must be the note's dose of that drug (in one sentence or line with it)
        drug = _dosed_drug(named, q) if q.label == "dose" else None
        if drug is None or any(quantity_matches(q, n) and (drug & sents[j].dosed[i] if i in sents[j].dosed
                                                            else drug & sents[j].drugs)
                               for j in holders for i, n in enumerate(sents[j].quantities)):
            continue
        add("number", q.label, q.start, q.end, f"the note gives {what} only for something else",
            sents[holders[0]].text)
    # sides: the note's mention of the same site that best matches this one's surroundings decides, looked for
    # first in the supporting sentences, then anywhere in the note
    for m in mentions:
        if m.side == "B" and answer[m.start:m.end].lower() == "both":
            continue
        here["side"] += 1
        word = answer[m.start:m.end]
        best: list = []  # the best-matching note mentions (ties kept: if any agrees, no finding)
        for group in (window, range(len(sents))):
            for rank, j in enumerate(group):
                for n in sents[j].sides:
                    if (n.sites & m.sites) if m.sites else (n.context & m.context):
                        score = (len(n.context & m.context) + len(n.sites & m.sites), -rank)
                        if not best or score > best[0][0]:
                            best = [(score, n, j)]
                        elif score == best[0][0]:
                            best.append((score, n, j))
            if best:
                break
        if best:
            if any(n.side == m.side or (n.side == "B" and m.side in "LR") for _, n, _ in best):
                continue
            _, n, j = best[0]
            if m.side == "B" and {x.side for x in sents[j].sides if x.sites & m.sites} >= {"L", "R"}:
                continue
            add("side", "side", m.start, m.end, f"the note says {SIDE_WORDS[n.side]}, not {word.lower()}",
                sents[j].text)
        elif SIDE_WORDS[m.side] not in note.words and not (m.side == "B" and "bilaterally" in note.words):
            add("side", "side", m.start, m.end, f"the note never says {SIDE_WORDS[m.side]}")
    # negation and certainty, against the supporting sentences
    for c in concepts:
        best: list = []  # the best-aligned note mentions in the best supporting sentence (ties kept)
        for rank, j in enumerate(window):
            for n in sents[j].concepts:
                shared = len(c.stems & n.stems)
                if shared and shared * 2 >= len(c.stems):
                    score = (-rank, shared / len(c.stems | n.stems))
                    if not best or score > best[0][0]:
                        best = [(score, n, j)]
                    elif score == best[0][0]:
                        best.append((score, n, j))
        if not best:
            continue
        here["negation"] += 1
        what = answer[c.start:c.end]
        if all(n.negated != c.negated for _, n, _ in best):
            _, n, j = best[0]
            add("negation", "negation", c.start, c.end,
                f"the note says no {what.lower()}" if n.negated else f"the note does not deny {what.lower()}",
                sents[j].text)
        elif not c.hedged and not c.negated and all(n.hedged and not n.negated for _, n, _ in best):
            _, n, j = best[0]
            add("certainty", "certainty", c.start, c.end, f"the note is not sure of {what.lower()}", sents[j].text)
    verified = here["number"] + here["drug"] > 0  # the sentence's figures and drugs were found
    if stems and coverage < COVERED and not findings and not verified:
        add("unsupported", "unsupported", s, e, "nothing in the note says this")
    checked.update(here)
    return findings


def check_answer(note: str, answer: str) -> Check:
    """Check each sentence of ``answer`` against ``note``; a repeated sentence is checked once."""
    analysis = analyse_note(note or "")
    answer = answer or ""
    spans = sentence_spans(answer)
    seen: dict[str, list[Finding]] = {}
    unique = [(s, e) for s, e in spans if not (answer[s:e].strip().lower() in seen or
                                                seen.setdefault(answer[s:e].strip().lower(), []) is None)]
    concepts = concepts_of([answer[s:e] for s, e in unique], [s for s, _ in unique])
    checked: Counter = Counter()
    first: dict[str, tuple[int, list[Finding]]] = {}
    for (s, e), cons in zip(unique, concepts, strict=True):
        first[answer[s:e].strip().lower()] = (s, _check_sentence(analysis, answer, s, e, cons, checked))
    findings: list[Finding] = []
    for s, e in spans:  # repeats of a sentence carry its findings, shifted to where they are
        s0, found = first[answer[s:e].strip().lower()]
        findings += [Finding(f.kind, f.label, f.start - s0 + s, f.end - s0 + s, f.text, f.reason, f.closest)
                     for f in found]
    return Check(answer, findings, len(unique), dict(checked))


# ----- rendering --------------------------------------------------------------------------------------------------
_HIDDEN = ("position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;clip:rect(0 0 0 0);"
           "white-space:nowrap;border:0")
_MARK_STYLE = {"unsupported": "background:#fff3cd;text-decoration:underline dotted;",
               "certainty": "background:#fde2c8;"}


def _mark(kind: str, label: str, inner: str, reason: str, closest: str) -> str:
    tip = f"{MARK_LABELS.get(label, MARK_LABELS[kind])}: {reason}."
    if closest:
        tip += f" Closest in the note: “{closest[:300]}”"
    style = _MARK_STYLE.get(kind, "background:#f8d7da;")
    return (f'<mark class="claim claim-{kind}" data-kind="{kind}" tabindex="0" title="{html.escape(tip)}" '
            f'style="{style}color:inherit;border-radius:3px;padding:0 2px">'
            f'<span class="claim-sr" style="{_HIDDEN}">{html.escape(MARK_LABELS.get(label, kind))}: </span>'
            f"{inner}</mark>")


def render_answer_html(check: Check) -> str:
    """The answer with each finding marked inline and the verdict under it; everything from the answer and the
    note is escaped, and nothing in the result runs or loads."""
    answer = check.answer
    inline = sorted((f for f in check.findings if f.kind != "unsupported"), key=lambda f: (f.start, -f.end))
    whole = {(f.start, f.end): f for f in check.findings if f.kind == "unsupported"}
    out, pos = [], 0
    for s, e in [*sentence_spans(answer), (len(answer), len(answer))]:
        out.append(html.escape(answer[pos:s]))
        body, p = [], s
        for f in inline:
            if f.start < p or f.end > e or f.start < s:
                continue
            body.append(html.escape(answer[p:f.start]))
            body.append(_mark(f.kind, f.label, html.escape(answer[f.start:f.end]), f.reason, f.closest))
            p = f.end
        body.append(html.escape(answer[p:e]))
        text = "".join(body)
        f = whole.get((s, e))
        out.append(_mark("unsupported", "unsupported", text, f.reason, f.closest) if f else text)
        pos = e
    ok, said = not check.findings, check.verdict
    mark, color = ("", "#444") if said in (NOTHING, NOTHING_CHECKED) else (
        ("✓ ", "#1e6b34") if ok else ("⚠ ", "#8a1c1c"))
    verdict_html = (f'<p class="claims-verdict" role="status" data-findings="{len(check.findings)}" '
                    f'style="margin:.4em 0 0;font-weight:600;color:{color}">{mark}{html.escape(said)}</p>')
    return (f'<div class="claims"><div class="claims-answer" style="white-space:pre-wrap;overflow-wrap:anywhere">'
            f'{"".join(out)}</div>{verdict_html}</div>')
