"""The privacy guard on Synthea-style notes (made here): what it finds, what it redacts, what it says it misses."""

import random

import pytest

from asclepius_ui import phi_guard
from asclepius_ui.examples import example_notes

FIRST = ["Marcus", "Jolene", "Tyrell", "Ping", "Ana"]
LAST = ["Hegmann", "Kirlin", "Schowalter", "Okuneva", "Bartell"]


def synthea_note(rng: random.Random) -> tuple[str, dict[str, str]]:
    """A note in the style of Synthea's exports: digit-suffixed names, UUID record ids, US addresses."""
    first, last = f"{rng.choice(FIRST)}{rng.randint(100, 999)}", f"{rng.choice(LAST)}{rng.randint(100, 999)}"
    ids = {
        "name": f"{first} {last}",
        "dob": f"19{rng.randint(30, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        "mrn": f"{rng.getrandbits(32):08x}-77b3-4c5e-9a10-{rng.getrandbits(48):012x}",
        "street": f"{rng.randint(10, 9999)} {rng.choice(['Evergreen', 'Oak', 'Maple'])} Street",
        "zip": f"MA 0{rng.randint(1000, 2799)}",
        "phone": f"(413) 555-0{rng.randint(100, 199)}",
        "email": f"{first.lower()}@example.com",
        "ssn": f"5{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        "doctor": f"Dr. Lowe{rng.randint(100, 999)}",
    }
    note = (f"Patient: {ids['name']}\nDOB: {ids['dob']}   MRN: {ids['mrn']}\n"
            f"Address: {ids['street']}, Springfield, {ids['zip']}\nPhone: {ids['phone']}   Email: {ids['email']}\n"
            f"SSN: {ids['ssn']}\nAttending: {ids['doctor']}\n\nHospital Course:\nAdmitted with community-acquired "
            "pneumonia, treated with ceftriaxone 1 g IV daily and improved. Discharged home on oral cefpodoxime.\n")
    return note, ids


def test_synthea_style_identifiers_are_found_and_redacted():
    rng = random.Random(7)
    for _ in range(5):
        note, ids = synthea_note(rng)
        findings = phi_guard.scan(note)
        found = " | ".join(f.text for f in findings)
        for key in ("name", "dob", "mrn", "street", "zip", "phone", "email", "ssn"):
            assert ids[key] in found or ids[key].split()[-1] in found, (key, ids[key], found)
        red = phi_guard.redact(note, findings)
        for key in ("name", "dob", "mrn", "phone", "email", "ssn"):
            assert ids[key] not in red
        assert "ceftriaxone 1 g IV daily" in red and "Patient: [PERSON_LABELLED]" in red
        assert "likely identifier" in phi_guard.summary(findings)


def test_the_guard_says_what_it_cannot_find():
    note = "Seen with John at Springfield General; she lives in Chicopee."
    assert phi_guard.scan(note) == []  # free-text names and places need an NER model the guard does not load
    text = phi_guard.about_markdown()
    assert "cannot" in text and "towns, hospitals" in text and "phone" in text
    assert "Measured recall" in text and phi_guard.RECALL in text and "%" in phi_guard.RECALL


def test_clinical_text_without_identifiers_is_left_alone():
    note = example_notes()["cardiology chf"]
    kinds = {f.kind for f in phi_guard.scan(note)}
    assert not kinds & {"PERSON_LABELLED", "US_SSN", "EMAIL_ADDRESS", "MRN"}
    assert phi_guard.note_key(note) == phi_guard.note_key(note) != phi_guard.note_key(note + " ")


