"""The Analysis page's handlers as plain functions (tested without a browser): ``eval.report`` over the database."""

from __future__ import annotations

import shutil

from eval.report import build_report, figure_caption, summary_tables
from eval.stats import MIN_SHARED

from .. import private_files
from ..errors import UserError
from ..text_input import finite_number
from .common import error_box, user_message

ALL = "All studies"
REPORT_MAX_AGE_S = 3600  # private report folders older than this are removed at the next refresh
NO_RATINGS = ("**No ratings yet.** Rate answers in Chat or Compare, run a study, or add judged files from "
              "`python -m eval.judge`; then press Refresh.")
EMPTY = ("", None, None, None, None, [], None)


def has_ratings(storage) -> bool:
    """Whether the database holds anything the report can analyse."""
    return bool(storage.ratings() or storage.comparisons() or storage.study_ratings())


def agreement_warning(agreement) -> str:
    """A sentence for the page when an agreement figure rests on fewer than ``MIN_SHARED`` shared items, else ""."""
    if agreement is None or not len(agreement):
        return ""
    fewest = int(agreement["shared items"].min())
    if fewest >= MIN_SHARED:
        return ""
    return (f" **Agreement rests on as few as {fewest} shared item(s)** (fewer than {MIN_SHARED}): read those "
            f"kappa and alpha values, and their wide intervals, as a rough sign only.")


def compute(storage, study: str | None, judged: list[str] | None, n_boot: int) -> tuple:
    """Run the report into a fresh private folder: (status, means, pairwise, agreement, headline, gallery, zip).

    The folder (0700) is removed an hour later, at the next refresh, or when the server stops."""
    private_files.sweep(REPORT_MAX_AGE_S)
    out = private_files.new_folder("analysis-")
    report, figures, md = build_report(out / "report", judged=list(judged or []), storage=storage,
                                       study=None if study in (None, "", ALL) else study, n_boot=int(n_boot))
    tables = summary_tables(report)
    archive = shutil.make_archive(str(out / "analysis-report"), "zip", out / "report")
    parts = [f"{r.title}: {r.n_ratings} ratings of {r.n_items} items" for r in report.results]
    status = ("Computed from " + "; ".join(parts) + f". Report: `{md.name}` with {len(figures)} figure(s)."
              + agreement_warning(tables["agreement"]))
    headline = str(figures["means"]) if "means" in figures else None
    gallery = [(str(p), figure_caption(name)) for name, p in figures.items() if name != "means"]
    return status, tables["means"], tables["pairwise"], tables["agreement"], headline, gallery, archive


def refresh(storage, study: str | None, boot, judged: list[str] | None) -> tuple[bool, tuple]:
    """``(show_results, outputs)``: the report, or a message (no ratings yet, a bad field, an internal error)."""
    if not judged and not has_ratings(storage):
        return False, (NO_RATINGS, *EMPTY[1:])
    try:
        n_boot = finite_number(boot if boot not in (None, "") else 1000, "Bootstrap resamples", lo=100, hi=20000,
                               integer=True)
        return True, compute(storage, study, judged, n_boot)
    except UserError as exc:
        return False, (error_box(str(exc)), *EMPTY[1:])
    except Exception as exc:  # a bug: logged with an id, the page keeps working
        return False, (user_message(exc, "analysis"), *EMPTY[1:])
