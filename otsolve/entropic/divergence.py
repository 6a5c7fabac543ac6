"""The debiased Sinkhorn divergence between point clouds (Genevay et al. 2018, Feydy et al. 2019)."""
from __future__ import annotations

import math

import numpy as np

from .._result import OTResult
from .._threads import threads_for
from ._problem import PointCost
from .sinkhorn import (DEFAULT_MAX_ITER, _check_options, _check_scale, _evaluate, _iterate, _iterate_symmetric,
                       _log, _marginal_error, _point_problem, _Run, _schedule, _softmin, _status)

AVERAGED_SPAN = 8     # final-level iterations over which the averaged updates' progress is read
AVERAGED_STALL = 0.7  # ... and a contraction above this per iteration hands over to alternating


def _iterate_cross(cost, a, b, reg, tol, max_iter, eps_scaling):
    """OT(a, b) by simultaneous averaged updates f <- (f + T(g)) / 2, g <- (g + T(f)) / 2 (as
    GeomLoss), which converge in a few iterations for (near-)identical clouds, where alternating
    Sinkhorn crawls; if they stall at the final reg, alternating updates take over from there."""
    log_a, log_b = _log(a), _log(b)
    f, g = np.zeros(len(a)), np.zeros(len(b))
    T_f, T_g = np.zeros(len(a)), np.zeros(len(b))
    schedule = _schedule(cost.scale, reg, eps_scaling)
    n_iter, history, at, mass = 0, [], schedule[0], float(a.sum())
    for level, eps in enumerate(schedule):
        final = level == len(schedule) - 1
        while n_iter < max_iter:
            at = eps
            _softmin(cost, 0, g, log_b, eps, T_f)
            _softmin(cost, 1, f, log_a, eps, T_g)
            if final:
                history.append(max(_marginal_error(a, f, T_f, eps), _marginal_error(b, g, T_g, eps)))
                if history[-1] <= tol * mass:
                    return _Run(f, g, n_iter, True, reg)
                if len(history) > AVERAGED_SPAN and \
                        history[-1] > AVERAGED_STALL ** AVERAGED_SPAN * history[-1 - AVERAGED_SPAN]:
                    break
            f, g = (T_f.copy(), T_g.copy()) if n_iter == 0 else (0.5 * (f + T_f), 0.5 * (g + T_g))
            n_iter += 1
            if not final:
                break
    run = _iterate(cost, a, b, reg, math.inf, tol, max_iter - n_iter, False, (f, g))
    return run._replace(n_iter=n_iter + run.n_iter, at=reg if run.n_iter else at)


def sinkhorn_divergence(x, y, a=None, b=None, *, reg, p=2, metric="euclidean", tol=1e-9,
                        max_iter=DEFAULT_MAX_ITER, eps_scaling=True) -> OTResult:
    r"""Return the debiased Sinkhorn divergence between two weighted point clouds.

    .. math::
        S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta)
        - \tfrac12 \mathrm{OT}_\varepsilon(\alpha, \alpha) - \tfrac12 \mathrm{OT}_\varepsilon(\beta, \beta)

    where :math:`\mathrm{OT}_\varepsilon` is the value of :func:`otsolve.sinkhorn` (entropic
    objective, KL to the product of the marginals) for the cost ``metric(x, y) ** p``, computed
    on the fly (memory O(n + m); as a matrix for at most 2**22 pairs, see :func:`sinkhorn_points`). For probability weights S >= 0, and S = 0 iff the measures are
    equal. The two symmetric problems use the averaged update f <- (f + T(f)) / 2.

    Parameters
    ----------
    x, y : (n, d), (m, d) array_like
        Point clouds.
    a, b : (n,), (m,) array_like, optional
        Weights of equal total mass (uniform when omitted).
    reg : float
        :math:`\varepsilon > 0` in cost units. GeomLoss's ``SamplesLoss("sinkhorn", p=p,
        blur=blur)`` uses the cost ``|x - y|^p / p`` and ``eps = blur ** p``: it equals this
        function's value divided by p with ``reg = p * blur ** p``.
    p : float, default 2
    metric : {"euclidean", "sqeuclidean", "cityblock"}
    tol, max_iter, eps_scaling
        As in :func:`otsolve.sinkhorn`, for each of the three problems.

    Returns
    -------
    OTResult
        ``value`` = S; ``value_linear`` the same combination of the three ``<C, P>``;
        ``f = f_ab - f_aa`` and ``g = g_ab - g_bb`` (the debiased potentials, the gradient of S
        in a and b, as GeomLoss returns them); ``dual_value`` and ``duality_gap`` combine those
        of the three problems; ``n_iter`` sums and ``marginal_error`` is the worst of the three;
        ``plan`` is None.

    References
    ----------
    Genevay, Peyre, Cuturi (2018); Feydy, Sejourne, Vialard, Amari, Trouve, Peyre (2019),
    Interpolating between optimal transport and MMD using Sinkhorn divergences.

    Examples
    --------
    >>> import otsolve
    >>> x = [[0.0, 0.0], [1.0, 0.0]]
    >>> round(otsolve.sinkhorn_divergence(x, x, reg=0.1).value, 8) == 0
    True
    >>> otsolve.sinkhorn_divergence(x, [[0.0, 1.0], [1.0, 1.0]], reg=0.1).value > 0.9
    True
    """
    reg, tol, max_iter, eps_scaling, _ = _check_options(reg, tol, max_iter, eps_scaling, None)
    cost, a, b = _point_problem(x, y, a, b, p, metric, balanced=True)
    _check_scale(reg, cost)
    n, m = cost.shape
    with threads_for(min(n, m) * max(n, m)):
        return _divergence(cost, a, b, reg, tol, max_iter, eps_scaling)


def _divergence(cost, a, b, reg, tol, max_iter, eps_scaling):
    inf = math.inf
    runs = [_iterate_cross(cost, a, b, reg, tol, max_iter, eps_scaling)]
    parts = [_evaluate(cost, a, b, runs[0].f, runs[0].g, reg, inf, False)]
    for pts, w in ((cost.x, a), (cost.y, b)):
        sym = PointCost(pts, pts, cost.code, cost.p, shift=True)
        runs.append(_iterate_symmetric(sym, w, reg, tol, max_iter, eps_scaling))
        parts.append(_evaluate(sym, w, w, runs[-1].f, runs[-1].g, reg, inf, False))
    (f, g, _, v_ab, l_ab, d_ab, e_ab, viol), aa, bb = parts
    value = v_ab - 0.5 * (aa[3] + bb[3])
    dual = d_ab - 0.5 * (aa[5] + bb[5])
    err = max(e_ab, aa[6], bb[6])
    run = runs[0]._replace(n_iter=sum(r.n_iter for r in runs), converged=all(r.converged for r in runs),
                           at=max(r.at for r in runs), floor=any(r.floor for r in runs))
    finite = all(math.isfinite(v) for v in (value, dual, err))
    status, message = _status(run, max_iter, err, tol, float(a.sum()), reg, finite, stacklevel=4)
    return OTResult(value=value, value_linear=l_ab - 0.5 * (aa[4] + bb[4]), plan=None,
                    f=f - aa[0], g=g - bb[1], status=status, n_iter=run.n_iter, marginal_error=err,
                    max_dual_violation=viol, dual_value=dual, duality_gap=value - dual,
                    message=message)
