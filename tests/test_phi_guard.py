"""The privacy guard on Synthea-style notes (made here): what it finds, what it redacts, what it says it misses."""

import random

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
    note = "Seen with her husband John at Springfield General; she lives in Chicopee."
    assert phi_guard.scan(note) == []  # free-text names and places need an NER model the guard does not load
    text = phi_guard.about_markdown()
    assert "cannot" in text and "names, towns, hospitals" in text and "phone" in text


def test_clinical_text_without_identifiers_is_left_alone():
    note = example_notes()["cardiology chf"]
    kinds = {f.kind for f in phi_guard.scan(note)}
    assert not kinds & {"PERSON_LABELLED", "US_SSN", "EMAIL_ADDRESS", "MRN"}
    assert phi_guard.note_key(note) == phi_guard.note_key(note) != phi_guard.note_key(note + " ")
