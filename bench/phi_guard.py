"""Recall of the privacy guard on Synthea notes with identifiers inserted in many formats.

    python bench/phi_guard.py [--data ../shared/data] [--seed 0]

Each note of ``synthea_notes_sample50.jsonl`` (templated synthetic notes, read from ``--data``) keeps its own
patient name (the line after "History of Present Illness") and gets a header, two sentences in running text and
a signature with identifiers of every kind the guard's help names, each drawn from several written formats
(dates as 03/14/1956, 2019-01-15, January 15, 2019, 15 Jan 2019...; names after a label, after a title, after a
relative's word, repeated bare, and once with no cue at all, which the guard says it cannot find). An identifier
counts as found when the guard's findings cover every one of its characters. Prints the recall per kind, how many
findings fall outside every inserted identifier (text redacted for nothing), and, on its last line, overall.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

from asclepius_ui import phi_guard

FIRST = ["Jose", "Maria", "Wei", "Aisha", "Dmitri", "Grace", "Tomás", "Priya", "Kofi", "Hannah", "Liam", "Sofia"]
LAST = ["Gonzalez", "Nguyen", "Okafor", "Schmidt", "Kowalski", "Haddad", "Oconnor", "Patel", "Lindqvist", "Moreau"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
RELATIVES = ["husband", "wife", "daughter", "son", "mother", "father", "sister", "brother", "partner"]
STREETS = ["Oak", "Maple", "Evergreen", "Washington", "Lake Shore", "Elm"]
SUFFIXES = ["Street", "St.", "Avenue", "Ave", "Road", "Drive", "Lane", "Boulevard"]


def a_date(rng: random.Random) -> str:
    y, m, d = rng.randint(1930, 2024), rng.randint(1, 12), rng.randint(1, 28)
    month = MONTHS[m - 1]
    return rng.choice([f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{y}-{m:02d}-{d:02d}", f"{month} {d}, {y}",
                       f"{d} {month[:3]} {y}", f"{month[:3]}. {d}, {y}", f"{d} {month} {y}", f"{m:02d}-{d:02d}-{y}",
                       f"{month} {y}", f"{month} {d}"])


def a_phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
    return rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"{a}{b}{c}"])


def identifiers(rng: random.Random) -> dict[str, tuple[str, str]]:
    """Kind and text of every identifier one note gets."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    rel_first, rel_last = rng.choice(FIRST), rng.choice(LAST)
    ssn = rng.choice([f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}", "123-45-6789"])
    return {
        "label_name": ("NAME", f"{first} {last}"),
        "dob": ("DATE", a_date(rng)),
        "mrn": ("MRN", f"{rng.choice(['', 'A', 'MR'])}{rng.randint(10**6, 10**8)}"),
        "street": ("ADDRESS", f"{rng.randint(1, 9999)} {rng.choice(STREETS)} {rng.choice(SUFFIXES)}"),
        "zip": ("ZIP", f"{rng.choice(['MA', 'NY', 'CA', 'TX'])} {rng.randint(1001, 99950):05d}"),
        "phone": ("PHONE", a_phone(rng)),
        "email": ("EMAIL", f"{first.lower()}.{last.lower()}@{rng.choice(['example.com', 'mail.org', 'clinic.net'])}"),
        "ssn": ("SSN", ssn),
        "relative": ("NAME", f"{rel_first} {rel_last}"),
        "title": (None, f"{rng.choice(['Mr.', 'Mrs.', 'Ms.'])} "),  # a title is not an identifier, the name is
        "title_name": ("NAME", last),
        "seen": ("DATE", a_date(rng)),
        "phone2": ("PHONE", a_phone(rng)),
        "bare_name": ("NAME", last),
        "url": ("URL", f"https://portal.{rng.choice(['example.com', 'clinic.org'])}/p/{rng.randint(1000, 9999)}"),
        "doctor": ("NAME", f"{rng.choice(FIRST)} {rng.choice(LAST)}"),
        "cosigner": ("NAME", f"{rng.choice(FIRST)} {rng.choice(LAST)}"),  # no cue before it: the guard's blind spot
        "signed": ("DATE", a_date(rng)),
        "ip": ("IP", f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"),
        "age": ("AGE_OVER_89", str(rng.randint(90, 104))),
    }


def build(text: str, rng: random.Random) -> tuple[str, list[tuple[str, int, int]]]:
    """The note with identifiers inserted, and each identifier's (kind, start, end)."""
    ids = identifiers(rng)
    rel = rng.choice(RELATIVES)
    parts: list = [
        "Patient: ", "label_name", "\nDOB: ", "dob", "   MRN: ", "mrn", "\nAddress: ", "street", ", Springfield, ",
        "zip", "\nPhone: ", "phone", "   Email: ", "email", "\nSSN ", "ssn", "\n"]
    d = re.match(r"\s*(\d{4}-\d{2}-\d{2})\n", text)  # Synthea's own: the visit's date, the patient's name
    m = re.search(r"# History of Present Illness\n([^\n]+)\n", text)
    if d and m:
        parts += [text[:d.start(1)], ("DATE", d.group(1)), text[d.end(1):m.start(1)], ("NAME", m.group(1).strip()),
                  text[m.end(1):]]
    else:
        parts.append(text)
    parts += [f"\nLives with her {rel} ", "relative", ", reachable at ", "phone2", ". ", "title", "title_name",
              " was last seen in clinic on ", "seen", "; results at ", "url", ". ", "bare_name",
              " reports that her grandmother, aged ", "age", ", lives nearby.\nElectronically signed by Dr. ",
              "doctor", " on ", "signed", " from ", "ip", "; case discussed with ", "cosigner", ", NP.\n"]
    out, spans, pos = [], [], 0
    for p in parts:
        kind, value = (ids[p] if p in ids else p if isinstance(p, tuple) else (None, p))
        if kind:
            spans.append((kind, pos, pos + len(value)))
        out.append(value)
        pos += len(value)
    return "".join(out), spans


def covered(findings: list, start: int, end: int, note: str) -> bool:
    marks = set()
    for f in findings:
        marks.update(range(f.start, f.end))
    return all(i in marks for i in range(start, end) if not note[i].isspace())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    src = Path(args.data) / "synthea_notes_sample50.jsonl"
    if not src.exists():
        print(f"{src} not found: pass --data FOLDER holding synthea_notes_sample50.jsonl", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    found, total, extra, n_findings = Counter(), Counter(), 0, 0
    for line in src.read_text(encoding="utf-8").splitlines():
        note, spans = build(json.loads(line)["text"], rng)
        findings = phi_guard.scan(note)
        for kind, s, e in spans:
            total[kind] += 1
            found[kind] += covered(findings, s, e, note)
        n_findings += len(findings)
        extra += sum(not any(f.start < e and s < f.end for _, s, e in spans) for f in findings)
    for kind in sorted(total):
        print(f"{kind:12s} recall {found[kind] / total[kind]:.3f} ({found[kind]} of {total[kind]})")
    print(f"findings outside every inserted identifier (over-redaction): {extra} of {n_findings}")
    n, k = sum(total.values()), sum(found.values())
    print(f"overall recall {k / n:.3f} ({k} of {n} identifiers in {len(total)} kinds, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
