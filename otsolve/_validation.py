"""Every input check of otsolve. Each function returns a fresh float64 C-contiguous array
(never a view of the caller's data, unless asked with ``copy=False`` by a solver that only reads
it) or raises ValueError/TypeError naming the argument."""
from __future__ import annotations

import math
import numbers

import numpy as np

MASS_RTOL = 1e-9  # relative mismatch of sum(a) and sum(b) tolerated (and then corrected) for balanced OT
MASS_ULPS = 64.0  # ... or this many ulps of the weights' own precision (float32 weights normalised
                  # separately differ in mass by ~log2(n) ulps: softmax outputs of a GAN)
LOW_PRECISION = {"float16": np.finfo(np.float16).eps, "bfloat16": 2.0 ** -7,
                 "float32": np.finfo(np.float32).eps}


def mass_rtol(*raw) -> float:
    """The mass tolerance for weights given as ``raw`` (numpy arrays, torch tensors, lists):
    MASS_RTOL, or MASS_ULPS ulps of the lowest floating precision among them."""
    eps = 0.0
    for w in raw:
        dtype = getattr(w, "dtype", None)
        if isinstance(dtype, np.dtype):  # its kind and size: str(dtype) took 5 us
            low = dtype.kind == "f" and dtype.itemsize < 8
            eps = max(eps, float(np.finfo(dtype).eps) if low else 0.0)
        elif dtype is not None:  # torch
            eps = max(eps, LOW_PRECISION.get(str(dtype).replace("torch.", ""), 0.0))
    return max(MASS_RTOL, MASS_ULPS * eps)


def as_float_array(x, name: str, copy: bool = True) -> np.ndarray:
    """Convert ``x`` to a float64 C-contiguous array, new unless ``copy`` is False; reject
    complex, object, string and other non-numbers."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensors without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as err:  # ragged nested lists and the like
        raise TypeError(f"{name} must be an array of real numbers; could not convert it ({err})") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} has complex dtype {arr.dtype}; optimal transport needs real numbers")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; expected real numbers (float or int)")
    # np.asarray, not np.array(copy=None): the latter is numpy >= 2 only
    out = np.array(arr, dtype=np.float64, order="C") if copy else np.asarray(arr, np.float64, order="C")
    return out if out.flags.writeable else out.copy()  # Numba compiles read-only arrays anew


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise naming the first non-finite entry of ``arr``."""
    if np.isfinite(arr.sum()):  # one pass in the common case
        return
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        where = tuple(int(k) for k in bad[0])
        where = where[0] if len(where) == 1 else where
        raise ValueError(f"{name} contains {float(arr[tuple(bad[0])])} at {where}; all entries must be finite")
    raise ValueError(f"{name} has entries so large that their sum overflows; rescale it")


def check_cost(C, name: str = "C", copy: bool = True) -> np.ndarray:
    """A finite, non-empty 2-D cost matrix as float64."""
    C = as_float_array(C, name, copy)
    if C.ndim != 2:
        raise ValueError(f"{name} must be a 2-D cost matrix; got an array with shape {C.shape}")
    if C.size == 0:
        raise ValueError(f"{name} is empty (shape {C.shape}); need at least one row and one column")
    check_finite(C, name)
    return C


def check_weights(w, size: int, name: str, *, dim_name: str = "entries") -> np.ndarray:
    """Non-negative finite weights of length ``size``, uniform ``1/size`` when ``w`` is None."""
    if w is None:
        return np.full(size, 1.0 / size)
    w = as_float_array(w, name)
    if w.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {w.shape}")
    if w.shape[0] != size:
        hint = "; pass None for uniform weights" if w.shape[0] == 0 else ""
        raise ValueError(f"{name} has {w.shape[0]} entries but must have {size} ({dim_name}){hint}")
    check_finite(w, name)
    if (w < 0).any():
        k = int(np.argmax(w < 0))
        raise ValueError(f"{name} has a negative weight {float(w[k])} at index {k}; weights must be >= 0")
    if not (w > 0).any():
        raise ValueError(f"{name} is all zeros; it needs positive total mass")
    return w


def check_balanced(a: np.ndarray, b: np.ndarray, raw=()) -> np.ndarray:
    """Return ``b`` rescaled to the mass of ``a``; their masses must agree within the tolerance
    for the precision of the ``raw`` inputs they came from (:func:`mass_rtol`)."""
    sa, sb = float(a.sum()), float(b.sum())
    rtol = mass_rtol(*raw)
    if abs(sa - sb) > rtol * max(sa, sb):
        raise ValueError(f"a and b must have equal total mass for balanced OT: sum(a)={sa!r}, "
                         f"sum(b)={sb!r}; normalise them (or use unbalanced OT)")
    return b * (sa / sb)


PRODUCT_RANGE = (1e-280, 1e280)  # entropic solvers weigh pairs by a_i b_j: outside this, the
                                 # products (and the KL of the plan to a b^T) under- or overflow


def check_entropic_masses(a: np.ndarray, b: np.ndarray) -> None:
    """The products a_i b_j an entropic solver forms must be representable: ValueError if not."""
    top = float(a.max()) * float(b.max())
    if not PRODUCT_RANGE[0] <= top <= PRODUCT_RANGE[1]:
        raise ValueError(f"the weights' scale (max a x max b = {top:.3g}) under- or overflows the "
                         "products a_i b_j of entropic OT in float64; rescale a and b by one factor "
                         "(the plan scales with them)")


def check_problem(C, a, b, *, balanced: bool = True, copy: bool = True):
    """Validate a cost matrix with its two weight vectors: returns ``(C, a, b)``."""
    C = check_cost(C, copy=copy)
    n, m = C.shape
    raw = (a, b)
    a = check_weights(a, n, "a", dim_name=f"rows of C, C.shape == {C.shape}")
    b = check_weights(b, m, "b", dim_name=f"columns of C, C.shape == {C.shape}")
    if balanced:
        b = check_balanced(a, b, raw)
    return C, a, b


def check_points(x, name: str) -> np.ndarray:
    """A finite, non-empty point cloud as an (n, d) float64 array (1-D input is n points in 1-D)."""
    x = as_float_array(x, name)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be an (n, d) array of points; got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); need at least one point of dimension >= 1")
    check_finite(x, name)
    return x


def check_point_clouds(x, y):
    """Validate two point clouds of the same dimension: returns ``(x, y)``."""
    x, y = check_points(x, "x"), check_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension: x.shape == {x.shape}, y.shape == {y.shape}")
    return x, y


def check_positive(value, name: str, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """A real scalar > 0 (or >= 0 with ``allow_zero``), finite unless ``allow_inf``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} of type {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite; got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {value}")
    return value


def check_count(value, name: str, *, minimum: int = 1) -> int:
    """An integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value
