"""Ground costs between point clouds: the dense matrix and a per-pair kernel for online solvers."""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._validation import check_choice, check_point_clouds, check_positive

METRICS = ("euclidean", "sqeuclidean", "cityblock")
SQEUCLIDEAN, EUCLIDEAN_POW, CITYBLOCK_POW = 0, 1, 2  # kernel codes


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
        s = math.sqrt(s)
    return s if p == 1.0 else s ** p


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
    out = np.empty((x.shape[0], y.shape[0]))
    _cost_matrix(x, y, code, p, out)
    return out


def cost_at(src, i, j):
    """C_ij of a cost source inside a kernel: a dense (n, m) matrix, or a tuple
    ``(x, y, code, p)`` whose costs are computed on the fly (O(n + m) memory)."""
    if isinstance(src, np.ndarray):
        return src[i, j]
    x, y, code, p = src
    return pair_cost.py_func(x, i, y, j, code, p)


@overload(cost_at)
def _cost_at_impl(src, i, j):
    if isinstance(src, types.Array):
        return lambda src, i, j: src[i, j]
    return lambda src, i, j: pair_cost(src[0], i, src[1], j, src[2], src[3])


def cost_source(x, y, metric, p):
    """The on-the-fly cost source ``(x, y, code, p)`` of :func:`cost_at` for validated clouds."""
    code, p = cost_code(metric, p)
    return (x, y, code, p)


def cost_row(src, i, buf):
    """Row i of the cost of a source (see :func:`cost_at`): a view of a dense matrix, or
    ``buf`` (length m) filled on the fly, with the metric's branch hoisted out of the loop."""
    if isinstance(src, np.ndarray):
        return src[i]
    for j in range(buf.shape[0]):
        buf[j] = cost_at(src, i, j)
    return buf


@overload(cost_row)
def _cost_row_impl(src, i, buf):
    if isinstance(src, types.Array):
        return lambda src, i, buf: src[i]

    def fill(src, i, buf):
        x, y, code, p = src
        d = x.shape[1]
        if code == CITYBLOCK_POW:
            for j in range(buf.shape[0]):
                s = 0.0
                for k in range(d):
                    s += abs(x[i, k] - y[j, k])
                buf[j] = s
        else:
            for j in range(buf.shape[0]):
                s = 0.0
                for k in range(d):
                    t = x[i, k] - y[j, k]
                    s += t * t
                buf[j] = s
        if code == EUCLIDEAN_POW:
            for j in range(buf.shape[0]):
                buf[j] = math.sqrt(buf[j])
        if code != SQEUCLIDEAN and p != 1.0:
            for j in range(buf.shape[0]):
                buf[j] = buf[j] ** p
        return buf
    return fill
