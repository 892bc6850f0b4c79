"""MIMIC-III de-identification brackets (``[**Last Name (NamePattern1) **]``) rewritten as the reference does.

The Asclepius authors rewrote every bracket of a discharge summary before pretraining on it and generating
questions from it (their ``preprocessing/convert_deid_tag.py``, after Clinical-T5 on PhysioNet). The rules, as
``convert_deid_tags`` applies them to the text between ``[**`` and ``**]`` (a bracket never spans a line):

1. the first category in ``DEID_TAGS`` (in that order) whose name, or its name in lower case, occurs in the text
   gives the short tag: "Known lastname" -> ``[Name]``, "Hospital" -> ``[Company]``, "Year (4 digits)" -> ``[YR]``;
2. otherwise text with exactly two hyphens (a date such as ``2101-10-20``) is kept, without the brackets;
3. otherwise digits only (after trimming spaces) become ``[Reg#]``;
4. otherwise digits once ``-`` and ``/`` are removed (``10-20``, ``3/4``) are kept;
5. otherwise text naming a month (``January`` ... ``December``, case as written) is kept;
6. otherwise blank text is dropped.

Anything else stopped the reference with an error; here the bracket is left as it is and counted as unknown.
Finally the pieces (the text between brackets and each replacement) are joined with one space, leaving out empty
pieces, so ``Dr. [**Last Name**] saw`` becomes ``Dr.  [Name]  saw``: the spacing of the notes the released
questions were generated on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BRACKET = re.compile(r"\[\*\*(.*?)\*\*\]")

# (category named in the bracket, tag); order matters: the first match wins.
DEID_TAGS: tuple[tuple[str, str], ...] = (
    ("First Name", "[Name]"), ("Last Name", "[Name]"), ("Clip Number (Radiology)", "[Reg#]"),
    ("Hospital", "[Company]"), ("Numeric Identifier", "[Reg#]"), ("Location", "[LOC]"), ("Initials", "[Name]"),
    ("Known lastname", "[Name]"), ("Known firstname", "[Name]"), ("Age over 90", "[Age]"),
    ("Medical Record Number", "[Reg#]"), ("Telephone/Fax", "[#]"), ("Name", "[Name]"), ("Street Address", "[LOC]"),
    ("Date Range", "[DR]"), ("Date range", "[DR]"), ("Serial Number", "[#]"), ("Social Security Number", "[#]"),
    ("State", "[State]"), ("E-mail address", "[CI]"), ("Company", "[Company]"), ("Pager number", "[#]"),
    ("Country", "[Country]"), ("MD Number", "[Reg#]"), ("Wardname", "[LOC]"), ("College", "[Company]"),
    ("Apartment Address", "[LOC]"), ("URL", "[URL]"), ("CC Contact Info", "[CI]"), ("Attending Info", "[CI]"),
    ("Job Number", "[Reg#]"), ("Year", "[YR]"), ("Month", "[MO]"), ("Day", "[DAY]"), ("Holiday", "[DAY]"),
    ("Unit Number", "[Reg#]"), ("PO Box", "[LOC]"), ("Dictator Info", "[CI]"), ("Provider Number", "[#]"),
)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def deid_replacement(inner: str) -> str | None:
    """What the bracket around ``inner`` becomes (see the module docstring); ``None`` for an unknown shape."""
    for category, tag in DEID_TAGS:
        if category in inner or category.lower() in inner:
            return tag
    if inner.count("-") == 2:
        return inner
    if inner.strip().isnumeric():
        return "[Reg#]"
    if inner.replace("-", "").replace("/", "").isnumeric():
        return inner
    if any(month in inner for month in MONTHS):
        return inner
    if not inner.strip():
        return ""
    return None


@dataclass
class Converted:
    text: str
    brackets: int = 0
    unknown: int = 0


def convert_deid_tags(text: str) -> Converted:
    """``text`` with every de-identification bracket rewritten; counts the brackets and the unknown ones kept."""
    pieces: list[str] = []
    last = brackets = unknown = 0
    for m in BRACKET.finditer(text):
        brackets += 1
        new = deid_replacement(m.group(1))
        if new is None:
            unknown += 1
            new = m.group(0)
        pieces += [text[last:m.start()], new]
        last = m.end()
    if not brackets:
        return Converted(text)
    pieces.append(text[last:])
    return Converted(" ".join(p for p in pieces if p), brackets, unknown)
