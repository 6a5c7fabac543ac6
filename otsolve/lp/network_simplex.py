"""Exact optimal transport by a network simplex on the bipartite transport graph."""
from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import scipy.sparse

from .._costs import check_cost_range, cost_source, point_source
from .._result import ConvergenceWarning, OTResult, Status
from .._validation import (as_float_array, check_balanced, check_count, check_finite, check_problem,
                           check_weights)
from . import _assignment_kernels, _kernels

REDUCED_COST_TOL = 1e-12  # relative to |C_ij| + |f_i| + |g_j| of the reduced costs (row and column
                          # minima removed, so an offset of C cannot coarsen it): a few ulps of a
                          # path sum of ~1e4 arcs
CERTIFICATE_RTOL = 1e-9   # an optimal basis must have max_ij f_i + g_j - C_ij below this times the
                          # spread of the reduced costs, else its status is NUMERICAL_ERROR
ARTIFICIAL_MARGIN = 1e-9  # warm start: slack of the artificial arcs, relative to the cost scale
SPREAD_MAX = 1e300        # reduced costs above this are refused: potentials (path sums) could overflow
WARM_MAX_SPREAD = 1e6     # warm potentials spanning more than this times the (reduced) cost spread
                          # are ignored: optimal ones span at most the spread


def exact(C, a=None, b=None, *, max_iter=None, warm_start=None) -> OTResult:
    r"""Solve the exact (linear programming) optimal transport problem.

    .. math::
        \min_{P \ge 0} \langle C, P \rangle \quad \text{s.t.} \quad P 1 = a, \; P^T 1 = b

    by a network simplex (block-search pricing, strongly feasible trees) written in Numba. With
    uniform weights (all entries of ``a`` equal, and of ``b``) on as many rows as columns (at
    most 1000), an optimal plan is a permutation (Birkhoff), found instead by an assignment
    solver (auction with epsilon scaling, finished by shortest augmenting paths) when
    ``max_iter`` and ``warm_start`` are not given; its result carries the same certificate, and
    the simplex solves the problem whenever that certificate fails.

    Parameters
    ----------
    C : (n, m) array_like
        Cost matrix, finite.
    a, b : (n,), (m,) array_like, optional
        Non-negative weights of equal total mass (uniform when omitted). Zero weights are allowed;
        a mismatch of masses up to 1e-9 relative is corrected by rescaling ``b``.
    max_iter : int, optional
        Maximum number of pivots (the simplex is then used). By default the solver runs to
        optimality.
    warm_start : tuple (f, g) of arrays, optional
        Potentials from an earlier or approximate solve (e.g. Sinkhorn). The simplex then starts
        from a tree of artificial arcs priced so that its potentials are (f, g) (shifted), and
        its first pivots bring in the cells of least reduced cost ``C_ij - f_i - g_j``. The
        optimum does not depend on them.

    Returns
    -------
    OTResult
        ``plan`` is a ``scipy.sparse.csr_array`` with at most ``n + m - 1`` non-zeros, ``f`` and
        ``g`` are optimal potentials (``f_i + g_j <= C_ij``, normalised so that ``a.f == b.g``),
        ``duality_gap`` and ``max_dual_violation`` form the optimality certificate. ``n_iter``
        counts pivots, or augmenting paths on the assignment path.

    Raises
    ------
    ValueError, TypeError
        On invalid input (non-finite, negative or mismatched weights, C not 2-D, ...).

    References
    ----------
    Ahuja, Magnanti, Orlin (1993), Network Flows, ch. 11. Bonneel, van de Panne, Paris, Heidrich
    (2011), Displacement interpolation using Lagrangian mass transport. Bertsekas (1988), The
    auction algorithm. Jonker, Volgenant (1987), A shortest augmenting path algorithm for dense
    and sparse linear assignment problems.

    Examples
    --------
    >>> import numpy as np, otsolve
    >>> res = otsolve.exact(np.array([[0.0, 1.0], [1.0, 0.0]]))
    >>> float(res.value), str(res.status)
    (0.0, 'optimal')
    """
    C, a, b = check_problem(C, a, b)
    max_iter = _check_max_iter(max_iter)
    u, v = reduce_costs(C)
    spread = float(C.max())
    warm = None
    if warm_start is not None:
        f, g = _check_warm_start(warm_start, C.shape)
        warm = _normalised(f - u, g - v, a, b)  # (f + s, g - s) is the same start
        if max(np.ptp(warm[0]), np.ptp(warm[1])) > WARM_MAX_SPREAD * max(spread, np.finfo(float).tiny):
            warm = None  # optimal potentials span at most the cost spread: these would only cost digits
    res = _assignment(C, a, b) if warm is None and max_iter < 0 and is_assignment(a, b) else None
    if res is None:
        res = _solve(C, C.shape, a, b, _identity_orders, max_iter, warm)
    return _restore(res, u, v, a, b)


