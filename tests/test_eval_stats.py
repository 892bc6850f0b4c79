"""Statistics against values computed independently: textbook examples and cases solvable by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eval import stats


def outcomes(results: list[tuple[str, str, float]]) -> pd.DataFrame:
    """One item per comparison, so resampling items resamples comparisons."""
    return pd.DataFrame([(f"i{k}", "r", a, b, r) for k, (a, b, r) in enumerate(results)],
                        columns=["item", "rater", "a", "b", "result"])


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, values 1-5.
NA = np.nan
KRIPPENDORFF_2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NA, NA, NA],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NA, 3],
    [NA, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NA],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NA],
])


def test_cohen_kappa_textbook_example():
    # Wikipedia's worked example: 50 proposals; both yes 20, A yes/B no 5, A no/B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    a = [1] * 20 + [1] * 5 + [2] * 10 + [2] * 15
    b = [1] * 20 + [2] * 5 + [1] * 10 + [2] * 15
    assert stats.weighted_kappa(a, b, weights=None, labels=[1, 2]) == pytest.approx(0.4)
    # With two categories every weighting scheme gives the same kappa.
    assert stats.weighted_kappa(a, b, weights="quadratic", labels=[1, 2]) == pytest.approx(0.4)


def test_weighted_kappa_by_hand_on_the_4_point_scale():
    a = [1, 2, 3, 4, 4, 3, 2, 2, 3, 4]
    b = [1, 3, 3, 4, 3, 3, 1, 2, 4, 4]
    k = 4
    observed = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        observed[x - 1, y - 1] += 1
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    i, j = np.indices((k, k))
    for name, w in {"quadratic": (i - j) ** 2, "linear": np.abs(i - j)}.items():
        by_hand = 1 - (w * observed).sum() / (w * expected).sum()
        assert stats.weighted_kappa(a, b, weights=name) == pytest.approx(by_hand)


def test_krippendorff_alpha_reference_example():
    data = KRIPPENDORFF_2011.copy()
    assert stats.krippendorff_alpha(data, "nominal", domain=[1, 2, 3, 4, 5]) == pytest.approx(0.743, abs=5e-4)
    assert stats.krippendorff_alpha(data, "interval", domain=[1, 2, 3, 4, 5]) == pytest.approx(0.849, abs=5e-4)
    assert stats.krippendorff_alpha(data, "ordinal", domain=[1, 2, 3, 4, 5]) == pytest.approx(0.815, abs=5e-4)
    perfect = np.array([[1, 2, 3, 4], [1, 2, 3, 4]])
    assert stats.krippendorff_alpha(perfect) == pytest.approx(1.0)
    assert np.isnan(stats.krippendorff_alpha(np.array([[3, 3], [3, 3]])))  # no variation: undefined


def test_bradley_terry_two_players_by_hand():
    # A beats B in 2 of 3: s_A / (s_A + s_B) = 2/3, so s_A / s_B = 2 (geometric mean 1: sqrt(2), 1/sqrt(2)).
    bt = stats.bradley_terry(outcomes([("A", "B", 1), ("A", "B", 1), ("A", "B", 0)]), ["A", "B"], prior=0)
    assert bt["A"] / bt["B"] == pytest.approx(2.0, rel=1e-5)
    assert bt["A"] * bt["B"] == pytest.approx(1.0)
    # Two ties and one win: 2 of 4 half-points plus one = 2/3 again.
    bt = stats.bradley_terry(outcomes([("A", "B", 0.5), ("A", "B", 0.5), ("A", "B", 1)]), ["A", "B"], prior=0)
    assert bt["A"] / bt["B"] == pytest.approx(2.0, rel=1e-5)


def test_bradley_terry_three_players_saturated_by_hand():
    # Strengths 4:2:1 give P(A>B)=2/3, P(B>C)=2/3, P(A>C)=4/5; with counts in exactly those proportions the
    # likelihood equations are solved by those strengths.
    res = [("A", "B", 1)] * 2 + [("A", "B", 0)] + [("B", "C", 1)] * 2 + [("B", "C", 0)]
    res += [("A", "C", 1)] * 4 + [("A", "C", 0)]
    bt = stats.bradley_terry(outcomes(res), ["A", "B", "C"], prior=0)
    assert bt["A"] / bt["C"] == pytest.approx(4.0, rel=1e-4)
    assert bt["B"] / bt["C"] == pytest.approx(2.0, rel=1e-4)
    # The weak default prior only shrinks the estimate a little and keeps perfect records finite.
    shrunk = stats.bradley_terry(outcomes(res), ["A", "B", "C"])
    assert 3.5 < shrunk["A"] / shrunk["C"] < 4.0
    unbeaten = stats.bradley_terry(outcomes([("A", "B", 1)] * 3), ["A", "B"])
    assert np.isfinite(unbeaten["A"]) and unbeaten["A"] > unbeaten["B"]


def test_pairwise_outcomes_and_win_rates_by_hand():
    scores = pd.DataFrame([
        ("q1", "r1", "A", 4), ("q1", "r1", "B", 2),
        ("q2", "r1", "A", 3), ("q2", "r1", "B", 3),
        ("q3", "r1", "A", 1), ("q3", "r1", "B", 2),
        ("q3", "r2", "A", 4), ("q3", "r2", "B", None),  # B unrated by r2: no comparison
    ], columns=["item", "rater", "model", "score"])
    out = stats.pairwise_outcomes(scores)
    assert list(out["result"]) == [1.0, 0.5, 0.0]
    rates = stats.win_rates(out, ["A", "B"])
    assert rates.loc["A", "B"] == pytest.approx(0.5) and rates.loc["B", "A"] == pytest.approx(0.5)
    assert np.isnan(rates.loc["A", "A"])
    boot = stats.bootstrap_pairwise(out, ["A", "B"], n_resamples=200)
    assert boot["overall"].loc["A", "win_rate"] == pytest.approx(0.5)
    assert 0 <= boot["overall"].loc["A", "ci_low"] <= 0.5 <= boot["overall"].loc["A", "ci_high"] <= 1
    assert boot["strength"].loc["A", "strength"] == pytest.approx(1.0, abs=1e-4)


def test_bootstrap_mean_ci_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    x = rng.integers(1, 5, size=400)
    mean, lo, hi = stats.mean_ci(x, n_resamples=2000)
    assert mean == pytest.approx(x.mean())
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert lo == pytest.approx(mean - half, abs=0.02) and hi == pytest.approx(mean + half, abs=0.02)
    assert stats.mean_ci([3, 3, 3]) == (3.0, 3.0, 3.0)
    m, lo1, hi1 = stats.mean_ci([2])
    assert m == 2 and np.isnan(lo1) and np.isnan(hi1)


def test_model_means_resample_items_not_ratings():
    scores = pd.DataFrame([
        ("q1", "A", "r1", 4), ("q1", "A", "r2", 2),  # item mean 3
        ("q2", "A", "r1", 1), ("q2", "A", "r2", 1),  # item mean 1
    ], columns=["item", "model", "rater", "score"])
    table = stats.model_means(scores, n_resamples=200)
    row = table.iloc[0]
    assert row["model"] == "A" and row["n_items"] == 2 and row["mean"] == pytest.approx(2.0)
    assert 1.0 <= row["ci_low"] <= row["ci_high"] <= 3.0


def test_agreement_tables():
    experts = pd.DataFrame([(f"q{i}", "A", r, s) for i, (s1, s2) in enumerate([(1, 1), (2, 2), (3, 4), (4, 4)])
                            for r, s in (("e1", s1), ("e2", s2))], columns=["item", "model", "rater", "score"])
    pairs = stats.rater_pairs_kappa(experts)
    assert list(pairs[["rater_a", "rater_b", "n"]].iloc[0]) == ["e1", "e2", 4]
    assert pairs["kappa"].iloc[0] == pytest.approx(stats.weighted_kappa([1, 2, 3, 4], [1, 2, 4, 4]))
    judge = pd.DataFrame([(f"q{i}", "A", "gpt", s) for i, s in enumerate([1, 2, 4, 4])],
                         columns=["item", "model", "rater", "score"])
    agree = stats.judge_vs_experts(judge, experts)
    # Consensus = median rounded half up: 1, 2, 4 (3.5 -> 4), 4; the judge matches it exactly.
    assert agree["n"] == 4 and agree["exact"] == 1.0 and agree["kappa"] == pytest.approx(1.0)
    assert agree["alpha_experts"] == pytest.approx(stats.krippendorff_alpha(
        np.array([[1, 2, 3, 4], [1, 2, 4, 4]], dtype=float)))


def test_agreement_intervals_and_shared_items():
    data = KRIPPENDORFF_2011.copy()
    assert stats.shared_units(data) == 11  # the last unit has one rating only
    five = [1, 2, 3, 4, 5]
    alpha = stats.krippendorff_alpha(data, domain=five)
    lo, hi = stats.krippendorff_alpha_ci(data, n_resamples=300, domain=five)
    assert -1 <= lo < alpha < hi <= 1
    a, b = [1, 2, 3, 4, 1, 1, 2, 3, 4, 4], [1, 2, 3, 4, 2, 1, 2, 3, 3, 4]
    lo, hi = stats.weighted_kappa_ci(a, b, n_resamples=300)
    assert lo < stats.weighted_kappa(a, b) < hi <= 1
    # one shared unit: a figure, but no interval
    assert all(np.isnan(stats.weighted_kappa_ci([3], [4])))
    assert all(np.isnan(stats.krippendorff_alpha_ci(np.array([[3.0, np.nan], [4.0, 2.0]]))))


def test_agreement_on_one_shared_item_says_it_means_little():
    from asclepius_ui.ui.analysis_logic import agreement_warning
    from eval.report import Report, agreement_table

    one = pd.DataFrame([("q1", "A", "e1", 1), ("q1", "A", "e2", 4), ("q2", "A", "e1", 3)],
                       columns=["item", "model", "rater", "score"])
    matrix, _ = stats.reliability_matrix(one)
    report = Report([], rater_pairs=stats.rater_pairs_kappa(one, n_resamples=100),
                    experts_alpha=stats.krippendorff_alpha(matrix),
                    experts_alpha_ci=stats.krippendorff_alpha_ci(matrix, n_resamples=100),
                    experts_alpha_n=stats.shared_units(matrix))
    table = agreement_table(report)
    assert list(table.columns) == ["raters", "statistic", "value", "95% CI", "shared items", "note"]
    assert list(table["shared items"]) == [1, 1] and list(table["95% CI"]) == ["–", "–"]
    assert all(table["note"] == "only 1 shared item(s): too few to mean much (fewer than 20)")
    warning = agreement_warning(table)
    assert "as few as 1 shared item(s)" in warning and "fewer than 20" in warning

    many = pd.DataFrame([(f"q{i}", "A", r, s) for i in range(25)
                         for r, s in (("e1", 1 + i % 4), ("e2", 1 + (i + i // 10) % 4))],
                        columns=["item", "model", "rater", "score"])
    matrix, _ = stats.reliability_matrix(many)
    report = Report([], rater_pairs=stats.rater_pairs_kappa(many, n_resamples=100),
                    experts_alpha=stats.krippendorff_alpha(matrix),
                    experts_alpha_ci=stats.krippendorff_alpha_ci(matrix, n_resamples=100),
                    experts_alpha_n=stats.shared_units(matrix))
    table = agreement_table(report)
    assert list(table["shared items"]) == [25, 25] and all(table["note"] == "") and agreement_warning(table) == ""
    assert all(" – " in ci for ci in table["95% CI"])
