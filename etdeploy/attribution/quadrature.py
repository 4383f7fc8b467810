"""Quadrature rules for the integrated-gradients path integral ``∫_0^1 f(α) dα``.

Each rule is a pure function ``steps -> (weights, alphas)``, two float64 arrays of shape ``(steps,)``
with ``∫_0^1 f(α) dα ≈ Σ_s weights[s] · f(alphas[s])``. The conventions are Captum's
(``captum/attr/_utils/approximation_methods.py``), so that ``IntegratedGradients(G)`` with the same
``method`` and ``n_steps`` evaluates ``G`` at the same points with the same weights:

- ``riemann_left``: α_s = s/n, s = 0..n-1; ``riemann_right``: α_s = (s+1)/n;
- ``riemann_middle``: α_s = (s + 1/2)/n; all three with weight 1/n;
- ``riemann_trapezoid``: α_s = s/(n-1), s = 0..n-1, weight 1/n, halved at both ends (Captum's rule;
  its weights sum to 1 - 1/n, so it needs n >= 2);
- ``gausslegendre``: Gauss–Legendre nodes and weights mapped from [-1, 1] to [0, 1] (exact for
  polynomials of degree up to 2n - 1). The default.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from etdeploy.errors import AttributionError

QuadratureRule = Callable[[int], tuple[np.ndarray, np.ndarray]]

DEFAULT_METHOD = "gausslegendre"
DEFAULT_STEPS = 32


def _check_steps(steps: int, minimum: int, method: str) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise AttributionError(f"steps must be an integer, got {steps!r}")
    if steps < minimum:
        raise AttributionError(f"steps must be >= {minimum} for method {method!r}, got {steps}")
    return int(steps)


def riemann_left(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, alphas)``, each ``(steps,)``: left Riemann sum on [0, 1]."""
    n = _check_steps(steps, 1, "riemann_left")
    return np.full(n, 1.0 / n), np.arange(n, dtype=np.float64) / n


def riemann_right(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, alphas)``, each ``(steps,)``: right Riemann sum on [0, 1]."""
    n = _check_steps(steps, 1, "riemann_right")
    return np.full(n, 1.0 / n), np.arange(1, n + 1, dtype=np.float64) / n


def riemann_middle(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, alphas)``, each ``(steps,)``: midpoint rule on [0, 1]."""
    n = _check_steps(steps, 1, "riemann_middle")
    return np.full(n, 1.0 / n), (np.arange(n, dtype=np.float64) + 0.5) / n


def riemann_trapezoid(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, alphas)``, each ``(steps,)``: Captum's trapezoid rule (see the module docstring)."""
    n = _check_steps(steps, 2, "riemann_trapezoid")
    weights = np.full(n, 1.0 / n)
    weights[0] /= 2.0
    weights[-1] /= 2.0
    return weights, np.arange(n, dtype=np.float64) / (n - 1)


def gausslegendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, alphas)``, each ``(steps,)``: Gauss–Legendre rule mapped to [0, 1]."""
    n = _check_steps(steps, 1, "gausslegendre")
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * weights.astype(np.float64), 0.5 * (1.0 + nodes.astype(np.float64))


QUADRATURE_RULES: dict[str, QuadratureRule] = {
    "riemann_left": riemann_left,
    "riemann_right": riemann_right,
    "riemann_middle": riemann_middle,
    "riemann_trapezoid": riemann_trapezoid,
    "gausslegendre": gausslegendre,
}


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, alphas)`` of the named rule with ``steps`` points (see :data:`QUADRATURE_RULES`)."""
    rule = QUADRATURE_RULES.get(method)
    if rule is None:
        raise AttributionError(f"unknown quadrature method {method!r}; choose one of {', '.join(QUADRATURE_RULES)}")
    return rule(steps)
