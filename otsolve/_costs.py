"""Ground costs between point clouds: the dense matrix and a per-pair kernel for online solvers."""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._threads import threads_for
from ._validation import check_choice, check_point_clouds, check_positive

METRICS = ("euclidean", "sqeuclidean", "cityblock")
SQEUCLIDEAN, EUCLIDEAN_POW, CITYBLOCK_POW = 0, 1, 2  # kernel codes
SUMSQ_MIN, SUMSQ_MAX = 1e-290, 1e290  # a sum of squares outside this range may have under- or
                                      # overflowed: the Euclidean norm is then recomputed scaled


def cost_code(metric: str, p: float) -> tuple[int, float]:
    """Kernel code and exponent for the cost ``metric(x, y) ** p``."""
    check_choice(metric, "metric", METRICS)
    p = check_positive(p, "p")
    if metric == "sqeuclidean":
        metric, p = "euclidean", 2.0 * p
    if metric == "euclidean":
        return (SQEUCLIDEAN, 2.0) if p == 2.0 else (EUCLIDEAN_POW, p)
    return CITYBLOCK_POW, p


@njit(cache=True, inline="always")
def pair_cost(x, i, y, j, code, p):
    """metric(x_i, y_j) ** p for a kernel code of :func:`cost_code`."""
    s = 0.0
    if code == CITYBLOCK_POW:
        for k in range(x.shape[1]):
            s += abs(x[i, k] - y[j, k])
    else:
        for k in range(x.shape[1]):
            d = x[i, k] - y[j, k]
            s += d * d
        if code == SQEUCLIDEAN:
            return s
        s = math.sqrt(s) if SUMSQ_MIN <= s <= SUMSQ_MAX else _scaled_norm(x, i, y, j)
    return s if p == 1.0 else s ** p


@njit(cache=True)
def _scaled_norm(x, i, y, j):
    """|x_i - y_j| without under- or overflow of the squares (as hypot)."""
    top = 0.0
    for k in range(x.shape[1]):
        top = max(top, abs(x[i, k] - y[j, k]))
    if top == 0.0 or not math.isfinite(top):
        return top
    s = 0.0
    for k in range(x.shape[1]):
        d = (x[i, k] - y[j, k]) / top
        s += d * d
    return top * math.sqrt(s)


