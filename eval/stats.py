"""Statistics for model comparison and rater agreement: pure functions over numbers and tidy tables.

Scores come as a long table with columns ``item``, ``model``, ``rater`` and ``score`` (1-4). Intervals are
bootstrap percentiles (BCa for means) over items, so several raters of one item are resampled together.
"""

from __future__ import annotations

import itertools

import krippendorff
import numpy as np
import pandas as pd
from scipy import optimize, stats
from sklearn.metrics import cohen_kappa_score

from asclepius_ui.rubric import SCORES

SCALE = sorted(SCORES)


def mean_ci(values, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean with a bootstrap (BCa) confidence interval; NaN bounds for fewer than two values."""
    x = np.asarray([v for v in values if v is not None and not pd.isna(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    if np.all(x == x[0]):
        return mean, mean, mean
    res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="BCa",
                          rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    if not (np.isfinite(lo) and np.isfinite(hi)):  # BCa can fail on tiny samples: fall back to percentiles
        res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                              method="percentile", rng=np.random.default_rng(seed))
        lo, hi = res.confidence_interval
    return mean, float(lo), float(hi)


def item_means(scores: pd.DataFrame) -> pd.DataFrame:
    """One score per (item, model): the mean over raters (columns item, model, score, plus task if present)."""
    keys = ["item", "model"] + (["task"] if "task" in scores else [])
    return scores.dropna(subset=["score"]).groupby(keys, as_index=False, sort=False)["score"].mean()


def model_means(scores: pd.DataFrame, by: list[str] | None = None, n_resamples: int = 2000,
                seed: int = 0) -> pd.DataFrame:
    """Mean score per model (and per ``by`` columns, e.g. task) with a 95% bootstrap interval over items."""
    per_item = item_means(scores)
    groups = (by or []) + ["model"]
    rows = []
    for key, g in per_item.groupby(groups, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        mean, lo, hi = mean_ci(g["score"], n_resamples=n_resamples, seed=seed)
        rows.append({**dict(zip(groups, key, strict=True)), "n_items": len(g), "mean": mean, "ci_low": lo,
                     "ci_high": hi})
    return pd.DataFrame(rows, columns=[*groups, "n_items", "mean", "ci_low", "ci_high"])


def distribution(scores: pd.DataFrame) -> pd.DataFrame:
    """Share of each rubric score per model (rows: models; columns: 1..4; rows sum to 1), counting every rating."""
    s = scores.dropna(subset=["score"])
    table = pd.crosstab(s["model"], s["score"].astype(int)).reindex(columns=SCALE, fill_value=0)
    return table.div(table.sum(axis=1), axis=0)


def pairwise_outcomes(scores: pd.DataFrame) -> pd.DataFrame:
    """Head-to-head results: for each item, rater and pair of models both scored, ``result`` 1 (a higher),
    0 (b higher) or 0.5 (tie). Columns: item, rater, a, b, result."""
    s = scores.dropna(subset=["score"])
    rows = []
    for (item, rater), g in s.groupby(["item", "rater"], sort=False):
        by_model = dict(zip(g["model"], g["score"], strict=True))
        for a, b in itertools.combinations(sorted(by_model), 2):
            sa, sb = by_model[a], by_model[b]
            rows.append((item, rater, a, b, 1.0 if sa > sb else 0.0 if sa < sb else 0.5))
    return pd.DataFrame(rows, columns=["item", "rater", "a", "b", "result"])


def _item_wins(outcomes: pd.DataFrame, models: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per item: ``wins[k, i, j]`` (fractional) wins of model i over j and ``games[k, i, j]`` comparisons."""
    idx = {m: i for i, m in enumerate(models)}
    items = list(dict.fromkeys(outcomes["item"]))
    pos = {it: k for k, it in enumerate(items)}
    wins = np.zeros((len(items), len(models), len(models)))
    games = np.zeros_like(wins)
    for it, a, b, r in zip(outcomes["item"], outcomes["a"], outcomes["b"], outcomes["result"], strict=True):
        k, i, j = pos[it], idx[a], idx[b]
        wins[k, i, j] += r
        wins[k, j, i] += 1 - r
        games[k, i, j] += 1
        games[k, j, i] += 1
    return wins, games, np.array(items, dtype=object)


def _rates(wins: np.ndarray, games: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(games > 0, wins / games, np.nan), wins.sum(axis=1) / games.sum(axis=1)


def win_rates(outcomes: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Matrix of the row model's win rate against the column model (ties count half); NaN where never compared."""
    wins, games, _ = _item_wins(outcomes, models)
    return pd.DataFrame(_rates(wins.sum(0), games.sum(0))[0], index=models, columns=models)


def overall_win_rate(outcomes: pd.DataFrame, models: list[str]) -> pd.Series:
    """Each model's win rate over all its comparisons (ties count half)."""
    wins, games, _ = _item_wins(outcomes, models)
    return pd.Series(_rates(wins.sum(0), games.sum(0))[1], index=models)


def _bt_fit(wins: np.ndarray, games: np.ndarray, prior: float, start: np.ndarray | None = None) -> np.ndarray:
    """Log-strengths maximising the BT likelihood (Newton-CG with the exact Hessian), centred at 0."""
    n = len(wins)
    keep = slice(1, None) if prior == 0 else slice(None)  # without a prior, fix theta_0 = 0

    def full(free: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], free]) if prior == 0 else free

    def probs(theta: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))  # p[i, j] = P(i beats j)

    def nll(free: np.ndarray) -> tuple[float, np.ndarray]:
        theta = full(free)
        p = probs(theta)
        value = -np.sum(wins * np.log(np.clip(p, 1e-300, None))) + 0.5 * prior * np.sum(theta ** 2)
        grad = -(wins - games * p).sum(axis=1) + prior * theta
        return float(value), grad[keep]

    def hess(free: np.ndarray) -> np.ndarray:
        theta = full(free)
        p = probs(theta)
        w = games * p * (1 - p)
        h = np.diag(w.sum(axis=1)) - w + prior * np.eye(n)
        return h[keep, keep]

    x0 = np.zeros(n) if start is None else start - (start[0] if prior == 0 else 0.0)
    res = optimize.minimize(nll, x0[keep], jac=True, hess=hess, method="Newton-CG")
    theta = full(res.x)
    return theta - theta.mean()