def is_assignment(a, b):
    """Uniform weights (all entries equal) on as many rows as columns, up to the assignment
    solver's MAX_SIZE: an optimal plan is then a permutation of mass a[0] (Birkhoff), which that
    solver finds faster than the simplex."""
    return (len(a) == len(b) <= _assignment_kernels.MAX_SIZE and (a == a[0]).all()
            and (b == b[0]).all())


def _assignment(C, a, b):
    """The certified result of an assignment problem (is_assignment(a, b)) with reduced costs C,
    or None when its certificate fails (the simplex then solves it)."""
    n = len(a)
    col, f, g = np.empty(n, np.int64), np.empty(n), np.empty(n)
    searches = _assignment_kernels.solve_assignment(C, col, f, g)
    return _assignment_result(C, a, b, col, f, g, searches)


def _assignment_result(C, a, b, col, f, g, searches):
    """OTResult of the permutation col, mass a[0] on each of its cells, with the assignment's
    duals (f_i + g_j <= C_ij, tight on col: OT duals as they are), or None if uncertified."""
    n = len(a)
    if not _assignment_kernels.duals_in_range(C, col, f, g):
        return None
    res = _certified(C, a, b, np.arange(n), col, np.full(n, a[0]), f, g, Status.OPTIMAL, searches, -1, quiet=True)
    return res if res.status == Status.OPTIMAL else None


def reduce_costs(C):
    """Subtract the row minima u, then the column minima v, from C in place (C_ij - u_i - v_j
    >= 0, with a zero in every row and column): the same optimal plans, and tolerances then
    scale with the spread of the costs, not with an offset (differences of nearby floats are
    exact, so no digit of C's differences is lost)."""
    with np.errstate(over="ignore", invalid="ignore"):
        u = C.min(axis=1)
        C -= u[:, None]
        v = C.min(axis=0)
        C -= v[None, :]
    spread = C.max()
    if not spread <= SPREAD_MAX:  # (or NaN) path sums of potentials would overflow
        raise ValueError(f"C's spread (largest minus smallest cost, after row and column minima) is "
                         f"{spread:.3g}, too close to float64's largest number; rescale C")
    return u, v


def _restore(res, u, v, a, b):
    """The result of the reduced problem for the original costs C' + u_i + v_j."""
    f, g = _normalised(res.f + u, res.g + v, a, b)
    shift = float(a @ u + b @ v)
    return dataclasses.replace(res, f=f, g=g, value=res.value + shift, value_linear=res.value_linear + shift,
                               dual_value=res.dual_value + shift)


def _normalised(f, g, a, b):
    """(f + s, g - s) with a.f == b.g."""
    s = (b @ g - a @ f) / (a.sum() + b.sum())
    return f + s, g - s


def exact_points(x, y, a, b, *, p, metric, max_iter=None) -> OTResult:
    """Exact OT between validated point clouds with costs computed on the fly: O(n + m) memory."""
    n, m = x.shape[0], y.shape[0]
    raw = (a, b)
    a = check_weights(a, n, "a", dim_name="points in x")
    b = check_balanced(a, check_weights(b, m, "b", dim_name="points in y"), raw)
    src = cost_source(x, y, metric, p)
    check_cost_range(x, y, src[3], src[4], metric)
    axis = _principal_axis(np.concatenate([x, y]))
    orders = lambda rows, cols: (np.argsort(x[rows] @ axis), np.argsort(y[cols] @ axis))  # noqa: E731
    return _solve(src, (n, m), a, b, orders, _check_max_iter(max_iter))