@njit(cache=True, parallel=True)
def _cost_matrix(x, y, code, p, out):
    for i in prange(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = pair_cost(x, i, y, j, code, p)


def cost_matrix(x, y, *, p=2, metric="euclidean") -> np.ndarray:
    """Return the cost matrix ``C_ij = metric(x_i, y_j) ** p``.

    Parameters
    ----------
    x, y : (n, d), (m, d) array_like
        Point clouds (1-D arrays are points on the line).
    p : float, default 2
        Exponent; ``p=2`` with ``metric="euclidean"`` is the squared Euclidean cost of W2.
    metric : {"euclidean", "sqeuclidean", "cityblock"}

    Returns
    -------
    (n, m) ndarray

    Examples
    --------
    >>> import otsolve
    >>> otsolve.cost_matrix([[0.0, 0.0]], [[3.0, 4.0]], p=1).tolist()
    [[5.0]]
    """
    x, y = check_point_clouds(x, y)
    code, p = cost_code(metric, p)
    check_cost_range(x, y, code, p, metric)
    out = np.empty((x.shape[0], y.shape[0]))
    with threads_for(out.size):  # a minibatch's matrix: waking threads costs more than the work
        _cost_matrix(x, y, code, p, out)
    if not np.isfinite(out.sum()):
        raise_overflow(metric, p)
    return out


def raise_overflow(metric, p, how="overflow"):
    raise ValueError(f"the costs {metric}(x, y) ** {p:g} of these points {how} float64; rescale "
                     "x and y (the optimal plan does not change when both are scaled alike)")


def check_cost_range(x, y, code, p, metric):
    """ValueError unless the costs of two validated clouds are representable: their bound
    (:func:`max_cost_bound`) overflows, or underflows below the smallest normal float although
    the points differ (every cost would round to 0: a silent zero). Returns the bound."""
    bound = max_cost_bound(x, y, code, p)
    if not math.isfinite(bound):
        raise_overflow(metric, p)
    if bound < np.finfo(float).tiny:
        both = np.concatenate([x, y])
        if (both.max(axis=0) > both.min(axis=0)).any():  # not a single point: costs are not all 0
            raise_overflow(metric, p, "underflow")
    return bound


def max_cost_bound(x, y, code, p):
    """An upper bound of the costs: the diameter of both clouds' bounding box to the power p,
    computed without overflow of the squares (inf only if the bound itself overflows)."""
    both = np.concatenate([x, y])
    with np.errstate(over="ignore"):
        return float(extent_bound(both.max(axis=0) - both.min(axis=0), code, p))


def extent_bound(extent, code, p):
    """:func:`max_cost_bound` from the extents (..., d) of bounding boxes: one bound per row."""
    with np.errstate(over="ignore"):
        if code == CITYBLOCK_POW:
            return np.power(extent.sum(axis=-1), p)
        top = extent.max(axis=-1)
        inside = (0 < top) & (top < np.inf)  # else the diameter is top itself (0 or inf)
        ratios = extent / np.where(inside, top, 1.0)[..., None]
        diameter = np.where(inside, top * np.sqrt((ratios ** 2).sum(axis=-1)), top)
        return np.power(diameter, 2.0 if code == SQEUCLIDEAN else p)


def point_source(x, y, code, p):
    """The on-the-fly cost source of two validated clouds for the kernels below: ``(x, y, yT,
    code, p)``, with y also transposed (d, m) so that a run of costs vectorises."""
    return (x, y, np.ascontiguousarray(y.T), code, p)


def cost_source(x, y, metric, p):
    """:func:`point_source` for a metric name and exponent."""
    code, p = cost_code(metric, p)
    return point_source(x, y, code, p)


def cost_at(src, i, j):
    """C_ij of a cost source inside a kernel: a dense (n, m) matrix, or a point source
    (:func:`point_source`) whose costs are computed on the fly (O(n + m) memory)."""
    if isinstance(src, np.ndarray):
        return src[i, j]
    x, y, _, code, p = src
    return pair_cost.py_func(x, i, y, j, code, p)


@overload(cost_at)
def _cost_at_impl(src, i, j):
    if isinstance(src, types.Array):
        return lambda src, i, j: src[i, j]
    return lambda src, i, j: pair_cost(src[0], i, src[1], j, src[3], src[4])


@njit(cache=True, inline="always")
def point_costs(x, i, yT, j0, k, code, p, buf):
    """buf[:k] = metric(x_i, y_j) ** p for j = j0 .. j0 + k - 1, from the transposed cloud yT:
    the sums of :func:`pair_cost` in the same order (the same costs), with the coordinate loop
    outside and the metric's branches hoisted, so that the loop over j vectorises."""
    out = buf[:k]
    out[:] = 0.0
    for dim in range(x.shape[1]):
        xi, row = x[i, dim], yT[dim, j0:j0 + k]
        if code == CITYBLOCK_POW:
            for jj in range(k):
                out[jj] += abs(xi - row[jj])
        else:
            for jj in range(k):
                t = xi - row[jj]
                out[jj] += t * t
    if code == EUCLIDEAN_POW:
        for jj in range(k):
            t = out[jj]
            out[jj] = math.sqrt(t) if SUMSQ_MIN <= t <= SUMSQ_MAX else _scaled_norm(x, i, yT.T, j0 + jj)
    if code != SQEUCLIDEAN and p != 1.0:
        for jj in range(k):
            out[jj] = out[jj] ** p
    return out


def cost_chunk(src, i, j0, k, buf):
    """C[i, j0:j0 + k] of a cost source (see :func:`cost_at`): a view of a dense matrix, or
    ``buf`` filled on the fly (:func:`point_costs`)."""
    if isinstance(src, np.ndarray):
        return src[i, j0:j0 + k]
    x, _, yT, code, p = src
    return point_costs.py_func(x, i, yT, j0, k, code, p, buf)


@overload(cost_chunk)
def _cost_chunk_impl(src, i, j0, k, buf):
    if isinstance(src, types.Array):
        return lambda src, i, j0, k, buf: src[i, j0:j0 + k]
    return lambda src, i, j0, k, buf: point_costs(src[0], i, src[2], j0, k, src[3], src[4], buf)


def cost_row(src, i, buf):
    """Row i of a cost source: :func:`cost_chunk` over all m columns (``buf`` has length m)."""
    return cost_chunk(src, i, 0, buf.shape[0], buf)


@overload(cost_row)
def _cost_row_impl(src, i, buf):
    if isinstance(src, types.Array):
        return lambda src, i, buf: src[i]
    return lambda src, i, buf: cost_chunk(src, i, 0, buf.shape[0], buf)
