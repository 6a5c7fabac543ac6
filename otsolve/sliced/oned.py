"""Wasserstein distances on the line, in closed form: sort, merge the cumulative weights."""
from __future__ import annotations

import numpy as np

from .._validation import as_float_array, check_finite, check_positive
from . import _kernels


def wasserstein_1d(u, v, u_weights=None, v_weights=None, *, p=1):
    r"""Return the p-Wasserstein distance between weighted samples on the line.

    .. math:: W_p(\mu, \nu) = \Big(\int_0^1 |F^{-1}(t) - G^{-1}(t)|^p \, dt\Big)^{1/p}

    with F, G the cumulative distribution functions of u and v. Both samples are sorted
    (O(n log n)) and their cumulative weights merged; the batch is solved in parallel (Numba).

    Parameters
    ----------
    u, v : (n,), (m,) or (k, n), (k, m) array_like
        The samples (SciPy's argument order); 2-D inputs are a batch of k independent problems.
    u_weights, v_weights : array_like, optional
        Non-negative weights of the shape of ``u`` (``v``), or 1-D and shared by every row of a
        batch; uniform when omitted. Each sample's weights are normalised to unit mass.
    p : float, default 1
        Order, ``p >= 1``.

    Returns
    -------
    float, or (k,) ndarray for a batch
        W_p (not W_p^p: POT's ``ot.wasserstein_1d`` returns the latter).

    Raises
    ------
    ValueError, TypeError
        Naming the argument: empty, non-finite, negative or all-zero weights, mismatched shapes.

    Examples
    --------
    >>> import otsolve
    >>> otsolve.wasserstein_1d([0.0, 1.0, 3.0], [5.0, 6.0, 8.0])
    5.0
    >>> otsolve.wasserstein_1d([[0.0, 1.0], [0.0, 2.0]], [[0.0, 1.0], [1.0, 1.0]], p=2).tolist()
    [0.0, 1.0]
    """
    p = check_order(p)
    u, v, single = _check_samples(u, v)
    uw = _check_sample_weights(u_weights, u.shape, "u_weights", "u")
    vw = _check_sample_weights(v_weights, v.shape, "v_weights", "v")
    U, CU = sorted_cumulative(u, uw)
    V, CV = sorted_cumulative(v, vw)
    out = np.empty(u.shape[0])
    _kernels.batch_costs(U, CU, V, CV, p, out)
    out = np.maximum(out, 0.0) ** (1.0 / p)
    return float(out[0]) if single else out


def check_order(p) -> float:
    """The order p of W_p, a real number >= 1."""
    p = check_positive(p, "p")
    if p < 1:
        raise ValueError(f"p must be >= 1 (W_p is a distance only then); got {p}")
    return p


def sorted_cumulative(values, weights):
    """Rows of ``values`` (k, n) sorted, with their cumulative weights normalised to end at 1:
    (k, n) rows, or one shared (1, n) row for uniform weights (``weights`` None)."""
    n = values.shape[1]
    if weights is None:
        return np.sort(values, axis=1), (np.arange(1, n + 1) / n)[None, :]
    order = np.argsort(values, axis=1)  # ties in any order: the quantile function is the same
    sorted_values = np.sort(values, axis=1)  # = values[order] (ties are equal), faster than the gather
    w = weights[order] if weights.ndim == 1 else np.take_along_axis(weights, order, axis=1)
    cum = np.cumsum(w, axis=1)
    cum /= cum[:, -1:]
    cum[:, -1] = 1.0
    return sorted_values, cum


def _check_samples(u, v):
    """(k, n), (k, m) float64 batches and whether the input was a single pair of samples."""
    u, v = as_float_array(u, "u"), as_float_array(v, "v")
    for arr, name in ((u, "u"), (v, "v")):
        if arr.ndim not in (1, 2):
            raise ValueError(f"{name} must be a 1-D sample or a (k, n) batch of samples; got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape}); each sample needs at least one value")
        check_finite(arr, name)
    if u.ndim != v.ndim:
        raise ValueError(f"u and v must both be 1-D samples or both (k, n) batches; got shapes {u.shape} and {v.shape}")
    if u.ndim == 2 and u.shape[0] != v.shape[0]:
        raise ValueError(f"u has {u.shape[0]} rows but v has {v.shape[0]}; a batch pairs row r of u with row r of v")
    single = u.ndim == 1
    return (u[None, :], v[None, :], True) if single else (u, v, False)


def _check_sample_weights(w, shape, name, sample):
    """None (uniform), or non-negative weights of ``shape`` or (n,) shared by every row."""
    if w is None:
        return None
    w = as_float_array(w, name)
    if w.ndim == 2 and w.shape[0] == 1 and shape[0] == 1:
        w = w[0]
    if w.shape not in (shape, shape[1:]):
        want = f"{shape[1]} entries" if shape[0] == 1 else f"shape {shape} or ({shape[1]},)"
        raise ValueError(f"{name} has shape {w.shape} but {sample} needs {want}")
    check_finite(w, name)
    if (w < 0).any():
        where = tuple(int(t) for t in np.argwhere(w < 0)[0])
        raise ValueError(f"{name} has a negative weight {float(w[where])} at {where[0] if len(where) == 1 else where}; "
                         "weights must be >= 0")
    rows = w.reshape(-1, shape[1])
    empty = np.flatnonzero(~(rows > 0).any(axis=1))
    if len(empty):
        which = name if w.ndim == 1 else f"{name}[{int(empty[0])}]"
        raise ValueError(f"{which} is all zeros; each sample needs positive total mass")
    return w
