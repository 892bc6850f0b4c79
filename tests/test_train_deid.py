"""train.deid: MIMIC-III de-identification brackets rewritten by the reference's rules, shape by shape."""

from __future__ import annotations

import pytest

from train.deid import convert_deid_tags, deid_replacement


@pytest.mark.parametrize(("inner", "expected"), [
    ("First Name8 (NamePattern2) ", "[Name]"),
    ("Known lastname 123", "[Name]"),
    ("known firstname", "[Name]"),  # the category in lower case counts too
    ("Doctor Last Name ", "[Name]"),
    ("Hospital Ward Name 121", "[Company]"),  # the first category in the table wins: Hospital before Name
    ("Hospital1 18", "[Company]"),
    ("Location (un) 1234", "[LOC]"),
    ("Telephone/Fax (1) 123", "[#]"),
    ("Pager number 123", "[#]"),
    ("Age over 90 ", "[Age]"),
    ("Date Range (1) 123", "[DR]"),
    ("Year (4 digits) ", "[YR]"),
    ("Month (only) 51", "[MO]"),
    ("Holiday", "[DAY]"),
    ("Clip Number (Radiology) 1", "[Reg#]"),
    ("E-mail address 1", "[CI]"),
    ("2101-10-20", "2101-10-20"),  # a date with two hyphens is kept, without its brackets
    ("1234567", "[Reg#]"),  # digits only
    (" 123 ", "[Reg#]"),
    ("10-20", "10-20"),  # digits once - and / are removed: kept
    ("3/4", "3/4"),
    ("2-/2118", "2-/2118"),
    ("January 3", "January 3"),  # names a month: kept
    ("May", "May"),
    ("  ", ""),  # blank: dropped
    ("Foo bar", None),  # no rule: the reference stopped here
])
def test_each_bracket_shape(inner, expected):
    assert deid_replacement(inner) == expected


def test_pieces_are_joined_with_one_space_as_the_reference_did():
    got = convert_deid_tags("Dr. [**Last Name (un) **] saw pt on [**2101-10-20**].")
    assert got.text == "Dr.  [Name]  saw pt on  2101-10-20 ." and (got.brackets, got.unknown) == (2, 0)
    assert convert_deid_tags("[**First Name**][**Last Name**]").text == "[Name] [Name]"  # empty pieces left out
    assert convert_deid_tags("a [** **] b").text == "a   b"  # a blank bracket leaves only the joining space


def test_unmatched_and_unknown_brackets_stay():
    assert convert_deid_tags("x [**Last\nName**] y").text == "x [**Last\nName**] y"  # never across a line
    assert convert_deid_tags("no brackets").text == "no brackets"
    got = convert_deid_tags("see [**Foo bar**] and [**Known lastname 1**]")
    assert got.text == "see  [**Foo bar**]  and  [Name]" and (got.brackets, got.unknown) == (2, 1)