def bradley_terry(outcomes: pd.DataFrame, models: list[str], prior: float = 0.01) -> pd.Series:
    """Bradley-Terry strengths (geometric mean 1) by maximum likelihood with ``scipy.optimize``.

    P(i beats j) = s_i / (s_i + s_j); a tie counts as half a win each way. ``prior`` is the precision of a
    Gaussian prior on the log-strengths; it keeps them finite when a model wins or loses every comparison.
    With ``prior=0`` this is the plain maximum-likelihood estimate.
    """
    if len(models) < 2:
        return pd.Series(np.ones(len(models)), index=models)
    wins, games, _ = _item_wins(outcomes, models)
    return pd.Series(np.exp(_bt_fit(wins.sum(0), games.sum(0), prior)), index=models)


def bootstrap_pairwise(outcomes: pd.DataFrame, models: list[str], n_resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0, prior: float = 0.01) -> dict[str, pd.DataFrame]:
    """Win rates and Bradley-Terry strengths with percentile intervals from resampling items with replacement.

    Returns ``matrix`` (pairwise win rates), ``overall`` (per model: win_rate, ci_low, ci_high) and
    ``strength`` (per model: strength, ci_low, ci_high).
    """
    wins, games, items = _item_wins(outcomes, models)
    w, g = wins.sum(0), games.sum(0)
    matrix, overall = _rates(w, g)
    theta = _bt_fit(w, g, prior) if len(models) > 1 else np.zeros(len(models))
    n = len(items)
    lo_o = hi_o = lo_s = hi_s = np.full(len(models), np.nan)
    if n >= 2 and len(models) > 1:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, np.full(n, 1 / n), size=n_resamples)
        draws_o, draws_s = [], []
        for c in counts:
            wb, gb = np.tensordot(c, wins, axes=1), np.tensordot(c, games, axes=1)
            draws_o.append(_rates(wb, gb)[1])
            draws_s.append(np.exp(_bt_fit(wb, gb, prior, start=theta)))
        q = ((1 - confidence) / 2, 1 - (1 - confidence) / 2)
        lo_o, hi_o = np.nanquantile(np.array(draws_o), q, axis=0)
        lo_s, hi_s = np.nanquantile(np.array(draws_s), q, axis=0)
    return {
        "matrix": pd.DataFrame(matrix, index=models, columns=models),
        "overall": pd.DataFrame({"win_rate": overall, "ci_low": lo_o, "ci_high": hi_o}, index=models),
        "strength": pd.DataFrame({"strength": np.exp(theta), "ci_low": lo_s, "ci_high": hi_s}, index=models),
    }


