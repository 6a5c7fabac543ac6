"""Independent oracles for entropic OT (share no code with otsolve): POT's log-domain Sinkhorn,
objectives recomputed from a plan with numpy, GeomLoss's Sinkhorn divergence."""
import numpy as np
import ot


def pot_log_plan(a, b, C, reg):
    """POT's log-domain Sinkhorn run far past our tolerance (its stopThr is on the marginals)."""
    return ot.sinkhorn(a, b, C, reg, method="sinkhorn_log", stopThr=1e-14, numItermax=200_000)


def kl(p, q):
    """Generalised KL(p | q) = sum p log(p / q) - p + q over p > 0 (plus q where p = 0)."""
    p, q = np.ravel(p), np.ravel(q)
    pos = p > 0
    return float(np.sum(p[pos] * np.log(p[pos] / q[pos])) - p.sum() + q.sum())


def entropic_value(C, P, a, b, reg):
    """<C, P> + reg * KL(P | a b^T)."""
    return float(np.sum(C * P)) + reg * kl(P, np.outer(a, b))


def unbalanced_value(C, P, a, b, reg, reg_m):
    """Chizat et al. (2018): <C,P> + reg KL(P | a b^T) + reg_m (KL(P 1 | a) + KL(P^T 1 | b))."""
    return entropic_value(C, P, a, b, reg) + reg_m * (kl(P.sum(1), a) + kl(P.sum(0), b))


def entropic_dual(f, g, C, a, b, reg):
    """a.f + b.g - reg * sum_ij a_i b_j (exp((f_i + g_j - C_ij) / reg) - 1)."""
    K = np.outer(a, b) * np.exp((f[:, None] + g[None, :] - C) / reg)
    return float(a @ f + b @ g - reg * (K.sum() - a.sum() * b.sum()))


def plan_from_potentials(f, g, C, a, b, reg):
    return np.outer(a, b) * np.exp((f[:, None] + g[None, :] - C) / reg)


def symmetric_plan(a, C, reg, n_iter=2000):
    """OT(a, a) on a symmetric cost by f <- (f + T(f)) / 2 in numpy (scipy's logsumexp): POT's
    alternating Sinkhorn crawls on these near-diagonal problems, the averaged map converges."""
    from scipy.special import logsumexp
    f, log_a = np.zeros(len(a)), np.log(a)
    for _ in range(n_iter):
        f = 0.5 * (f - reg * logsumexp(log_a[None, :] + (f[None, :] - C) / reg, axis=1))
    return plan_from_potentials(f, f, C, a, a, reg)


def pot_divergence(x, y, a, b, reg, p=2):
    """OT(a,b) - OT(a,a)/2 - OT(b,b)/2 for the cost |x - y|^p, each the entropic value of a plan:
    POT's log-domain Sinkhorn for OT(a, b), the averaged numpy iteration for the symmetric ones."""
    def cost(u, v):
        return ot.dist(u, v, metric="sqeuclidean") if p == 2 else ot.dist(u, v, metric="euclidean") ** p
    Cxx, Cyy, Cxy = cost(x, x), cost(y, y), cost(x, y)
    return (entropic_value(Cxy, pot_log_plan(a, b, Cxy, reg), a, b, reg)
            - 0.5 * entropic_value(Cxx, symmetric_plan(a, Cxx, reg), a, a, reg)
            - 0.5 * entropic_value(Cyy, symmetric_plan(b, Cyy, reg), b, b, reg))


def geomloss_divergence(x, y, a, b, blur, p=2, scaling=0.99):
    """GeomLoss's debiased SamplesLoss("sinkhorn") on CPU: cost |x - y|^p / p, eps = blur^p."""
    import torch
    from geomloss import SamplesLoss
    torch.set_num_threads(1)  # tiny problems: torch's thread pool only fights Numba's for 2 cores
    loss = SamplesLoss("sinkhorn", p=p, blur=blur, debias=True, scaling=scaling, backend="tensorized")
    t = lambda z: torch.tensor(np.asarray(z), dtype=torch.float64)  # noqa: E731
    return float(loss(t(a), t(x), t(b), t(y)))
