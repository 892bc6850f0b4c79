"""Templated synthetic discharge summaries and question-answer pairs (no API, fully local).

Used for the toy training run, the app's demo checkpoint and test fixtures. Every fact in an answer
comes from the note it was generated with, so answers can be checked exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FIRST = ["John", "Maria", "Ahmed", "Li", "Grace", "Peter", "Sofia", "Omar", "Hannah", "Ivan", "Nora", "Tom"]
LAST = ["Smith", "Garcia", "Khan", "Chen", "Okafor", "Novak", "Rossi", "Haddad", "Berg", "Petrov", "Moreau", "Lee"]

CONDITIONS = [
    # (diagnosis, abbreviation, expansion, presenting complaint, treatment, test)
    ("pneumonia", "CAP", "community-acquired pneumonia", "fever and cough", "ceftriaxone", "chest x-ray"),
    ("heart failure", "CHF", "congestive heart failure", "shortness of breath and leg swelling", "furosemide",
     "echocardiogram"),
    ("myocardial infarction", "MI", "myocardial infarction", "crushing chest pain", "aspirin", "troponin"),
    ("diabetic ketoacidosis", "DKA", "diabetic ketoacidosis", "vomiting and confusion", "insulin drip",
     "blood gas"),
    ("pulmonary embolism", "PE", "pulmonary embolism", "sudden breathlessness", "heparin", "CT angiogram"),
    ("urinary tract infection", "UTI", "urinary tract infection", "burning on urination and fever",
     "nitrofurantoin", "urine culture"),
    ("atrial fibrillation", "AF", "atrial fibrillation", "palpitations", "metoprolol", "ECG"),
    ("COPD exacerbation", "COPD", "chronic obstructive pulmonary disease", "worsening wheeze", "prednisone",
     "spirometry"),
    ("stroke", "CVA", "cerebrovascular accident", "weakness of the right arm", "alteplase", "head CT"),
    ("cellulitis", "SSTI", "skin and soft tissue infection", "a red swollen leg", "cefazolin", "blood cultures"),
    ("acute kidney injury", "AKI", "acute kidney injury", "reduced urine output", "IV fluids", "creatinine"),
    ("gastrointestinal bleed", "GIB", "gastrointestinal bleed", "black stools", "pantoprazole", "endoscopy"),
]
HISTORY = ["hypertension", "type 2 diabetes", "asthma", "chronic kidney disease", "obesity", "hyperlipidemia"]
FOLLOW = ["primary care", "cardiology", "pulmonology", "nephrology", "neurology", "the wound clinic"]


@dataclass
class SyntheticNote:
    """A generated note with the facts it states and question-answer pairs over them."""

    text: str
    facts: dict[str, str]
    qa: list[tuple[str, str, str]] = field(default_factory=list)  # (task, question, answer)


def make_note(rng: random.Random) -> SyntheticNote:
    """One synthetic discharge summary with its QA pairs."""
    dx, abbr, expansion, complaint, drug, test = rng.choice(CONDITIONS)
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    age = rng.randint(24, 92)
    sex = rng.choice(["male", "female"])
    days = rng.randint(2, 12)
    history = rng.choice(HISTORY)
    follow = rng.choice(FOLLOW)
    weeks = rng.randint(1, 6)
    text = (
        "DISCHARGE SUMMARY\n\n"
        f"Patient: {name}, {age}-year-old {sex}\n"
        f"Length of stay: {days} days\n\n"
        f"History of Present Illness:\nThe patient came in with {complaint}. Past history of {history}.\n\n"
        f"Hospital Course:\nWorkup with {test} confirmed {abbr}. The patient was treated with {drug} "
        f"and improved.\n\n"
        f"Discharge Diagnosis: {dx}\n"
        f"Discharge Plan: continue {drug}. Follow up with {follow} in {weeks} weeks.\n"
    )
    facts = dict(dx=dx, abbr=abbr, expansion=expansion, complaint=complaint, drug=drug, test=test, age=str(age),
                 days=str(days), history=history, follow=follow, weeks=str(weeks))
    qa = [
        ("qa", "What was the discharge diagnosis?", dx),
        ("qa", "Which medication was the patient treated with?", drug),
        ("abbreviation", f"What is the expanded form of the abbreviation '{abbr}'?", expansion),
        ("qa", "How long was the hospital stay?", f"{days} days"),
        ("qa", "What test confirmed the diagnosis?", test),
        ("ner", "What past medical history is mentioned?", history),
        ("temporal", "When is the follow-up planned?", f"in {weeks} weeks with {follow}"),
        ("summarization", "Summarize the hospital course.",
         f"Treated for {dx} with {drug} after {test}; follow up with {follow}."),
    ]
    return SyntheticNote(text=text, facts=facts, qa=qa)


def make_notes(n: int, seed: int = 0) -> list[SyntheticNote]:
    """``n`` reproducible synthetic notes."""
    rng = random.Random(seed)
    return [make_note(rng) for _ in range(n)]
