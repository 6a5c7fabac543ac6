"""Exact optimal transport by a network simplex on the bipartite transport graph."""
from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse

from .._result import ConvergenceWarning, OTResult, Status
from .._validation import as_float_array, check_count, check_problem
from . import _kernels

REDUCED_COST_TOL = 1e-12  # relative to |C_ij| + |f_i| + |g_j|: a few ulps of a path sum of ~1e4 arcs
MIN_BLOCK = 32            # pricing block: sqrt(n m) arcs (Bonneel et al. 2011), at least this many


def exact(C, a=None, b=None, *, max_iter=None, warm_start=None) -> OTResult:
    r"""Solve the exact (linear programming) optimal transport problem.

    .. math::
        \min_{P \ge 0} \langle C, P \rangle \quad \text{s.t.} \quad P 1 = a, \; P^T 1 = b

    by a network simplex (block-search pricing, strongly feasible trees) written in Numba.

    Parameters
    ----------
    C : (n, m) array_like
        Cost matrix, finite.
    a, b : (n,), (m,) array_like, optional
        Non-negative weights of equal total mass (uniform when omitted). Zero weights are allowed;
        a mismatch of masses up to 1e-9 relative is corrected by rescaling ``b``.
    max_iter : int, optional
        Maximum number of pivots. By default the solver runs to optimality.
    warm_start : tuple (f, g) of arrays, optional
        Potentials from an earlier or approximate solve (e.g. Sinkhorn); they guide the initial
        basis. The optimum does not depend on them.

    Returns
    -------
    OTResult
        ``plan`` is a ``scipy.sparse.csr_array`` with at most ``n + m - 1`` non-zeros, ``f`` and
        ``g`` are optimal potentials (``f_i + g_j <= C_ij``, normalised so that ``a.f == b.g``),
        ``duality_gap`` and ``max_dual_violation`` form the optimality certificate.

    Raises
    ------
    ValueError, TypeError
        On invalid input (non-finite, negative or mismatched weights, C not 2-D, ...).

    References
    ----------
    Ahuja, Magnanti, Orlin (1993), Network Flows, ch. 11. Bonneel, van de Panne, Paris, Heidrich
    (2011), Displacement interpolation using Lagrangian mass transport.

    Examples
    --------
    >>> import numpy as np, otsolve
    >>> res = otsolve.exact(np.array([[0.0, 1.0], [1.0, 0.0]]))
    >>> float(res.value), str(res.status)
    (0.0, 'optimal')
    """
    C, a, b = check_problem(C, a, b)
    max_iter = -1 if max_iter is None else check_count(max_iter, "max_iter", minimum=0)
    guide = C if warm_start is None else C - _check_warm_start(warm_start, C.shape)
    rows, cols = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    sub = C[np.ix_(rows, cols)] if len(rows) < len(a) or len(cols) < len(b) else C
    status, pivots, f_sub, g_sub, flow, parent = _solve(sub, a[rows], b[cols], guide[np.ix_(rows, cols)]
                                                        if sub is not C else guide, max_iter)
    f, g = _complete_potentials(C, rows, cols, f_sub, g_sub)
    shift = (b @ g - a @ f) / (a.sum() + b.sum())  # normalise so that a.f == b.g
    f, g = f + shift, g - shift
    plan = _sparse_plan(rows, cols, flow, parent, C.shape)
    value = float((plan.multiply(C)).sum())
    dual_value = float(a @ f + b @ g)
    marginal_error = max(np.abs(plan.sum(axis=1) - a).sum(), np.abs(plan.sum(axis=0) - b).sum())
    message = "optimal" if status == Status.OPTIMAL else \
        f"stopped after max_iter={max_iter} pivots before optimality; the plan is feasible, not optimal"
    if status != Status.OPTIMAL:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return OTResult(value=value, value_linear=value, plan=plan, f=f, g=g, status=status,
                    n_iter=pivots, marginal_error=float(marginal_error),
                    max_dual_violation=float(_kernels.dual_violation(C, f, g)),
                    dual_value=dual_value, duality_gap=value - dual_value, message=message)


def _check_warm_start(warm_start, shape):
    try:
        f, g = warm_start
    except (TypeError, ValueError):
        raise TypeError("warm_start must be a pair (f, g) of potential vectors") from None
    f, g = as_float_array(f, "warm_start f").reshape(-1), as_float_array(g, "warm_start g").reshape(-1)
    if f.shape[0] != shape[0] or g.shape[0] != shape[1]:
        raise ValueError(f"warm_start potentials have lengths ({f.shape[0]}, {g.shape[0]}) "
                         f"but C.shape == {shape}")
    if not (np.isfinite(f).all() and np.isfinite(g).all()):
        raise ValueError("warm_start potentials must be finite")
    return f[:, None] + g[None, :]


def _initial_orders(guide):
    """Row order as given; columns sorted by the row where they are cheapest, so that the
    north-west corner staircase runs close to cheap cells (a greedy start in O(n m))."""
    rows = np.arange(guide.shape[0])
    cols = np.argsort(np.argmin(guide, axis=0), kind="stable")
    return rows, cols


def _solve(C, a, b, guide, max_iter):
    n, m = C.shape
    size = n + m
    parent, first_child = np.empty(size, np.int64), np.empty(size, np.int64)
    next_sib, prev_sib = np.empty(size, np.int64), np.empty(size, np.int64)
    depth, flow, pi = np.empty(size, np.int64), np.empty(size), np.empty(size)
    rows, cols = _initial_orders(guide)
    root = _kernels.northwest_tree(C, a, b, rows, cols, parent, flow, first_child, next_sib,
                                   prev_sib, pi, depth)
    block = max(MIN_BLOCK, int(math.sqrt(n * m)))
    status, pivots = _kernels.network_simplex(C, root, parent, flow, first_child, next_sib, prev_sib,
                                              pi, depth, block, REDUCED_COST_TOL, max_iter)
    _kernels.tree_flows(root, a, b, parent, first_child, next_sib, flow)
    return Status(status), pivots, pi[:n].copy(), pi[n:].copy(), flow, parent


def _complete_potentials(C, rows, cols, f_sub, g_sub):
    """Potentials of zero-weight rows/columns (removed before solving): the tightest feasible
    values, f_i = min_j C_ij - g_j then g_j = min_i C_ij - f_i, so the certificate holds."""
    n, m = C.shape
    if len(rows) == n and len(cols) == m:
        return f_sub, g_sub
    f, g = np.zeros(n), np.zeros(m)
    f[rows], g[cols] = f_sub, g_sub
    dead_rows = np.setdiff1d(np.arange(n), rows)
    dead_cols = np.setdiff1d(np.arange(m), cols)
    if len(dead_rows):
        f[dead_rows] = (C[np.ix_(dead_rows, cols)] - g_sub[None, :]).min(axis=1)
    if len(dead_cols):
        g[dead_cols] = (C[:, dead_cols] - f[:, None]).min(axis=0)
    return f, g


def _sparse_plan(rows, cols, flow, parent, shape):
    """The plan from the tree: one entry per tree arc with positive flow, in full indices."""
    n_sub = len(rows)
    node = np.flatnonzero((parent >= 0) & (flow > 0))
    other = parent[node]
    src = np.where(node < n_sub, node, other)
    snk = np.where(node < n_sub, other, node) - n_sub
    return scipy.sparse.csr_array((flow[node], (rows[src], cols[snk])), shape=shape)