def exact_batch(Cs, a=None, b=None, *, max_iter=None) -> list[OTResult]:
    """Solve a batch of independent exact OT problems in parallel over the CPU cores.

    Parameters
    ----------
    Cs : (k, n, m) array_like
        The cost matrices.
    a, b : (n,) or (k, n), (m,) or (k, m) array_like, optional
        Weights shared by all problems or one row per problem (uniform when omitted).
    max_iter : int, optional
        Maximum number of pivots per problem.

    Returns
    -------
    list of OTResult, one per problem, as :func:`exact` returns them.

    Examples
    --------
    >>> import numpy as np, otsolve
    >>> Cs = np.stack([1.0 - np.eye(2), 1.0 + 2.0 * np.eye(2)])
    >>> [float(r.value) for r in otsolve.exact_batch(Cs)]
    [0.0, 1.0]
    """
    Cs = as_float_array(Cs, "Cs")
    if Cs.ndim != 3 or 0 in Cs.shape:
        raise ValueError(f"Cs must be a non-empty (k, n, m) stack of cost matrices; got shape {Cs.shape}")
    k, n, m = Cs.shape
    check_finite(Cs, "Cs")
    A = _weight_rows(a, k, n, "a", f"rows of each cost matrix, Cs.shape == {Cs.shape}")
    B = _weight_rows(b, k, m, "b", f"columns of each cost matrix, Cs.shape == {Cs.shape}")
    B = np.stack([check_balanced(A[t], B[t], (a, b)) for t in range(k)])
    max_iter = _check_max_iter(max_iter)
    reduced = [reduce_costs(Cs[t]) for t in range(k)]  # in place on the validated copy
    results = _assignment_batch(Cs, A, B) if max_iter < 0 else [None] * k
    pending = np.array([res is None for res in results])
    batchable = pending & (A > 0).all(axis=1) & (B > 0).all(axis=1)  # zero weights: the general path
    idx = np.flatnonzero(batchable)
    if len(idx):
        parents = np.empty((len(idx), n + m), np.int64)
        flows, pis = np.empty((len(idx), n + m)), np.empty((len(idx), n + m))
        status, pivots = np.empty(len(idx), np.int64), np.empty(len(idx), np.int64)
        _kernels.solve_batch(np.ascontiguousarray(Cs[idx]), A[idx], B[idx], _block_rows(n, m),
                             REDUCED_COST_TOL, max_iter, parents, flows, pis, status, pivots)
        rows, cols = np.arange(n), np.arange(m)
        for s, t in enumerate(idx):
            results[t] = _result(Cs[t], A[t], B[t], rows, cols, parents[s], flows[s],
                                 pis[s, :n], pis[s, n:], Status(status[s]), pivots[s], max_iter)
    for t in np.flatnonzero(pending & ~batchable):
        results[t] = _solve(Cs[t], (n, m), A[t], B[t], _identity_orders, max_iter)
    return [_restore(res, *reduced[t], A[t], B[t]) for t, res in enumerate(results)]


def _assignment_batch(Cs, A, B):
    """Certified results of the assignment problems of the batch (see is_assignment), solved in
    parallel; None for the other problems and those whose certificate fails."""
    results = [None] * len(Cs)
    idx = [t for t in range(len(Cs)) if is_assignment(A[t], B[t])]
    if idx:
        n = Cs.shape[1]
        cols, F, G = np.empty((len(idx), n), np.int64), np.empty((len(idx), n)), np.empty((len(idx), n))
        searches = np.empty(len(idx), np.int64)
        _assignment_kernels.solve_assignment_batch(np.ascontiguousarray(Cs[idx]), cols, F, G, searches)
        for s, t in enumerate(idx):
            results[t] = _assignment_result(Cs[t], A[t], B[t], cols[s], F[s], G[s], searches[s])
    return results


def _weight_rows(w, k, size, name, dim_name):
    """(k, size) weights from None, shared (size,) or per-problem (k, size) weights."""
    if w is None:
        return np.full((k, size), 1.0 / size)
    w = as_float_array(w, name)
    if w.ndim == 2:
        if w.shape[0] != k:
            raise ValueError(f"{name} has {w.shape[0]} rows but there are {k} problems")
        return np.stack([check_weights(row, size, f"{name}[{t}]", dim_name=dim_name) for t, row in enumerate(w)])
    return np.tile(check_weights(w, size, name, dim_name=dim_name), (k, 1))


def _check_max_iter(max_iter):
    return -1 if max_iter is None else check_count(max_iter, "max_iter", minimum=0)


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
    return f, g


def _identity_orders(rows, cols):
    return np.arange(len(rows)), np.arange(len(cols))


def _artificial_costs(C, f, g):
    """Costs f_i + M, g_j + M of the warm start's artificial arcs. Any optimal duals (f*, g*)
    satisfy max(f* - f) + max(g* - g) <= max C - min f - min g, so with 2M above that
    (plus a margin) they stay feasible with the artificial arcs, which therefore end empty."""
    scale = np.abs(C).max() + np.abs(f).max() + np.abs(g).max()
    shift = 0.5 * (C.max() - f.min() - g.min()) + 0.5 * (C.max() - C.min()) + ARTIFICIAL_MARGIN * scale
    return np.concatenate([f + shift, g + shift])


def _principal_axis(points):
    """Direction of largest spread: sorting both clouds along it gives a 1-D-optimal-like start."""
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 4096)], full_matrices=False)
    return vt[0]


def _block_rows(n, m):
    """Pricing block of about sqrt(n m) arcs (Bonneel et al. 2011), in whole rows."""
    return max(1, round(math.sqrt(n * m) / m))


def _subproblem(src, rows, cols):
    if isinstance(src, np.ndarray):
        return src[np.ix_(rows, cols)]
    x, y, _, code, p = src
    return point_source(x[rows], y[cols], code, p)


