"""The admin page's handlers as plain functions (storage in, texts and rows out), tested without a browser."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .. import prefill, private_files
from ..errors import UserError
from ..export import export
from ..studies import StudyFileError, parse_study_file
from .common import error_box, safe_markdown, user_message

EXPORT_MAX_AGE_S = 3600  # private export folders older than this are removed at the next export


def chat_means(storage) -> list[list]:
    """Per-model mean of the current chat/compare ratings."""
    acc: dict[str, list[int]] = defaultdict(list)
    for r in storage.ratings():
        acc[r["model_id"]].append(r["score"])
    return [[m, len(v), round(sum(v) / len(v), 3)] for m, v in sorted(acc.items())]


def study_choices(storage) -> list[tuple[str, int]]:
    return [(f"{s['name']} ({s['items']} items, overlap {s['overlap']})", s["id"]) for s in storage.studies()]


def report(storage, study_id) -> tuple[str, list, list, list]:
    """(overall line, rows per rater, per-model means, chat means) for one study."""
    chat_rows = chat_means(storage)
    if study_id is None:
        return "No study yet.", [], [], chat_rows
    info = next((s for s in storage.studies() if s["id"] == int(study_id)), None)
    if info is None:
        return "No such study.", [], [], chat_rows
    prog = storage.study_progress(int(study_id))
    done = sum(p["done"] for p in prog)
    target = info["items"] * info["overlap"]
    rows = [[p["rater"], p["done"], p["skipped"], p["open"], round(p["seconds"] / 60, 2)] for p in prog]
    mean_rows = [[m["model"], m["n"], m["mean"]] for m in storage.model_means(int(study_id))]
    text = (f"**{safe_markdown(info['name'])}**: {done} of {target} item ratings done ({info['items']} items × "
            f"overlap {info['overlap']}), {len(prog)} rater(s).")
    return text, rows, mean_rows, chat_rows


def import_study(storage, path: str | None, name: str | None, overlap, user: str, allow_duplicate: bool = False,
                 progress=None, show_findings: bool = False) -> tuple[str, int | None]:
    """Import a study file; (status Markdown, new study id or None). ``progress(done, total)`` per batch;
    ``show_findings``: raters see the answer check's findings (off by default: it could bias their scores)."""
    if not path:
        return error_box("Choose a study file first."), None
    try:
        parsed = parse_study_file(path)
    except StudyFileError as exc:
        lines = "\n".join(f"- {safe_markdown(p)}" for p in exc.problems[:20])
        more = f"\n- … and {len(exc.problems) - 20} more" if len(exc.problems) > 20 else ""
        return f"**Nothing was imported**; fix the file and try again:\n\n{lines}{more}", None
    except UserError as exc:
        return error_box(f"Nothing was imported: {exc}"), None
    label = (name or "").strip() or Path(path).stem
    try:
        from ..text_input import finite_number

        ov = finite_number(overlap if overlap not in (None, "") else 0, "Overlap (raters per item)", lo=1,
                           hi=1000, integer=True)
        sid = storage.create_study(label, parsed, ov, user, allow_duplicate=bool(allow_duplicate), progress=progress,
                                   show_findings=bool(show_findings))
    except UserError as exc:
        return error_box(f"Nothing was imported: {exc}"), None
    except Exception as exc:  # noqa: BLE001
        return user_message(exc, "study import"), None
    shown = " Raters see the answer check's findings." if show_findings else ""
    return (f"Imported study **{safe_markdown(label)}**: {len(parsed.items)} items, models "
            f"{safe_markdown(', '.join(parsed.models))}, overlap {ov}.{shown}"), sid


def export_file(storage, what: str, fmt: str) -> tuple[str | None, str]:
    """Export into a fresh private (0700) folder; (file path or None, status). Old export folders are swept."""
    private_files.sweep(EXPORT_MAX_AGE_S)
    out = private_files.new_folder("export-") / f"{what}.{fmt}"
    try:
        n = export(storage, what, fmt, out, progress=False)
    except UserError as exc:
        private_files.release(out)
        return None, error_box(f"Export failed: {exc}")
    except Exception as exc:  # noqa: BLE001
        private_files.release(out)
        return None, user_message(exc, "export")
    return str(out), f"Exported {n} rows to `{out.name}`."


def note_memory(ctx) -> str:
    """The engines' kept notes (read ahead of the question or asked about), for the admin: one line each."""
    text = prefill.usage_line(ctx.all_engines())
    return f"### Notes kept for quick answers\n{text}" if text else ""
