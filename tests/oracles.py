"""Independent oracles for the exact solver: they share no code with otsolve."""
import numpy as np
import scipy.optimize
import scipy.sparse


def lp_transport(C, a, b):
    """Exact OT by SciPy's HiGHS LP: returns (value, plan, f, g) with duals from the equalities."""
    n, m = C.shape
    rows = scipy.sparse.kron(scipy.sparse.eye(n), np.ones((1, m)))
    cols = scipy.sparse.kron(np.ones((1, n)), scipy.sparse.eye(m))
    A_eq = scipy.sparse.vstack([rows, cols]).tocsr()
    b_eq = np.concatenate([a, b])
    res = scipy.optimize.linprog(C.ravel(), A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    assert res.status == 0, res.message
    duals = res.eqlin.marginals
    return res.fun, res.x.reshape(n, m), duals[:n], duals[n:]


def wasserstein_1d(u, v, a, b, p):
    """W_p^p on the line by sorting: integrate |F^-1(t) - G^-1(t)|^p over the merged quantiles."""
    iu, iv = np.argsort(u), np.argsort(v)
    u, v, a, b = u[iu], v[iv], a[iu] / a.sum(), b[iv] / b.sum()
    # both cumulative masses end at exactly 1: a sum rounded to 1 + 1ulp lost the last quantile
    cu, cv = np.minimum(np.cumsum(a), 1.0), np.minimum(np.cumsum(b), 1.0)
    cu[-1] = cv[-1] = 1.0
    levels = np.unique(np.concatenate([cu, cv, [0.0]]))
    mids = (levels[:-1] + levels[1:]) / 2
    qu = u[np.minimum(np.searchsorted(cu, mids), len(u) - 1)]
    qv = v[np.minimum(np.searchsorted(cv, mids), len(v) - 1)]
    return float(np.sum(np.diff(levels) * np.abs(qu - qv) ** p))


def gaussian_w2_squared(m1, S1, m2, S2):
    """W2^2 between Gaussians: |m1 - m2|^2 + Bures(S1, S2)."""
    from scipy.linalg import sqrtm
    r = sqrtm(S1)
    cross = np.real(sqrtm(r @ S2 @ r))
    return float(np.sum((m1 - m2) ** 2) + np.trace(S1 + S2 - 2 * cross))