def _solve(src, shape, a, b, orders, max_iter, warm=None):
    """Drop zero-weight rows/columns, solve the rest, and assemble the certified result."""
    rows, cols = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    full = len(rows) == shape[0] and len(cols) == shape[1]
    sub = src if full else _subproblem(src, rows, cols)
    n, m = len(rows), len(cols)
    art = np.empty(0) if warm is None else _artificial_costs(sub, warm[0][rows], warm[1][cols])
    size = n + m + (warm is not None)
    parent, flow, pi = np.empty(size, np.int64), np.empty(size), np.empty(size)
    row_order, col_order = orders(rows, cols)
    status, pivots = _kernels.solve(sub, a[rows], b[cols], row_order, col_order, art, _block_rows(n, m),
                                    REDUCED_COST_TOL, max_iter, parent, flow, pi)
    parent, flow, pi = parent[:n + m], flow[:n + m], pi[:n + m]
    if warm is not None and status == Status.OPTIMAL and flow[parent == n + m].sum() > ARTIFICIAL_MARGIN * a.sum():
        return _solve(src, shape, a, b, orders, max_iter)  # the margin was too thin: start cold
    f, g = np.zeros(shape[0]), np.zeros(shape[1])
    f[rows], g[cols] = pi[:n], pi[n:]
    if not full:
        _kernels.tightest_potentials(src, f, g, a > 0, b > 0)
    return _result(src, a, b, rows, cols, parent, flow, f, g, Status(status), pivots, max_iter)


def _result(src, a, b, rows, cols, parent, flow, f, g, status, pivots, max_iter):
    """The certified result of a final simplex tree (arcs of positive flow form the plan)."""
    n_sub = len(rows)
    node = np.flatnonzero((parent >= 0) & (parent < n_sub + len(cols)) & (flow > 0))
    src_node = np.where(node < n_sub, node, parent[node])
    snk_node = np.where(node < n_sub, parent[node], node) - n_sub
    return _certified(src, a, b, rows[src_node], cols[snk_node], flow[node], f, g, status, pivots, max_iter)


def _certificate(src, a, b, i, j, mass, f, g):
    """(plan, value, dual value, marginal error, max dual violation, certified) of the plan with
    mass on the cells (i, j) and duals f, g."""
    order = np.lexsort((j, i))
    i, j, mass = i[order], j[order], mass[order]
    arc_costs = src[i, j] if isinstance(src, np.ndarray) else _kernels.arc_costs(src, i, j)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=len(a)))])
    plan = scipy.sparse.csr_array((mass, j, indptr), shape=(len(a), len(b)))
    value = float(mass @ arc_costs)
    dual_value = float(a @ f + b @ g)
    marginal_error = max(np.abs(np.bincount(i, mass, minlength=len(a)) - a).sum(),
                         np.abs(np.bincount(j, mass, minlength=len(b)) - b).sum())
    violation = float(_kernels.dual_violation(src, f, g))
    # the scale of the reduced costs: |f| + |g| bounds every C_ij on the tree
    scale = float(np.abs(f).max() + np.abs(g).max())
    certified = max(violation, abs(value - dual_value) / a.sum()) <= CERTIFICATE_RTOL * scale
    return plan, value, dual_value, float(marginal_error), violation, certified


def _certified(src, a, b, i, j, mass, f, g, status, n_iter, max_iter, quiet=False):
    """OTResult of the plan on cells (i, j) with duals (f, g): optimal only when the certificate
    holds (else NUMERICAL_ERROR, with a warning unless ``quiet``)."""
    f, g = _normalised(f, g, a, b)
    plan, value, dual_value, marginal_error, violation, certified = _certificate(src, a, b, i, j, mass, f, g)
    message = "optimal"
    if status == Status.OPTIMAL and not certified:
        status = Status.NUMERICAL_ERROR
        message = (f"the simplex stopped with max_ij f_i + g_j - C_ij = {violation:.3g} and duality gap "
                   f"{value - dual_value:.3g} (relative to the costs > {CERTIFICATE_RTOL:g}): the plan is "
                   "feasible, its optimality is not certified; rescale C")
        if not quiet:
            warnings.warn(message, ConvergenceWarning, stacklevel=5)
    elif status != Status.OPTIMAL:
        message = (f"stopped after max_iter={max_iter} pivots before optimality: the plan is not optimal "
                   "(feasible from a cold start; from a warm start, marginal_error says how far)")
        warnings.warn(message, ConvergenceWarning, stacklevel=5)
    return OTResult(value=value, value_linear=value, plan=plan, f=f, g=g, status=status,
                    n_iter=int(n_iter), marginal_error=marginal_error, max_dual_violation=violation,
                    dual_value=dual_value, duality_gap=value - dual_value, message=message)
