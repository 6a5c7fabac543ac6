"""Exact Wasserstein distance between histograms on a regular grid (images, volumes)."""
from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from .._costs import check_cost_range, cost_code
from .._validation import as_float_array, check_finite, check_positive
from .multiscale import solve_multiscale_grid

GRID_MAX_DIM = 3


def wasserstein_grid(A, B, *, p=2, spacing=1.0, multiscale=None, max_iter=None):
    r"""Return the exact p-Wasserstein distance between two histograms on the same grid.

    .. math:: W_p(A, B) = \Big(\min_{P \in U(A / |A|, B / |B|)} \sum_{kl} P_{kl}\, |z_k - z_l|^p\Big)^{1/p}

    where z_k are the pixel (voxel) centres, ``index * spacing``. This is the setting of the
    DOTmark benchmark (Schrieber, Schuhmacher, Gottschlich 2017). Empty pixels carry no mass
    and are left out of the solve (their potentials are set afterwards). The multiscale solve
    exploits the grid: its hierarchy pools 2x2(x2) pixels, costs come from index offsets
    through a table of squared lengths per axis, and the pricing of all pairs skips blocks of
    pixels by bounds from their index ranges.

    Parameters
    ----------
    A, B : array_like, same shape, 1-D, 2-D or 3-D
        Non-negative masses, each with a positive total; normalised to unit mass.
    p : float, default 2
        Exponent of the Euclidean ground distance.
    spacing : float or sequence of floats, default 1.0
        Grid step, one for all axes or one per axis.
    multiscale : bool, optional
        Solve on the grid hierarchy (see above); ``False`` solves the pixels as a point cloud
        by :func:`otsolve.wasserstein`. By default multiscale above
        ``otsolve.wasserstein.MULTISCALE_MIN_PAIRS`` pixel pairs.
    max_iter : int, optional
        Budget of simplex pivots (over all levels when multiscale); when it runs out the status
        is ``max_iter`` and the plan is feasible, not optimal.

    Returns
    -------
    OTResult
        As :func:`otsolve.wasserstein`: ``value`` is W_p, ``value_linear`` its p-th power;
        the plan and potentials index the pixels in C order (``A.ravel()``).

    Raises
    ------
    ValueError, TypeError
        Shapes differ, a grid is not 1-D to 3-D, has negative or non-finite values or no mass.

    Examples
    --------
    >>> import otsolve
    >>> round(otsolve.wasserstein_grid([1.0, 0.0, 0.0], [0.0, 0.0, 1.0], p=1).value, 12)
    2.0
    """
    from ..wasserstein import MULTISCALE_MIN_PAIRS, wasserstein  # here: wasserstein imports this package
    A, B, step = _check_grids(A, B, spacing)
    if not (multiscale is None or isinstance(multiscale, bool)):
        raise TypeError(f"multiscale must be None, True or False; got {multiscale!r}")
    if multiscale is None:
        multiscale = A.size ** 2 > MULTISCALE_MIN_PAIRS
    if not multiscale:
        options = {} if max_iter is None else {"max_iter": max_iter}
        centres = _pixel_centres(A.shape, step)
        return wasserstein(centres, centres, A.ravel() / A.sum(), B.ravel() / B.sum(), p=p, multiscale=False,
                           **options)
    res = solve_grid(A, B, p=p, spacing=step, max_iter=max_iter)[0]
    return dataclasses.replace(res, value=max(res.value, 0.0) ** (1.0 / p))


def solve_grid(A, B, *, p=2, spacing=1.0, max_iter=None):
    """The multiscale solve of :func:`wasserstein_grid`: ``(OTResult, MultiscaleStats)``, the
    result's ``value`` being the transport cost W_p ** p."""
    A, B, step = _check_grids(A, B, spacing)
    code, p = cost_code("euclidean", p)
    centres = _pixel_centres(A.shape, step)
    check_cost_range(centres, centres, code, p, "euclidean")
    return solve_multiscale_grid(A.ravel() / A.sum(), B.ravel() / B.sum(), A.shape, step, p=p, max_iter=max_iter)


def _pixel_centres(shape, step):
    return np.stack(np.meshgrid(*[np.arange(s) * h for s, h in zip(shape, step)], indexing="ij"),
                    axis=-1).reshape(-1, len(shape))


def _check_grids(A, B, spacing):
    A, B = _check_grid(A, "A"), _check_grid(B, "B")
    if A.shape != B.shape:
        raise ValueError(f"A and B must have the same grid shape: A.shape == {A.shape}, B.shape == {B.shape}")
    return A, B, _check_spacing(spacing, A.ndim)


def _check_grid(A, name):
    A = as_float_array(A, name)
    if not 1 <= A.ndim <= GRID_MAX_DIM or A.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D, 2-D or 3-D grid of masses; got shape {A.shape}")
    check_finite(A, name)
    if (A < 0).any():
        where = tuple(int(k) for k in np.argwhere(A < 0)[0])
        raise ValueError(f"{name} has a negative mass {float(A[where])} at {where}; masses must be >= 0")
    if not A.sum() > 0:
        raise ValueError(f"{name} is all zeros; it needs positive total mass")
    return A


def _check_spacing(spacing, ndim):
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        return [check_positive(spacing, "spacing")] * ndim
    try:
        step = [check_positive(h, "spacing") for h in spacing]
    except TypeError:
        raise TypeError(f"spacing must be a positive number or one per axis; got {spacing!r}") from None
    if len(step) != ndim:
        raise ValueError(f"spacing has {len(step)} entries but the grids have {ndim} axes")
    return step
