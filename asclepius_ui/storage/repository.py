"""The repository: ``Storage``, every query the app makes, and ``open_storage``.

``open_storage(url)`` accepts any SQLAlchemy URL (SQLite by default, PostgreSQL included), brings the schema to the
latest Alembic revision and returns a thread-safe ``Storage`` (one engine, one short session per call).
Ratings are append-only: a changed rating is a new row whose ``supersedes_id`` names the old one. Every write
carries a client-generated ``uid`` (UNIQUE), so a retried submit never stores twice.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from .. import studies as study_logic
from ..conversation import now_iso
from ..errors import InputError, StorageError, UserError
from ..rating_logic import check_rating, check_winner, dpo_pair, winner_model
from ..rubric import RUBRIC_VERSION
from ..text_input import valid_chars as _t
from .engine import create_db_engine, make_private, normalize_url
from .lock import FifoLock
from .migrate import upgrade
from .models import (
    AppSecret,
    Base,
    Comparison,
    Rating,
    Study,
    StudyAnswer,
    StudyAssignment,
    StudyItem,
    StudyRating,
)
from .models import row_dict as _row

IMPORT_BATCH = 25  # study items per import transaction: the write lock is held for a few tens of milliseconds
IMPORT_DUTY = 0.3  # an import works at most this share of the time; rating saves in this process get the rest
PICK_WINDOW = 64  # the next item is drawn from this many least-covered candidates
AVAILABLE_CAP = 10_000  # "items still available" is counted up to this many (a bounded query)


class DuplicateStudyError(InputError):
    """A study with identical content exists; import again with confirmation to make a second copy."""

    def __init__(self, existing: str):
        self.existing = existing
        super().__init__(f"This file has the same content as the study {existing!r}. Tick “Import even if "
                         "identical” to import a second copy.")


class StaleAssignmentError(InputError):
    """The item is no longer in a state that allows this (skipped or submitted elsewhere); the text says what
    happened."""


def open_storage(url: str, create: bool = True) -> Storage:
    """Connect to ``url``, upgrade its schema to the latest revision, return the ``Storage``.

    With ``create=False`` a missing SQLite file is an error instead of a new empty database.
    """
    u = normalize_url(url)
    if not create and u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") \
            and not Path(u.database).expanduser().exists():
        raise StorageError(f"No database at {u.database}.")
    engine = create_db_engine(url)
    try:
        upgrade(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StorageError(f"Could not open the ratings database {u.render_as_string(hide_password=True)}: "
                           f"{getattr(exc, 'orig', None) or exc}") from exc
    make_private(url)
    return Storage(engine)


def _db_error(exc: SQLAlchemyError) -> StorageError:
    return StorageError(f"The database could not save this ({type(exc).__name__}: "
                        f"{getattr(exc, 'orig', None) or exc}). Nothing was lost: try again.")


class Storage:
    """Reads and writes; every method opens its own short session, so one instance serves all threads."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._writer = engine.execution_options(writer=True)
        # SQLite allows one writer at a time; queueing this process's writers here, first come first served, gives
        # a lower tail latency than SQLite's sleeping busy handler (which still arbitrates between processes).
        self._write_lock = FifoLock() if engine.dialect.name == "sqlite" else nullcontext()
        self._secrets: dict[str, str] = {}

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def database_files(self) -> list[Path]:
        """The SQLite file behind this storage (none for a server database or in memory): never to be overwritten."""
        db = self.engine.url.database if self.dialect == "sqlite" else None
        return [Path(db)] if db and db != ":memory:" else []

    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def schema_differences(self) -> list:
        """Differences between the database and the models (empty when the migrations are complete)."""
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        try:
            with self._write_lock, Session(self._writer, expire_on_commit=False) as s, s.begin():
                yield s
        except (IntegrityError, UserError):
            raise
        except SQLAlchemyError as exc:
            raise _db_error(exc) from exc

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                yield s
        except SQLAlchemyError as exc:
            raise StorageError(f"The database could not be read ({getattr(exc, 'orig', None) or exc}).") from exc

    def _idempotent(self, model, uid: str, build) -> int:
        """Insert ``build()`` unless a row with ``uid`` exists; the id of the stored row either way."""
        if not uid:
            raise InputError("Every write needs an idempotency uid.")
        try:
            with self._write() as s:
                found = s.scalar(select(model.id).where(model.uid == uid))
                if found is not None:
                    return found
                obj = build(s)
                s.flush()
                new_id = obj.id
        except IntegrityError as exc:  # the same uid committed by a concurrent retry
            with self._read() as s:
                found = s.scalar(select(model.id).where(model.uid == uid))
            if found is not None:
                return found
            raise _db_error(exc) from exc
        return new_id  # only now is the row committed

    # ----- chat ratings -----------------------------------------------------------------------------------------
    def save_rating(self, *, snapshot: dict, score: int, rater: str, uid: str, tags: list[str] | tuple = (),
                    comment: str = "", supersedes_id: int | None = None, source: str = "chat",
                    comparison_id: int | None = None, side: str | None = None) -> int:
        """Store one rating with its snapshot; returns its id once committed. Same ``uid`` again: same id."""
        value = check_rating(score, list(tags))

        def build(s: Session) -> Rating:
            r = _rating(snapshot, value, rater, uid, tags, comment, supersedes_id, source, comparison_id, side)
            s.add(r)
            return r

        return self._idempotent(Rating, uid, build)

    def ratings(self, include_superseded: bool = False) -> list[dict]:
        """Ratings in id order; by default only the current ones (not superseded by a later row)."""
        with self._read() as s:
            rows = [_row(r) for r in s.scalars(select(Rating).order_by(Rating.id))]
        replaced = {r["supersedes_id"] for r in rows if r["supersedes_id"] is not None}
        for r in rows:
            r["superseded"] = r["id"] in replaced
        return rows if include_superseded else [r for r in rows if not r["superseded"]]

    def rating(self, rating_id: int) -> dict | None:
        with self._read() as s:
            r = s.get(Rating, rating_id)
            return _row(r) if r else None

    # ----- compare mode -----------------------------------------------------------------------------------------
    def save_comparison(self, *, uid: str, rater: str, model_a: str, model_b: str, winner: str, note: str,
                        task: str, instruction: str, prompt: str, answer_a: str, answer_b: str,
                        revision_a: str | None = None, revision_b: str | None = None, swapped: bool = False,
                        settings: dict | None = None, seconds_a: float | None = None,
                        seconds_b: float | None = None, shown_at: str | None = None,
                        side_ratings: dict[str, tuple[int, str]] | None = None,
                        snapshots: dict[str, dict] | None = None) -> int:
        """Store a vote, and in the same transaction the optional 1-4 ratings of each side (``{"A": (score,
        comment)}``, with ``snapshots[side]`` describing that answer)."""
        check_winner(winner)
        checked = {side: (check_rating(sc), cm) for side, (sc, cm) in (side_ratings or {}).items() if sc}

        def build(s: Session) -> Comparison:
            c = Comparison(uid=uid, rater=rater, model_a=model_a, model_b=model_b, revision_a=revision_a,
                           revision_b=revision_b, swapped=bool(swapped), winner=winner, note=_t(note), task=task,
                           instruction=_t(instruction), prompt=_t(prompt), answer_a=_t(answer_a),
                           answer_b=_t(answer_b),
                           settings=settings, seconds_a=seconds_a, seconds_b=seconds_b, shown_at=shown_at,
                           created_at=now_iso(), rubric_version=RUBRIC_VERSION)
            s.add(c)
            s.flush()
            for side, (sc, cm) in checked.items():
                snap = (snapshots or {}).get(side) or {}
                s.add(_rating(snap, sc, rater, f"{uid}:{side}", (), cm, None, "compare", c.id, side))
            return c

        return self._idempotent(Comparison, uid, build)

    def comparisons(self) -> list[dict]:
        with self._read() as s:
            rows = [_row(c) for c in s.scalars(select(Comparison).order_by(Comparison.id))]
        for r in rows:
            r["winner_model"] = winner_model(r["winner"], r["model_a"], r["model_b"])
        return rows

    def dpo_pairs(self) -> list[dict]:
        """(prompt, chosen, rejected) from every comparison with a winner; ties and both-bad are left out."""
        return [p for p in map(dpo_pair, self.comparisons()) if p is not None]

    # ----- studies ----------------------------------------------------------------------------------------------
    def create_study(self, name: str, parsed: study_logic.ParsedStudy, overlap: int, created_by: str,
                     allow_duplicate: bool = False, progress: Callable[[int, int], None] | None = None,
                     show_findings: bool = False) -> int:
        """Import a parsed study, ``IMPORT_BATCH`` items per transaction so the write lock is held only briefly.

        The study stays hidden (``ready`` false) until its last item is in; if the import fails, what was written
        is removed again. ``show_findings``: raters see the answer check's findings with each answer (stored with
        their ratings). A study with identical content is refused unless ``allow_duplicate``
        (``DuplicateStudyError`` names it). ``progress(done, total)`` is called after each batch.
        """
        name = (name or "").strip()
        if not name:
            raise InputError("Give the study a name.")
        if int(overlap) < 1:
            raise InputError("Overlap (raters per item) must be at least 1.")
        digest = study_logic.content_sha256(parsed)
        with self._write() as s:
            if s.scalar(select(Study.id).where(Study.name == name)) is not None:
                raise InputError(f"A study named {name!r} already exists.")
            same = s.scalar(select(Study.name).where(Study.content_sha256 == digest, Study.ready.is_(True)))
            if same is not None and not allow_duplicate:
                raise DuplicateStudyError(same)
            study = Study(name=name, overlap=int(overlap), models=list(parsed.models), created_by=created_by,
                          created_at=now_iso(), rubric_version=RUBRIC_VERSION, content_sha256=digest,
                          n_items=len(parsed.items), ready=False, show_findings=bool(show_findings))
            s.add(study)
            s.flush()
            sid = study.id
        total = len(parsed.items)
        try:
            for start in range(0, total, IMPORT_BATCH):
                batch = parsed.items[start:start + IMPORT_BATCH]
                began = time.perf_counter()
                with self._write() as s:
                    items = [StudyItem(study_id=sid, position=start + k, ext_id=it.ext_id, note=it.note,
                                       question=it.question, task=it.task, coverage=0)
                             for k, it in enumerate(batch)]
                    s.add_all(items)
                    s.flush()
                    s.add_all(StudyAnswer(item_id=item.id, model=m, answer=a)
                              for item, it in zip(items, batch, strict=True) for m, a in it.answers.items())
                if progress:
                    progress(min(start + IMPORT_BATCH, total), total)
                # Pause as long as the batch took: the interpreter and the write lock are free for the raters'
                # saves half of the time, so a save waits at most about one batch, not the whole import.
                time.sleep(min(0.25, (time.perf_counter() - began) * (1 - IMPORT_DUTY) / IMPORT_DUTY))
            with self._write() as s:
                s.execute(update(Study).where(Study.id == sid).values(ready=True))
        except IntegrityError as exc:
            self._drop_study(sid)
            raise _db_error(exc) from exc
        except BaseException:
            self._drop_study(sid)
            raise
        return sid

    def _drop_study(self, study_id: int) -> None:
        """Remove a study that never became ready (a failed import), in batches."""
        try:
            while True:
                with self._write() as s:
                    ids = s.scalars(select(StudyItem.id).where(StudyItem.study_id == study_id)
                                    .limit(IMPORT_BATCH)).all()
                    if not ids:
                        s.execute(delete(Study).where(Study.id == study_id, Study.ready.is_(False)))
                        return
                    s.execute(delete(StudyAnswer).where(StudyAnswer.item_id.in_(ids)))
                    s.execute(delete(StudyItem).where(StudyItem.id.in_(ids)))
        except UserError:
            pass  # the study stays hidden (not ready); nothing a rater sees

    def studies(self) -> list[dict]:
        """Every imported (ready) study with its item count."""
        with self._read() as s:
            rows = [_row(st) for st in s.scalars(select(Study).where(Study.ready.is_(True)).order_by(Study.id))]
        for r in rows:
            r["items"] = r["n_items"]
        return rows

    def secret(self, name: str) -> str:
        """A random per-database secret, made on first use (the same for every app server on this database)."""
        if name in self._secrets:
            return self._secrets[name]
        self._secrets[name] = self._load_secret(name)
        return self._secrets[name]

    def _load_secret(self, name: str) -> str:
        with self._read() as s:
            found = s.scalar(select(AppSecret.value).where(AppSecret.name == name))
        if found is not None:
            return found
        try:
            with self._write() as s:
                if s.get(AppSecret, name) is None:
                    s.add(AppSecret(name=name, value=secrets.token_hex(32)))
        except IntegrityError:
            pass  # another server made it first
        with self._read() as s:
            return s.scalar(select(AppSecret.value).where(AppSecret.name == name))

    def next_assignment(self, study_id: int, rater: str) -> dict | None:
        """The rater's open item (resume), else a newly assigned one, else None when nothing is left for them.

        An item gets at most ``overlap`` raters (open or done); the least-covered items go first, each rater in
        their own random order within the next ``PICK_WINDOW`` items (so the cost does not grow with the study).
        Assignment is serialized per study so concurrent raters never overshoot.
        """
        with self._write() as s:
            study = s.scalar(select(Study).where(Study.id == study_id, Study.ready.is_(True)).with_for_update())
            if study is None:
                raise InputError(f"No study with id {study_id}.")
            open_id = s.scalar(select(StudyAssignment.id).where(
                StudyAssignment.study_id == study_id, StudyAssignment.rater == rater,
                StudyAssignment.status == "open").order_by(StudyAssignment.id).limit(1))
            if open_id is None:
                candidates = self._candidates(s, study, rater, PICK_WINDOW)
                item_id = study_logic.pick_item(study_id, rater, candidates)
                if item_id is None:
                    return None
                a = StudyAssignment(study_id=study_id, item_id=item_id, rater=rater, status="open",
                                    assigned_at=now_iso())
                s.add(a)
                s.execute(update(StudyItem).where(StudyItem.id == item_id).values(coverage=StudyItem.coverage + 1))
                s.flush()
                open_id = a.id
        return self.assignment(open_id, rater)

    @staticmethod
    def _open_items(study: Study, rater: str):
        mine = select(StudyAssignment.item_id).where(StudyAssignment.study_id == study.id,
                                                     StudyAssignment.rater == rater)
        return (select(StudyItem.id, StudyItem.coverage)
                .where(StudyItem.study_id == study.id, StudyItem.coverage < study.overlap, StudyItem.id.not_in(mine)))

    def _candidates(self, s: Session, study: Study, rater: str, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` items this rater may still get, least-covered first (then in file order)."""
        q = self._open_items(study, rater).order_by(StudyItem.coverage, StudyItem.position).limit(limit)
        return [(i, c) for i, c in s.execute(q).all()]

    def assignment(self, assignment_id: int, rater: str) -> dict | None:
        """An assignment as the rater sees it: the item and its answers labelled A, B, ... (no model names)."""
        with self._read() as s:
            a = s.get(StudyAssignment, assignment_id)
            if a is None or a.rater != rater:
                return None
            item = s.get(StudyItem, a.item_id)
            answers = {x.id: x.answer for x in s.scalars(select(StudyAnswer).where(StudyAnswer.item_id == item.id))}
            show_findings = bool(s.scalar(select(Study.show_findings).where(Study.id == a.study_id)))
        labelled = study_logic.label_answers(a.study_id, rater, item.id, list(answers))
        return {"assignment_id": a.id, "study_id": a.study_id, "item_id": item.id, "ext_id": item.ext_id,
                "status": a.status, "note": item.note, "question": item.question, "task": item.task,
                "show_findings": show_findings,
                "answers": [{"label": lab, "answer_id": aid, "text": answers[aid]} for lab, aid in labelled]}

    def submit_item(self, *, assignment_id: int, rater: str, uid: str, scores: dict[int, tuple[int, str]],
                    seconds: float | None, findings: dict[int, dict] | None = None) -> list[int]:
        """Rate every answer of an assignment (``{answer_id: (score, comment)}``) and close it; idempotent.
        ``findings``: the answer check the rater was shown, per answer (kept with each rating).

        Only an open assignment is submitted (a done one is re-rated: new rows supersede the old); the state is
        checked and changed in one conditional UPDATE inside the write transaction, so a skip racing this submit
        (another tab, another server) wins or loses whole, and a refused submit raises ``StaleAssignmentError``.
        """
        checked = {aid: (check_rating(sc), cm or "") for aid, (sc, cm) in scores.items()}
        view = self.assignment(assignment_id, rater)
        if view is None:
            raise InputError("This item is not assigned to you.")
        labels = {x["answer_id"]: x["label"] for x in view["answers"]}
        if set(checked) != set(labels):
            missing = sorted(labels[a] for a in set(labels) - set(checked))
            raise InputError(f"Rate every answer before submitting (missing: {', '.join(missing)}).")
        try:
            with self._write() as s:
                keys = [f"{uid}:{lab}" for lab in labels.values()]
                done = s.scalars(select(StudyRating.id).where(StudyRating.uid.in_(keys)).order_by(StudyRating.id)
                                 ).all()
                if done:
                    return list(done)
                closed = s.execute(update(StudyAssignment).where(
                    StudyAssignment.id == assignment_id, StudyAssignment.rater == rater,
                    StudyAssignment.status.in_(study_logic.SUBMITTABLE)).values(
                    status="done", finished_at=now_iso(),
                    seconds=func.coalesce(StudyAssignment.seconds, 0.0) + float(seconds or 0.0)))
                if closed.rowcount != 1:
                    status = s.scalar(select(StudyAssignment.status).where(StudyAssignment.id == assignment_id))
                    raise StaleAssignmentError(study_logic.refusal("submit", status))
                previous = {r.answer_id: r.id for r in s.scalars(
                    select(StudyRating).where(StudyRating.assignment_id == assignment_id).order_by(StudyRating.id))}
                rows = [StudyRating(uid=f"{uid}:{labels[aid]}", assignment_id=assignment_id, answer_id=aid,
                                    label=labels[aid], score=sc, comment=_t(cm), created_at=now_iso(),
                                    rubric_version=RUBRIC_VERSION, supersedes_id=previous.get(aid),
                                    findings=(findings or {}).get(aid))
                        for aid, (sc, cm) in sorted(checked.items(), key=lambda kv: labels[kv[0]])]
                s.add_all(rows)
                s.flush()
                ids = [r.id for r in rows]
        except IntegrityError as exc:
            raise _db_error(exc) from exc
        return ids

    def skip_item(self, assignment_id: int, rater: str, seconds: float | None = None) -> None:
        """The rater passes on this open item; it goes back to the pool for other raters. Skipping a skipped item
        again does nothing; skipping a submitted one raises ``StaleAssignmentError`` (checked as ``submit_item``
        does, in the same transaction as the coverage count)."""
        with self._write() as s:
            passed = s.execute(update(StudyAssignment).where(
                StudyAssignment.id == assignment_id, StudyAssignment.rater == rater,
                StudyAssignment.status == "open").values(
                status="skipped", finished_at=now_iso(),
                seconds=func.coalesce(StudyAssignment.seconds, 0.0) + float(seconds or 0.0)))
            if passed.rowcount == 1:
                item_id = s.scalar(select(StudyAssignment.item_id).where(StudyAssignment.id == assignment_id))
                s.execute(update(StudyItem).where(StudyItem.id == item_id).values(coverage=StudyItem.coverage - 1))
                return
            a = s.get(StudyAssignment, assignment_id)
            if a is None or a.rater != rater:
                raise InputError("This item is not assigned to you.")
            if a.status != "skipped":
                raise StaleAssignmentError(study_logic.refusal("skip", a.status))

    def rater_progress(self, study_id: int, rater: str) -> dict:
        """done / skipped / open for the rater, and how many more items they could still get."""
        with self._read() as s:
            study = s.get(Study, study_id)
            if study is None:
                raise InputError(f"No study with id {study_id}.")
            status = dict(s.execute(select(StudyAssignment.status, func.count()).where(
                StudyAssignment.study_id == study_id, StudyAssignment.rater == rater)
                .group_by(StudyAssignment.status)).all())
            capped = self._open_items(study, rater).limit(AVAILABLE_CAP).subquery()
            available = s.scalar(select(func.count()).select_from(capped))
        done, skipped, open_ = status.get("done", 0), status.get("skipped", 0), status.get("open", 0)
        return {"done": done, "skipped": skipped, "open": open_, "available": available,
                "total": done + open_ + available}

    def study_progress(self, study_id: int) -> list[dict]:
        """One row per rater: items done, skipped, open, and total seconds spent."""
        with self._read() as s:
            rows = s.execute(select(StudyAssignment.rater, StudyAssignment.status, func.count(),
                                    func.coalesce(func.sum(StudyAssignment.seconds), 0.0))
                             .where(StudyAssignment.study_id == study_id)
                             .group_by(StudyAssignment.rater, StudyAssignment.status)).all()
        out: dict[str, dict] = defaultdict(lambda: {"done": 0, "skipped": 0, "open": 0, "seconds": 0.0})
        for rater, status, n, secs in rows:
            out[rater][status] = n
            out[rater]["seconds"] += float(secs or 0.0)
        return [{"rater": r, **v} for r, v in sorted(out.items())]

    def model_means(self, study_id: int) -> list[dict]:
        """Per-model mean score over the current study ratings so far."""
        rows = [r for r in self.study_ratings(study_id) if not r["superseded"]]
        acc: dict[str, list[int]] = defaultdict(list)
        for r in rows:
            acc[r["model"]].append(r["score"])
        return [{"model": m, "n": len(v), "mean": round(sum(v) / len(v), 3)} for m, v in sorted(acc.items())]

    def study_ratings(self, study_id: int | None = None) -> list[dict]:
        """Study ratings joined with item, answer and assignment (model names revealed: for admins/export)."""
        q = (select(StudyRating, StudyAnswer, StudyItem, StudyAssignment, Study)
             .join(StudyAnswer, StudyRating.answer_id == StudyAnswer.id)
             .join(StudyAssignment, StudyRating.assignment_id == StudyAssignment.id)
             .join(StudyItem, StudyAssignment.item_id == StudyItem.id)
             .join(Study, StudyAssignment.study_id == Study.id)
             .order_by(StudyRating.id))
        if study_id is not None:
            q = q.where(Study.id == study_id)
        with self._read() as s:
            rows = s.execute(q).all()
        replaced = {r.supersedes_id for r, *_ in rows if r.supersedes_id is not None}
        return [{"id": r.id, "study": st.name, "study_id": st.id, "item_id": it.id, "item": it.ext_id,
                 "rater": asg.rater, "model": ans.model, "label": r.label, "task": it.task, "question": it.question,
                 "note": it.note, "answer": ans.answer, "score": r.score, "comment": r.comment,
                 "seconds_on_item": asg.seconds, "created_at": r.created_at, "rubric_version": r.rubric_version,
                 "supersedes_id": r.supersedes_id, "superseded": r.id in replaced, "findings": r.findings}
                for r, ans, it, asg, st in rows]


def _rating(snapshot: dict, score: int, rater: str, uid: str, tags, comment: str, supersedes_id: int | None,
            source: str, comparison_id: int | None, side: str | None) -> Rating:
    snap = snapshot or {}
    return Rating(uid=uid, source=source, rater=rater, model_id=_t(snap.get("model_id", "")),
                  model_revision=snap.get("model_revision"), precision=snap.get("precision"),
                  template=snap.get("template"), task=_t(snap.get("task")) if snap.get("task") else None,
                  note=_t(snap.get("note", "")), instruction=_t(snap.get("instruction", "")),
                  prompt=_t(snap.get("prompt", "")), answer=_t(snap.get("answer", "")), settings=snap.get("settings"),
                  started_at=snap.get("started_at"), finished_at=snap.get("finished_at"),
                  generation_seconds=snap.get("generation_seconds"), new_tokens=snap.get("new_tokens"), score=score,
                  tags=list(tags or []), comment=_t(comment), created_at=now_iso(), rubric_version=RUBRIC_VERSION,
                  supersedes_id=supersedes_id, comparison_id=comparison_id, side=side)
