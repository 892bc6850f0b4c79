"""Results a researcher can publish, from judged files and/or the app's ratings database.

``python -m eval.report --judged judged.jsonl --db sqlite:///ratings.db --out report/`` writes ``report.md`` and
PNG figures: per-model and per-task means with bootstrap 95% intervals, score distributions, win rates and
Bradley-Terry strengths with intervals, agreement between raters and between the judge and the experts.
``--generations answers.jsonl`` adds the faithfulness section: per model and task, the share of answers with a
finding of the claim check (a number, drug or side not in the note, a negation that disagrees), by kind.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from asclepius_ui.demo import model_name
from asclepius_ui.items import item_id
from asclepius_ui.rubric import RUBRIC_VERSION, SCORES
from asclepius_ui.tasks import normalize_task

from . import stats
from .judge import consistency
from .rows import SCORE_PREFIX, InputError, read_rows, row_id

COLUMNS = ["item", "task", "model", "rater", "score"]
SOURCE_TITLES = {"judge": "LLM judge", "experts": "Expert ratings (studies)", "app": "In-app ratings (chat/compare)",
                 "votes": "A/B votes (compare mode)"}


# ----- loading --------------------------------------------------------------------------------------------------
@dataclass
class Sources:
    """Scores by source (long tables with ``COLUMNS``), A/B votes as pairwise outcomes, and raw judged rows."""

    scores: dict[str, pd.DataFrame] = field(default_factory=dict)
    votes: pd.DataFrame | None = None
    judged_rows: list[dict] = field(default_factory=list)


def judged_scores(rows: list[dict]) -> pd.DataFrame:
    """Long scores from judged rows (forward pass only; the reverse pass feeds the consistency check)."""
    out = []
    for r in rows:
        if r.get("pass", "forward") != "forward":
            continue
        rater = f"judge:{r.get('judge_model', 'judge')}"
        for k, v in r.items():
            if k.startswith(SCORE_PREFIX):
                out.append((row_id(r), str(r.get("task", "") or ""), k[len(SCORE_PREFIX):], rater,
                            np.nan if v is None else float(v)))
    return pd.DataFrame(out, columns=COLUMNS)


def load_judged(paths: list[str | Path]) -> tuple[pd.DataFrame, list[dict]]:
    """Scores and rows of one or more judged files (a later file's row with the same id and pass wins)."""
    rows: dict[tuple, dict] = {}
    for p in paths:
        for r in read_rows(p, ()):
            if not any(k.startswith(SCORE_PREFIX) for k in r):
                raise InputError(f"{p}: not a judged file (no score_<model> columns).")
            rows[(row_id(r), r.get("pass", "forward"))] = r
    judged = list(rows.values())
    return judged_scores(judged), judged


def db_sources(storage, study: str | None = None) -> dict:
    """Expert study ratings, in-app ratings and A/B votes from a ``Storage`` (current ratings only)."""
    study_rows = [r for r in storage.study_ratings() if not r["superseded"] and (study is None or r["study"] == study)]
    experts = pd.DataFrame([(str(r["item"]), str(r["task"] or ""), r["model"], r["rater"], float(r["score"]))
                            for r in study_rows], columns=COLUMNS)
    # model_name: a database written before models were stored by name may hold their paths; plots show names
    app = pd.DataFrame([(item_id(r["note"], r["instruction"]), str(r["task"] or ""), model_name(r["model_id"]),
                         r["rater"], float(r["score"])) for r in storage.ratings()], columns=COLUMNS)
    votes = []
    for c in storage.comparisons():
        result = {"A": 1.0, "B": 0.0}.get(c["winner"], 0.5)  # tie and both-bad count as a draw
        a, b = model_name(c["model_a"]), model_name(c["model_b"])
        if a > b:
            a, b, result = b, a, 1 - result
        votes.append((f"c{c['id']}", c["rater"], a, b, result))
    return {"experts": experts, "app": app,
            "votes": pd.DataFrame(votes, columns=["item", "rater", "a", "b", "result"])}


def load_sources(judged: list[str | Path] = (), db_url: str | None = None, storage=None,
                 study: str | None = None) -> Sources:
    """Gather every source given; raises ``InputError`` when there is nothing to analyse."""
    src = Sources()
    if judged:
        src.scores["judge"], src.judged_rows = load_judged(list(judged))
    if storage is None and db_url:
        from asclepius_ui.storage import StorageError, open_storage

        try:
            storage = open_storage(db_url, create=False)
        except StorageError as exc:
            raise InputError(str(exc)) from None
    if storage is not None:
        got = db_sources(storage, study)
        for name in ("experts", "app"):
            if len(got[name]):
                src.scores[name] = got[name]
        if len(got["votes"]):
            src.votes = got["votes"]
    if not any(len(s) for s in src.scores.values()) and src.votes is None:
        raise InputError("Nothing to analyse: no judged scores, study ratings, in-app ratings or A/B votes.")
    return src


# ----- analysis ---------------------------------------------------------------------------------------------------
@dataclass
class SourceResult:
    """Everything computed for one source of scores."""

    key: str
    title: str
    n_ratings: int
    n_items: int
    models: list[str]
    raters: list[str]
    means: pd.DataFrame | None = None
    task_means: pd.DataFrame | None = None
    distribution: pd.DataFrame | None = None
    win_matrix: pd.DataFrame | None = None
    win_overall: pd.DataFrame | None = None
    strength: pd.DataFrame | None = None
    missing: int = 0


@dataclass
class Report:
    results: list[SourceResult]
    rater_pairs: pd.DataFrame | None = None
    experts_alpha: float | None = None
    experts_alpha_ci: tuple[float, float] | None = None
    experts_alpha_n: int = 0  # units at least two experts scored
    judge_vs_experts: dict | None = None
    judge_expert_pairs: pd.DataFrame | None = None
    consistency: dict | None = None
    judge_parse: tuple[str, ...] = ()  # the rules (eval.judge --parse) that turned the judge's replies into scores


def analyse_scores(key: str, scores: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> SourceResult:
    """Means with intervals, distributions, win rates and Bradley-Terry strengths for one source."""
    scores = scores.assign(task=scores["task"].map(normalize_task))  # one group per task however it is spelled
    valid = scores.dropna(subset=["score"])
    models = sorted(valid["model"].unique())
    res = SourceResult(key, SOURCE_TITLES.get(key, key), len(valid), valid["item"].nunique(), models,
                       sorted(valid["rater"].unique()), missing=int(scores["score"].isna().sum()))
    if not len(valid):
        return res
    res.means = stats.model_means(valid, n_resamples=n_boot, seed=seed)
    if valid["task"].astype(str).str.len().gt(0).any():
        res.task_means = stats.model_means(valid, by=["task"], n_resamples=n_boot, seed=seed)
    res.distribution = stats.distribution(valid)
    outcomes = stats.pairwise_outcomes(valid)
    if len(outcomes) and len(models) > 1:
        _pairwise(res, outcomes, models, n_boot, seed)
    return res


def _pairwise(res: SourceResult, outcomes: pd.DataFrame, models: list[str], n_boot: int, seed: int) -> None:
    boot = stats.bootstrap_pairwise(outcomes, models, n_resamples=max(100, n_boot // 2), seed=seed)
    res.win_matrix, res.win_overall, res.strength = boot["matrix"], boot["overall"], boot["strength"]


def analyse_votes(votes: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> SourceResult:
    models = sorted(set(votes["a"]) | set(votes["b"]))
    res = SourceResult("votes", SOURCE_TITLES["votes"], len(votes), len(votes), models,
                       sorted(votes["rater"].unique()))
    if len(models) > 1:
        _pairwise(res, votes, models, n_boot, seed)
    return res


def analyse(src: Sources, n_boot: int = 2000, seed: int = 0) -> Report:
    """The whole report's numbers."""
    order = [k for k in ("judge", "experts", "app") if k in src.scores]
    results = [analyse_scores(k, src.scores[k], n_boot, seed) for k in order]
    if src.votes is not None:
        results.append(analyse_votes(src.votes, n_boot, seed))
    report = Report(results, judge_parse=tuple(sorted({r.get("parse", "strict") for r in src.judged_rows})))
    experts = src.scores.get("experts")
    boot = max(100, n_boot // 2)
    if experts is not None and len(experts):
        matrix, raters = stats.reliability_matrix(experts)
        if len(raters) > 1:
            report.experts_alpha = stats.krippendorff_alpha(matrix)
            report.experts_alpha_ci = stats.krippendorff_alpha_ci(matrix, n_resamples=boot, seed=seed)
            report.experts_alpha_n = stats.shared_units(matrix)
            report.rater_pairs = stats.rater_pairs_kappa(experts, n_resamples=boot, seed=seed)
        judge = src.scores.get("judge")
        if judge is not None and len(judge.dropna(subset=["score"])):
            report.judge_vs_experts = stats.judge_vs_experts(judge, experts, n_resamples=boot, seed=seed)
            both = pd.concat([judge, experts], ignore_index=True)
            pairs = stats.rater_pairs_kappa(both, n_resamples=boot, seed=seed)
            is_judge = pairs["rater_a"].str.startswith("judge:") ^ pairs["rater_b"].str.startswith("judge:")
            pairs = pairs[is_judge].reset_index(drop=True)
            flip = pairs["rater_b"].str.startswith("judge:")  # judge first
            pairs.loc[flip, ["rater_a", "rater_b"]] = pairs.loc[flip, ["rater_b", "rater_a"]].to_numpy()
            report.judge_expert_pairs = pairs
    if any(r.get("pass") == "reverse" for r in src.judged_rows):
        report.consistency = consistency(src.judged_rows)
    return report


# ----- figures ----------------------------------------------------------------------------------------------------
def _subplots(width: float, height: float, ncols: int = 1):
    """A figure with ``ncols`` axes; the object API (no pyplot state), so it is safe in the app's threads."""
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _means_figure(results: list[SourceResult], path: Path) -> Path | None:
    panels = [r for r in results if r.means is not None and len(r.means)]
    if not panels:
        return None
    fig, axes = _subplots(4.5 * len(panels), 1.7 + 0.45 * max(len(r.models) for r in panels), len(panels))
    for ax, r in zip(axes, panels, strict=True):
        m = r.means
        y = np.arange(len(m))
        err = np.vstack([m["mean"] - m["ci_low"], m["ci_high"] - m["mean"]])
        ax.errorbar(m["mean"], y, xerr=np.nan_to_num(err), fmt="o", capsize=4, color="#1f5fa8")
        ax.set_yticks(y, m["model"])
        ax.set_xlim(min(SCORES) - 0.1, max(SCORES) + 0.1)
        ax.set_xlabel("mean score (95% CI)")
        ax.set_title(r.title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.invert_yaxis()
    return _save(fig, path)


def _task_figure(r: SourceResult, path: Path) -> Path | None:
    if r.task_means is None or not len(r.task_means):
        return None
    table = r.task_means.pivot(index="task", columns="model", values="mean")
    fig, (ax,) = _subplots(2.6 + 1.3 * table.shape[1], 1.6 + 0.45 * table.shape[0])
    im = ax.imshow(table.to_numpy(dtype=float), vmin=min(SCORES), vmax=max(SCORES), cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=30, ha="right")
    ax.set_yticks(range(table.shape[0]), table.index)
    for (i, j), v in np.ndenumerate(table.to_numpy(dtype=float)):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="mean score")
    ax.set_title(f"{r.title}: mean score by task", fontsize=10)
    return _save(fig, path)


def _distribution_figure(r: SourceResult, path: Path) -> Path | None:
    if r.distribution is None or not len(r.distribution):
        return None
    d = r.distribution
    fig, (ax,) = _subplots(7.5, 1.8 + 0.45 * len(d))
    left = np.zeros(len(d))
    colors = {1: "#c0392b", 2: "#e67e22", 3: "#f1c40f", 4: "#27ae60"}
    for s in d.columns:
        ax.barh(list(d.index), d[s], left=left, color=colors.get(s), label=f"{s} {SCORES[s]}")
        left += d[s].to_numpy()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of ratings")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"{r.title}: score distribution", fontsize=10)
    ax.invert_yaxis()
    return _save(fig, path)


def _win_figure(r: SourceResult, path: Path) -> Path | None:
    if r.win_matrix is None:
        return None
    w = r.win_matrix
    fig, axes = _subplots(4 + 2 * len(w), 1.8 + 0.55 * len(w), 2)
    im = axes[0].imshow(w.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdBu")
    axes[0].set_xticks(range(len(w)), w.columns, rotation=30, ha="right")
    axes[0].set_yticks(range(len(w)), w.index)
    for (i, j), v in np.ndenumerate(w.to_numpy(dtype=float)):
        if np.isfinite(v):
            axes[0].text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    axes[0].set_title("win rate of row vs column", fontsize=9)
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    s = r.strength
    y = np.arange(len(s))
    err = np.vstack([s["strength"] - s["ci_low"], s["ci_high"] - s["strength"]])
    axes[1].errorbar(s["strength"], y, xerr=np.nan_to_num(np.clip(err, 0, None)), fmt="o", capsize=4,
                     color="#6a3d9a")
    axes[1].set_xscale("log")
    axes[1].axvline(1.0, color="grey", lw=0.8, ls="--")
    axes[1].set_yticks(y, s.index)
    axes[1].invert_yaxis()
    axes[1].set_title("Bradley-Terry strength (95% CI)", fontsize=9)
    fig.suptitle(r.title, fontsize=10)
    return _save(fig, path)


def _agreement_figure(report: Report, path: Path) -> Path | None:
    pairs = pd.concat([p for p in (report.rater_pairs, report.judge_expert_pairs) if p is not None and len(p)],
                      ignore_index=True) if (report.rater_pairs is not None or report.judge_expert_pairs
                                             is not None) else None
    if pairs is None or not len(pairs):
        return None
    pairs = pairs.drop_duplicates(subset=["rater_a", "rater_b"])
    raters = sorted(set(pairs["rater_a"]) | set(pairs["rater_b"]))
    m = pd.DataFrame(np.nan, index=raters, columns=raters)
    for a, b, k in zip(pairs["rater_a"], pairs["rater_b"], pairs["kappa"], strict=True):
        m.loc[a, b] = m.loc[b, a] = k
    for x in raters:
        m.loc[x, x] = 1.0
    fig, (ax,) = _subplots(2.5 + 0.9 * len(raters), 1.8 + 0.7 * len(raters))
    im = ax.imshow(m.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="PiYG")
    ax.set_xticks(range(len(raters)), raters, rotation=30, ha="right")
    ax.set_yticks(range(len(raters)), raters)
    for (i, j), v in np.ndenumerate(m.to_numpy(dtype=float)):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="quadratic-weighted kappa")
    ax.set_title("agreement between raters", fontsize=10)
    return _save(fig, path)


def make_figures(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write the report's PNG figures; returns them by name in display order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs: dict[str, Path | None] = {"means": _means_figure(report.results, out / "means.png")}
    for r in report.results:
        figs[f"tasks_{r.key}"] = _task_figure(r, out / f"tasks_{r.key}.png")
        figs[f"distribution_{r.key}"] = _distribution_figure(r, out / f"distribution_{r.key}.png")
        figs[f"pairwise_{r.key}"] = _win_figure(r, out / f"pairwise_{r.key}.png")
    figs["agreement"] = _agreement_figure(report, out / "agreement.png")
    return {k: v for k, v in figs.items() if v is not None}


# ----- tables and Markdown ----------------------------------------------------------------------------------------
def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(lo, hi) -> str:
    return "–" if _fmt(lo) == "–" or _fmt(hi) == "–" else f"{_fmt(lo)} – {_fmt(hi)}"


def md_table(df: pd.DataFrame, digits: int = 2, index: bool = False) -> str:
    """A DataFrame as a GitHub Markdown table."""
    d = df.reset_index() if index else df
    head = "| " + " | ".join(str(c) for c in d.columns) + " |"
    sep = "|" + "|".join("---" for _ in d.columns) + "|"
    body = ["| " + " | ".join(_fmt(v, digits).replace("|", "\\|") for v in row) + " |"
            for row in d.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def means_table(r: SourceResult) -> pd.DataFrame:
    """Model, items, mean and its interval as display strings (also used by the app's Analysis tab)."""
    if r.means is None:
        return pd.DataFrame(columns=["model", "items", "mean", "95% CI"])
    m = r.means
    return pd.DataFrame({"model": m["model"], "items": m["n_items"], "mean": m["mean"].round(3),
                         "95% CI": [_ci(lo, hi) for lo, hi in zip(m["ci_low"], m["ci_high"], strict=True)]})


def pairwise_table(r: SourceResult) -> pd.DataFrame:
    """Per model: overall win rate and Bradley-Terry strength with intervals."""
    if r.strength is None:
        return pd.DataFrame(columns=["model", "win rate", "win rate 95% CI", "BT strength", "BT 95% CI"])
    w, s = r.win_overall, r.strength
    return pd.DataFrame({
        "model": list(s.index), "win rate": w["win_rate"].round(3).to_numpy(),
        "win rate 95% CI": [_ci(a, b) for a, b in zip(w["ci_low"], w["ci_high"], strict=True)],
        "BT strength": s["strength"].round(3).to_numpy(),
        "BT 95% CI": [_ci(a, b) for a, b in zip(s["ci_low"], s["ci_high"], strict=True)]})


def _few(n) -> str:
    """The warning for an agreement figure resting on fewer than ``stats.MIN_SHARED`` shared items."""
    if isinstance(n, (int, np.integer)) and n < stats.MIN_SHARED:
        return f"only {n} shared item(s): too few to mean much (fewer than {stats.MIN_SHARED})"
    return ""


def agreement_table(report: Report) -> pd.DataFrame:
    """One row per agreement statistic with its 95% interval where one exists, the number of shared items (answers
    both sides scored) and a warning under ``stats.MIN_SHARED`` of them (also used by the app's Analysis tab)."""
    nan2 = (float("nan"), float("nan"))
    rows = []
    if report.experts_alpha is not None:
        rows.append(("experts", "Krippendorff's alpha (ordinal)", report.experts_alpha,
                     report.experts_alpha_ci or nan2, report.experts_alpha_n))
    for p in (report.rater_pairs, report.judge_expert_pairs):
        if p is not None:
            rows += [(f"{a} vs {b}", "Cohen's kappa (quadratic)", k, (lo, hi), n)
                     for a, b, n, k, lo, hi in p.itertuples(index=False)]
    j = report.judge_vs_experts
    if j:
        rows += [("judge vs expert consensus", "Cohen's kappa (quadratic)", j["kappa"], j["kappa_ci"], j["n"]),
                 ("judge vs expert consensus", "exact agreement", j["exact"], nan2, j["n"]),
                 ("judge vs expert mean", "Spearman's rho", j["spearman"], nan2, j["n"]),
                 ("experts + judge", "Krippendorff's alpha (ordinal)", j["alpha_with_judge"],
                  j["alpha_with_judge_ci"], j["alpha_with_judge_n"])]

    def num(v):
        return round(v, 3) if isinstance(v, float) and np.isfinite(v) else v

    return pd.DataFrame([(a, b, num(c), _ci(*ci), int(n), _few(int(n)))
                         for a, b, c, ci, n in rows],
                        columns=["raters", "statistic", "value", "95% CI", "shared items", "note"])


def summary_tables(report: Report) -> dict[str, pd.DataFrame]:
    """The report's main tables across sources, each with a ``source`` column (for the app's Analysis tab)."""
    means = [means_table(r).assign(source=r.title) for r in report.results if r.means is not None]
    pairs = [pairwise_table(r).assign(source=r.title) for r in report.results if r.strength is not None]

    def cat(parts: list[pd.DataFrame], cols: list[str]) -> pd.DataFrame:
        if not parts:
            return pd.DataFrame(columns=["source", *cols])
        d = pd.concat(parts, ignore_index=True)
        return d[["source", *[c for c in d.columns if c != "source"]]]

    return {"means": cat(means, ["model", "items", "mean", "95% CI"]),
            "pairwise": cat(pairs, ["model", "win rate", "win rate 95% CI", "BT strength", "BT 95% CI"]),
            "agreement": agreement_table(report)}


FIGURE_TITLES = {"means": "Mean score with 95% CI", "agreement": "Agreement between raters (weighted kappa)"}


def figure_caption(name: str) -> str:
    """A human caption for a figure name such as ``pairwise_experts``."""
    if name in FIGURE_TITLES:
        return FIGURE_TITLES[name]
    kind, _, key = name.partition("_")
    what = {"tasks": "mean score by task", "distribution": "score distribution",
            "pairwise": "win rates and Bradley-Terry strengths"}.get(kind, kind)
    return f"{SOURCE_TITLES.get(key, key)}: {what}"


PARSE_NOTES = {
    "strict": "Judge replies read by the strict rule (`eval.judge --parse strict`): the first line holds exactly one "
              "score from 1 to 4 per answer, else the scores are missing (left out, not scored).",
    "reference": "Judge replies read by the reference's rule (`eval.judge --parse reference`, as the authors' "
                 "`eval/gpt4_evaluate.py`): the first N whitespace-separated values of the whole reply; a reply "
                 "without them scores every model 0, and those zeros are in the means, as in the paper's table.",
}


def parse_note(rules: tuple[str, ...]) -> str:
    """Which rule produced the judge's table; a warning when the judged files mix rules."""
    if len(rules) == 1:
        return PARSE_NOTES.get(rules[0], f"Judge replies read by the rule {rules[0]!r}.")
    return (f"The judged files were read by different rules ({', '.join(rules)}): their scores are not comparable; "
            "judge them all with one `--parse` rule.")


def markdown(report: Report, figures: dict[str, Path], title: str = "Evaluation report") -> str:
    """The report as Markdown, figures linked by file name."""
    out = [f"# {title}", "", f"Rubric: {RUBRIC_VERSION} ({', '.join(f'{k} {v}' for k, v in SCORES.items())}). "
           "Intervals are bootstrap 95% intervals over items (BCa for means, percentile for win rates and "
           "Bradley-Terry strengths). Win rates count ties as half a win; Bradley-Terry strengths are scaled to a "
           "geometric mean of 1.", ""]
    if "means" in figures:
        out += [f"![mean scores]({figures['means'].name})", ""]
    for r in report.results:
        out += [f"## {r.title}", "", f"{r.n_ratings} ratings of {r.n_items} items by {len(r.raters)} rater(s); "
                f"models: {', '.join(r.models)}." + (f" {r.missing} unparseable judge replies left out "
                                                     "(recorded as missing, not scored)." if r.missing else ""), ""]
        if r.key == "judge" and report.judge_parse:
            out += [parse_note(report.judge_parse), ""]
        if r.means is not None:
            out += ["### Mean score", "", md_table(means_table(r)), ""]
        if r.task_means is not None:
            t = r.task_means
            table = pd.DataFrame({"task": t["task"], "model": t["model"], "items": t["n_items"],
                                  "mean": t["mean"], "95% CI": [_ci(a, b) for a, b in
                                                                zip(t["ci_low"], t["ci_high"], strict=True)]})
            out += ["### Mean score by task", "", md_table(table), ""]
            if f"tasks_{r.key}" in figures:
                out += [f"![by task]({figures[f'tasks_{r.key}'].name})", ""]
        if r.distribution is not None:
            d = r.distribution.copy()
            d.columns = [f"{c} {SCORES[c]}" for c in d.columns]
            out += ["### Score distribution (share of ratings)", "", md_table(d, 3, index=True), ""]
            if f"distribution_{r.key}" in figures:
                out += [f"![distribution]({figures[f'distribution_{r.key}'].name})", ""]
        if r.strength is not None:
            out += ["### Comparisons", "", md_table(pairwise_table(r), 3), "",
                    "Win rate of the row model against the column model:", "",
                    md_table(r.win_matrix.rename_axis("model"), 3, index=True), ""]
            if f"pairwise_{r.key}" in figures:
                out += [f"![pairwise]({figures[f'pairwise_{r.key}'].name})", ""]
    agreement = agreement_table(report)
    if len(agreement):
        out += ["## Agreement", "", md_table(agreement, 3), ""]
        if "agreement" in figures:
            out += [f"![agreement]({figures['agreement'].name})", ""]
    if report.consistency:
        c = report.consistency
        table = pd.DataFrame([{"model": m, **v} for m, v in [*c["per_model"].items(), ("(all)", c["overall"])]])
        out += ["## Judge consistency (forward vs reversed agent order)", "", md_table(table, 3), "",
                "Mean score by agent position: " + ", ".join(f"{i}: {v:.2f}" for i, v in
                                                             c["mean_by_position"].items()), ""]
    return "\n".join(out)


# ----- faithfulness (the claim check over generations files) ----------------------------------------------------
def faithfulness_section(paths: list[str | Path], progress: bool = False) -> str:
    """The Markdown faithfulness section of one or more generations files (checked here, offline)."""
    from .check import FINDING_KINDS, check_rows, faithfulness

    rows = [r for p in paths for r in read_rows(p, ("note",))]
    _, records = check_rows(rows, progress=progress)
    table = faithfulness(records)
    overall = faithfulness(records, by_task=False)
    shares = ["any finding", *FINDING_KINDS, "unsupported"]

    def shown(t: pd.DataFrame) -> pd.DataFrame:
        t = t.copy()
        for c in shares:
            t[c] = [f"{v:.0%}" for v in t[c]]
        return t.rename(columns={"unsupported": "unsupported sentence"})

    return "\n".join(["## Faithfulness to the note (claim check)", "",
                      f"{len(records)} answers checked against their notes, offline. A finding is a number, drug or "
                      "side the note does not contain, a negation that disagrees with the note, or a claim more "
                      "certain than the note; an unsupported sentence is one whose words the note barely contains "
                      "(not counted as a finding). Shares of answers:", "",
                      md_table(shown(overall)), "", "By task:", "", md_table(shown(table)), ""])


def build_report(out_dir: str | Path, judged: list[str | Path] = (), db_url: str | None = None, storage=None,
                 study: str | None = None, n_boot: int = 2000, seed: int = 0,
                 generations: list[str | Path] = ()) -> tuple[Report | None, dict[str, Path], Path]:
    """Load, analyse, draw and write ``report.md`` into ``out_dir``; returns the report, figures and the path.
    ``generations`` adds the faithfulness section (alone, when no scores are given)."""
    out = Path(out_dir)
    path = out / "report.md"
    faith = faithfulness_section(list(generations)) if generations else ""
    if faith and not judged and not db_url and storage is None:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Evaluation report\n\n{faith}", encoding="utf-8")
        return None, {}, path
    src = load_sources(judged, db_url, storage, study)
    report = analyse(src, n_boot=n_boot, seed=seed)
    figures = make_figures(report, out)
    path.write_text(markdown(report, figures) + ("\n" + faith if faith else ""), encoding="utf-8")
    return report, figures, path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n")[0])
    p.add_argument("--judged", nargs="+", default=[], help="judged .jsonl files from eval.judge")
    p.add_argument("--db", help="the app's ratings database URL, e.g. sqlite:///ratings.db")
    p.add_argument("--generations", nargs="+", default=[], help="generations files (eval.generate output) for the "
                   "faithfulness section")
    p.add_argument("--study", help="only this study's ratings")
    p.add_argument("--out", required=True, help="folder for report.md and the PNG figures")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.judged and not args.db and not args.generations:
        print("error: give --judged FILE..., --db URL and/or --generations FILE...", file=sys.stderr)
        return 2
    try:
        _, figures, path = build_report(args.out, args.judged, args.db, study=args.study, n_boot=args.bootstrap,
                                        seed=args.seed, generations=args.generations)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path} with {len(figures)} figure(s).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