def weighted_kappa(a, b, weights: str | None = "quadratic", labels=SCALE) -> float:
    """Cohen's kappa of two raters on the same units (``weights``: 'quadratic', 'linear' or None), via sklearn."""
    a = np.asarray(a)
    b = np.asarray(b)
    if len(a) != len(b):
        raise ValueError("both raters must rate the same units")
    if len(a) == 0:
        return float("nan")
    return float(cohen_kappa_score(a, b, weights=weights, labels=list(labels)))


def krippendorff_alpha(reliability: np.ndarray, level: str = "ordinal", domain=SCALE) -> float:
    """Krippendorff's alpha (``krippendorff`` package) of a raters x units matrix with NaN for missing ratings."""
    data = np.asarray(reliability, dtype=float)
    if data.ndim != 2 or data.shape[0] < 2:
        return float("nan")
    pairable = (np.sum(~np.isnan(data), axis=0) >= 2).sum()
    values = np.unique(data[~np.isnan(data)])
    if pairable == 0 or len(values) < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=list(domain)))


MIN_SHARED = 20  # fewer items rated by both sides than this, and an agreement figure means little


def shared_units(reliability: np.ndarray) -> int:
    """How many units (columns) of a raters x units matrix at least two raters scored: what alpha rests on."""
    data = np.asarray(reliability, dtype=float)
    if data.ndim != 2 or data.shape[0] < 2:
        return 0
    return int((np.sum(~np.isnan(data), axis=0) >= 2).sum())


