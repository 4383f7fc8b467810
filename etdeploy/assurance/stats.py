"""Confidence intervals for a proportion and the exact McNemar test (docs/method.md §12.1).

Pure Python (``math``, ``statistics``): no SciPy. Every figure the V&V evidence quotes comes from here.

- :func:`wilson_interval`: Wilson score interval of ``k`` successes in ``n`` trials,

      centre = (p + z²/2n) / (1 + z²/n),   half = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²),

  with ``p = k/n`` and ``z`` the ``1 - alpha/2`` quantile of the standard normal
  (``alpha = 1 - confidence``). Good coverage even for ``k`` near 0 or ``n`` (unlike the Wald interval).
- :func:`clopper_pearson_interval`: the exact (conservative) interval: the lower bound ``p_L`` solves
  ``P(X >= k | n, p_L) = alpha/2`` and the upper bound ``p_U`` solves ``P(X <= k | n, p_U) = alpha/2``
  for ``X ~ Binomial(n, p)`` (equivalently the ``alpha/2`` and ``1 - alpha/2`` quantiles of
  ``Beta(k, n-k+1)`` and ``Beta(k+1, n-k)``); ``p_L = 0`` when ``k = 0``, ``p_U = 1`` when ``k = n``.
  Found by bisection on the binomial CDF (monotone decreasing in ``p``) to 1e-12.
- :func:`mcnemar_exact`: paired comparison of two classifiers on the same images. Of the discordant
  pairs, ``b`` images only the first classifier gets right and ``c`` only the second; under the null
  hypothesis (equal accuracy) ``b ~ Binomial(b + c, 1/2)``. Two-sided exact p-value

      p = min(1, 2 * sum_{i=0}^{min(b,c)} C(b+c, i) / 2^(b+c)),

  computed in exact integer arithmetic; ``p = 1`` when ``b = c = 0``. The mid-p variant subtracts
  the point probability once: ``p_mid = p - C(b+c, min(b,c)) / 2^(b+c)`` (capped to [0, 1]; 1 when
  ``b = c``), less conservative, recommended by Fagerland et al. (2013) for small samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

from etdeploy.errors import ConfigError
from etdeploy.records import Record

DEFAULT_CONFIDENCE = 0.95
_BISECTION_TOL = 1e-12

__all__ = ["DEFAULT_CONFIDENCE", "McNemar", "binomial_cdf", "clopper_pearson_interval", "mcnemar_exact",
           "wilson_interval"]


def _check(k: int, n: int, confidence: float) -> None:
    for name, v in (("k", k), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{name} must be an integer >= 0, got {v!r}")
    if k > n:
        raise ConfigError(f"k ({k}) must not exceed n ({n})")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _z(confidence: float) -> float:
    """The ``1 - alpha/2`` quantile of the standard normal (1.959964 for 95 %)."""
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson_interval(k: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of ``k`` successes in ``n`` trials (module docstring);
    ``(nan, nan)`` when ``n = 0``."""
    _check(k, n, confidence)
    if n == 0:
        return math.nan, math.nan
    z = _z(confidence)
    p = k / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, summed in log space (lgamma; stable for large ``n``)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def _bisect(f, target: float) -> float:
    """The ``p`` in [0, 1] where the decreasing function ``f(p)`` crosses ``target``."""
    lo, hi = 0.0, 1.0
    while hi - lo > _BISECTION_TOL:
        mid = (lo + hi) / 2.0
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def clopper_pearson_interval(k: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson exact interval ``(low, high)`` of ``k`` successes in ``n`` trials (module docstring);
    ``(nan, nan)`` when ``n = 0``. For ``k = 0``: ``(0, 1 - (alpha/2)^(1/n))``."""
    _check(k, n, confidence)
    if n == 0:
        return math.nan, math.nan
    half_alpha = (1.0 - confidence) / 2.0
    # P(X >= k | p) = 1 - cdf(k - 1) increases with p: bisect on its complement, cdf(k - 1), which decreases
    low = 0.0 if k == 0 else _bisect(lambda p: binomial_cdf(k - 1, n, p), 1.0 - half_alpha)
    high = 1.0 if k == n else _bisect(lambda p: binomial_cdf(k, n, p), half_alpha)
    return low, high


@dataclass(frozen=True)
class McNemar(Record):
    """The exact McNemar test of two classifiers on the same ``n`` images.

    ``b``: images the first gets right and the second wrong; ``c``: the reverse; ``p_value``: two-sided
    exact (binomial) p-value; ``mid_p``: its mid-p variant (module docstring)."""

    b: int
    c: int
    p_value: float
    mid_p: float


def mcnemar_exact(b: int, c: int) -> McNemar:
    """Exact two-sided McNemar test on the discordant counts ``b`` and ``c`` (module docstring)."""
    _check(0, b, 0.5)
    _check(0, c, 0.5)
    m = b + c
    if m == 0:
        return McNemar(b=b, c=c, p_value=1.0, mid_p=1.0)
    low = min(b, c)
    tail = Fraction(sum(math.comb(m, i) for i in range(low + 1)), 2 ** m)
    point = Fraction(math.comb(m, low), 2 ** m)
    p = min(Fraction(1), 2 * tail)
    mid = Fraction(1) if b == c else min(Fraction(1), max(Fraction(0), 2 * tail - point))
    return McNemar(b=b, c=c, p_value=float(p), mid_p=float(mid))
