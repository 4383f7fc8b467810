"""Intervals for a proportion and the exact McNemar test against textbook values, closed forms and SciPy."""

from __future__ import annotations

import math

import pytest

from etdeploy.assurance.stats import (
    binomial_cdf,
    clopper_pearson_interval,
    mcnemar_exact,
    wilson_interval,
)
from etdeploy.errors import ConfigError


def test_wilson_textbook_8_of_10():
    # Newcombe (1998), Table I / Brown, Cai & DasGupta (2001): 8/10 -> 0.490 to 0.943
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=5e-5)
    assert high == pytest.approx(0.9433, abs=5e-5)


def test_clopper_pearson_textbook_8_of_10():
    low, high = clopper_pearson_interval(8, 10)
    assert low == pytest.approx(0.4439, abs=5e-5)
    assert high == pytest.approx(0.9748, abs=5e-5)


@pytest.mark.parametrize("n", [1, 10, 60, 600])
def test_clopper_pearson_closed_forms_at_0_and_n(n):
    # k = 0: [0, 1 - (alpha/2)^(1/n)]; k = n: [(alpha/2)^(1/n), 1]
    edge = 0.025 ** (1.0 / n)
    assert clopper_pearson_interval(0, n) == (0.0, pytest.approx(1.0 - edge, abs=1e-10))
    assert clopper_pearson_interval(n, n) == (pytest.approx(edge, abs=1e-10), 1.0)


@pytest.mark.parametrize("n", [1, 12, 60])
def test_wilson_edges_are_inside_unit_interval(n):
    z2 = 1.959963984540054 ** 2
    low, high = wilson_interval(0, n)
    assert low == 0.0 and high == pytest.approx(z2 / (n + z2), rel=1e-12)  # closed form at k = 0
    low, high = wilson_interval(n, n)
    assert high == 1.0 and low == pytest.approx(n / (n + z2), rel=1e-12)


def test_intervals_of_empty_sample_are_nan_and_bad_counts_refused():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert all(math.isnan(v) for v in clopper_pearson_interval(0, 0))
    with pytest.raises(ConfigError):
        wilson_interval(11, 10)
    with pytest.raises(ConfigError):
        clopper_pearson_interval(-1, 10)
    with pytest.raises(ConfigError):
        wilson_interval(1, 10, confidence=1.0)
    with pytest.raises(ConfigError):
        mcnemar_exact(-1, 2)


def test_confidence_level_widens_intervals():
    for f in (wilson_interval, clopper_pearson_interval):
        l95, h95 = f(40, 60)
        l99, h99 = f(40, 60, confidence=0.99)
        assert l99 < l95 < 40 / 60 < h95 < h99


def test_mcnemar_textbook_values():
    # b=1, c=9: 2 * (1 + 10) / 1024 = 0.021484375
    t = mcnemar_exact(1, 9)
    assert t.p_value == pytest.approx(0.0215, abs=5e-5) and t.p_value == 22 / 1024
    assert t.mid_p == pytest.approx(22 / 1024 - 10 / 1024)
    assert mcnemar_exact(9, 1).p_value == t.p_value  # symmetric
    # b=0, c=5: 2 / 32
    assert mcnemar_exact(0, 5).p_value == 2 / 32


def test_mcnemar_no_discordant_pairs_and_ties():
    assert mcnemar_exact(0, 0).p_value == 1.0 and mcnemar_exact(0, 0).mid_p == 1.0
    assert mcnemar_exact(3, 3).p_value == 1.0 and mcnemar_exact(3, 3).mid_p == 1.0
    assert mcnemar_exact(3, 4).p_value == 1.0  # 2 * P(X <= 3 | 7) = 2 * 0.5 -> capped at 1


def test_binomial_cdf_edges():
    assert binomial_cdf(-1, 5, 0.3) == 0.0
    assert binomial_cdf(5, 5, 0.3) == 1.0
    assert binomial_cdf(0, 5, 0.5) == pytest.approx(1 / 32, rel=1e-12)
    assert binomial_cdf(2, 4, 0.5) == pytest.approx(11 / 16, rel=1e-12)


def test_against_scipy():
    stats = pytest.importorskip("scipy.stats")  # present in the dev environment; closed forms above stand alone
    for k, n in [(0, 7), (1, 7), (30, 60), (55, 60), (60, 60), (123, 456), (999, 1000)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert clopper_pearson_interval(k, n) == (pytest.approx(ci.low, abs=1e-9), pytest.approx(ci.high, abs=1e-9))
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == (pytest.approx(ci.low, abs=1e-9), pytest.approx(ci.high, abs=1e-9))
        assert binomial_cdf(k, n, 0.37) == pytest.approx(stats.binom.cdf(k, n, 0.37), rel=1e-9, abs=1e-300)
    for b, c in [(0, 1), (2, 7), (10, 12), (25, 5), (40, 41)]:
        assert mcnemar_exact(b, c).p_value == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