def _bootstrap(stat, n: int, n_resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile interval of ``stat(index array)`` over ``n_resamples`` resamples of ``n`` units with replacement
    (NaN, NaN when there are fewer than two units or no resample gives a defined value)."""
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = np.array([stat(rng.integers(0, n, n)) for _ in range(n_resamples)], dtype=float)
    if np.all(np.isnan(draws)):
        return float("nan"), float("nan")
    lo, hi = np.nanquantile(draws, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return float(lo), float(hi)


def krippendorff_alpha_ci(reliability: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                          level: str = "ordinal", domain=SCALE) -> tuple[float, float]:
    """Bootstrap percentile interval of Krippendorff's alpha, resampling the units at least two raters scored."""
    data = np.asarray(reliability, dtype=float)
    if data.ndim != 2 or data.shape[0] < 2:
        return float("nan"), float("nan")
    data = data[:, np.sum(~np.isnan(data), axis=0) >= 2]
    return _bootstrap(lambda idx: krippendorff_alpha(data[:, idx], level, domain), data.shape[1], n_resamples,
                      confidence, seed)


def weighted_kappa_ci(a, b, weights: str | None = "quadratic", labels=SCALE, n_resamples: int = 1000,
                      confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap percentile interval of Cohen's kappa, resampling the units both raters scored."""
    a, b = np.asarray(a), np.asarray(b)

    def kappa(idx: np.ndarray) -> float:
        x, y = a[idx], b[idx]
        if len(np.unique(np.concatenate([x, y]))) < 2:  # every score the same: kappa is undefined
            return float("nan")
        return weighted_kappa(x, y, weights, labels)

    return _bootstrap(kappa, len(a), n_resamples, confidence, seed)


def reliability_matrix(scores: pd.DataFrame, raters: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Raters x units (item, model) matrix of scores, NaN where a rater did not rate a unit."""
    s = scores.dropna(subset=["score"])
    if raters is not None:
        s = s[s["rater"].isin(raters)]
    wide = s.pivot_table(index="rater", columns=["item", "model"], values="score", aggfunc="mean")
    return wide.to_numpy(dtype=float), list(wide.index)


def rater_pairs_kappa(scores: pd.DataFrame, weights: str = "quadratic", n_resamples: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Weighted kappa for every pair of raters over the units both rated, with its bootstrap 95% interval
    (columns rater_a, rater_b, n, kappa, ci_low, ci_high)."""
    s = scores.dropna(subset=["score"])
    wide = s.pivot_table(index=["item", "model"], columns="rater", values="score", aggfunc="first")
    rows = []
    for a, b in itertools.combinations(list(wide.columns), 2):
        both = wide[[a, b]].dropna()
        x, y = both[a].astype(int), both[b].astype(int)
        kappa = weighted_kappa(x, y, weights) if len(both) else float("nan")
        lo, hi = weighted_kappa_ci(x, y, weights, n_resamples=n_resamples, seed=seed)
        rows.append({"rater_a": a, "rater_b": b, "n": len(both), "kappa": kappa, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["rater_a", "rater_b", "n", "kappa", "ci_low", "ci_high"])


def consensus(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (item, model): the median of the raters' scores, rounded half up (columns item, model, score, n)."""
    s = scores.dropna(subset=["score"])
    g = s.groupby(["item", "model"], as_index=False, sort=False)["score"]
    out = g.median()
    out["score"] = np.floor(out["score"].to_numpy(dtype=float) + 0.5).astype(int)
    out["n"] = g.size()["size"].to_numpy()
    return out


def judge_vs_experts(judge: pd.DataFrame, experts: pd.DataFrame, weights: str = "quadratic",
                     n_resamples: int = 1000, seed: int = 0) -> dict:
    """Agreement of the judge with the experts' consensus: weighted kappa (with its bootstrap 95% interval),
    Spearman's rho with the experts' mean, exact agreement rate, and Krippendorff's alpha with and without the judge
    as one more rater (the one with the judge also with its interval and its number of shared units)."""
    j = judge.dropna(subset=["score"]).groupby(["item", "model"], as_index=False)["score"].mean()
    cons = consensus(experts)
    mean = experts.dropna(subset=["score"]).groupby(["item", "model"], as_index=False)["score"].mean()
    both = j.merge(cons, on=["item", "model"], suffixes=("_judge", "_experts"))
    both = both.merge(mean.rename(columns={"score": "expert_mean"}), on=["item", "model"])
    out = {"n": len(both), "kappa": float("nan"), "kappa_ci": (float("nan"), float("nan")), "spearman": float("nan"),
           "exact": float("nan")}
    if len(both):
        js = np.floor(both["score_judge"].to_numpy(dtype=float) + 0.5).astype(int)
        out["kappa"] = weighted_kappa(js, both["score_experts"].astype(int), weights)
        out["kappa_ci"] = weighted_kappa_ci(js, both["score_experts"].astype(int).to_numpy(), weights,
                                            n_resamples=n_resamples, seed=seed)
        out["exact"] = float(np.mean(js == both["score_experts"].to_numpy()))
        if len(both) > 1 and both["score_judge"].nunique() > 1 and both["expert_mean"].nunique() > 1:
            out["spearman"] = float(stats.spearmanr(both["score_judge"], both["expert_mean"]).statistic)
    exp_matrix, _ = reliability_matrix(experts)
    out["alpha_experts"] = krippendorff_alpha(exp_matrix)
    joint = pd.concat([experts, judge.assign(rater="__judge__")], ignore_index=True)
    joint_matrix, _ = reliability_matrix(joint)
    out["alpha_with_judge"] = krippendorff_alpha(joint_matrix)
    out["alpha_with_judge_ci"] = krippendorff_alpha_ci(joint_matrix, n_resamples=n_resamples, seed=seed)
    out["alpha_with_judge_n"] = shared_units(joint_matrix)
    return out