# One sentence per identifier shape the help text (phi_guard.DETECTS) names: (kind, sentence, what must be found).
SHAPES = [
    ("PERSON_LABELLED", "Mrs. Gonzalez was seen today.", "Gonzalez"),
    ("PERSON_LABELLED", "Patient: Jolene Kirlin\nSeen today.", "Jolene Kirlin"),
    ("PERSON_LABELLED", "Seen by Dr. Lowe in clinic.", "Lowe"),
    ("PERSON", "Seen with her husband Jose Gonzalez today.", "Jose Gonzalez"),
    ("PERSON", "Sumiko254 Larue605 is a 60 year-old woman.", "Sumiko254 Larue605"),
    ("DATE_TIME", "Born 03/14/1956 in town.", "03/14/1956"),
    ("DATE_TIME", "Admitted 2024-05-01 for fever.", "2024-05-01"),
    ("DATE_TIME", "DOB March 14, 1956 per chart.", "March 14, 1956"),
    ("DATE_TIME", "Seen on January 15, 2019 for cough.", "January 15, 2019"),
    ("DATE_TIME", "Seen on 15 Jan 2019 for cough.", "15 Jan 2019"),
    ("DATE_TIME", "Last seen in March 2019 for cough.", "March 2019"),
    ("DATE_TIME", "Follow-up on March 14 in clinic.", "March 14"),
    ("PHONE_NUMBER", "Call (413) 555-0123 tomorrow.", "(413) 555-0123"),
    ("PHONE_NUMBER", "Call 413.555.0123 tomorrow.", "413.555.0123"),
    ("PHONE_NUMBER", "Call +1 413 555 0123 tomorrow.", "+1 413 555 0123"),
    ("EMAIL_ADDRESS", "Write to ana.bartell@example.com today.", "ana.bartell@example.com"),
    ("US_SSN", "SSN 123-45-6789 on file.", "123-45-6789"),
    ("US_SSN", "SSN: 512-48-3391 on file.", "512-48-3391"),
    ("AGE_OVER_89", "She is a 93 year-old woman.", "93"),
    ("AGE_OVER_89", "Her mother, aged 91, lives nearby.", "91"),
    ("MRN", "MRN: 00412345 admitted.", "00412345"),
    ("US_HEALTH_INSURANCE_MEMBER_ID", "Member ID: XQH123456789 active.", "XQH123456789"),
    ("STREET_ADDRESS", "Lives at 12 Oak Street alone.", "12 Oak Street"),
    ("ZIP_CODE", "Springfield, MA 01103 is home.", "MA 01103"),
    ("URL", "Results at https://portal.example.com/p/1234 online.", "https://portal.example.com/p/1234"),
    ("IP_ADDRESS", "Logged in from 10.20.30.40 today.", "10.20.30.40"),
    ("CREDIT_CARD", "Paid with card 4111 1111 1111 1111 today.", "4111 1111 1111 1111"),
    ("US_NPI", "Referring provider NPI 1234567893 signed.", "1234567893"),
    ("MEDICAL_LICENSE", "DEA AB1234563 on the prescription.", "AB1234563"),
    ("UUID", "Record 0b0c3a52-77b3-4c5e-9a10-1a2b3c4d5e6f exported.", "0b0c3a52-77b3-4c5e-9a10-1a2b3c4d5e6f"),
]


def test_every_kind_the_help_names_has_a_shape_below():
    assert {kind for kind, *_ in SHAPES} == set(phi_guard.DETECTS)


@pytest.mark.parametrize(("kind", "note", "identifier"), SHAPES, ids=[f"{k}:{i}" for k, _, i in SHAPES])
def test_each_shape_the_help_claims_is_found_and_redacted(kind, note, identifier):
    findings = phi_guard.scan(note)
    assert any(f.text == identifier and f.kind == kind for f in findings), [(f.kind, f.text) for f in findings]
    redacted = phi_guard.redact(note, findings)
    assert identifier not in redacted and f"[{kind}]" in redacted


def test_a_name_found_once_is_redacted_everywhere_in_the_note():
    note = ("Mrs. Gonzalez was admitted with pneumonia. Her husband Jose Gonzalez stayed overnight. "
            "Gonzalez was discharged home; Jose will drive. Patient: Ana Bartell. Bartell's labs were normal.")
    findings = phi_guard.scan(note)
    redacted = phi_guard.redact(note, findings)
    for word in ("Gonzalez", "Jose", "Bartell", "Ana"):
        assert word not in redacted, redacted
    assert "pneumonia" in redacted and "Her husband [PERSON]" in redacted and "[PERSON] will drive" in redacted


def test_the_list_says_how_many_findings_were_not_listed():
    note = "; ".join(f"Call (413) 555-01{k:02d}" for k in range(15))
    findings = phi_guard.scan(note)
    assert len(findings) == 15
    text = phi_guard.listing(findings)
    assert text.count("PHONE_NUMBER: ") == phi_guard.LISTED == 12 and text.endswith("; and 3 more not listed here")
    assert "more" not in phi_guard.listing(findings[:12]) and "15 likely identifier" in phi_guard.summary(findings)


def test_the_redacted_copy_is_shown_diff_style_as_escaped_html():
    note = "<script>alert(1)</script> Mrs. Gonzalez <b>called</b> from (413) 555-0123."
    shown = phi_guard.diff_html(note, phi_guard.scan(note))
    assert "<script>" not in shown and "&lt;script&gt;" in shown and "&lt;b&gt;called&lt;/b&gt;" in shown
    assert '<del class="guard-del" title="removed">Gonzalez</del><ins class="guard-ins" title="sent instead">' \
           "[PERSON_LABELLED]</ins>" in shown
    assert ">(413) 555-0123</del>" in shown
    assert phi_guard.diff_html("No identifiers here.", []).endswith(">No identifiers here.</pre>")


def test_a_titled_name_after_a_patient_label_is_found_whole():
    found = phi_guard.scan("Patient: Mrs. Maria Gonzalez, MRN: 4455667")
    assert any(f.text == "Mrs. Maria Gonzalez" for f in found)
