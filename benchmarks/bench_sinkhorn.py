"""Entropic OT: otsolve.sinkhorn vs POT (kernel `sinkhorn`, log-domain `sinkhorn_log`) vs GeomLoss
(tensorized, CPU), same data, one process.

    python benchmarks/bench_sinkhorn.py            # n = 1000, 5000; reg = 1e-1, 1e-2, 1e-3; 100k clouds
    python benchmarks/bench_sinkhorn.py --quick    # n = 500, 1000, a smoke run
    python benchmarks/bench_sinkhorn.py --no-big   # skip the n = m = 100,000 point-cloud iteration
    python benchmarks/bench_sinkhorn.py --issue16 [--sizes 256 1000 5000]   # the tables of issue 16:
        small reg (1e-3, 3e-4, 1e-4 of max C) at tol 1e-9 with the mat-vec unit, small n against
        POT, the GAN loss against GeomLoss, and the first solve after a BLAS call
    python benchmarks/bench_sinkhorn.py --large [--large-sizes 10000 30000 100000] [--no-peers]
        issue 16 item 4: sinkhorn_points with kernel truncation on uniform-in-square and Gaussian
        clouds at reg 1e-3 x diameter^2, tol 1e-6 (then POT and GeomLoss at n = 10,000)

Data: two 2-D Gaussian clouds (the second shifted and stretched), squared Euclidean cost scaled to
max 1, so reg is relative to the largest cost; uniform weights. Every solver stops on the marginals
at TOL: otsolve on the L1 error, POT on the L2 norm of the column error (checked every 10
iterations, a looser rule). GeomLoss has no tolerance: it runs its annealing schedule
(scaling = 0.5, one symmetric update per level) then stops; its cost is |x - y|^2 / 2 with
eps = blur^2, so we give it the points times sqrt(2) / sqrt(max cost) and blur = sqrt(reg).
All final errors are recomputed here from the returned plans (L1, max of rows and columns).
POT's sinkhorn_log costs ~0.7 s per iteration at n = 5000: there it runs LOG_CAP iterations and its
total time is extrapolated to the iteration count of POT's kernel version (same algorithm, same
rule) when that converged, else to otsolve's count without relaxation (marked "~").
"""
from __future__ import annotations

import argparse
import math
import re
import resource
import time
import tracemalloc
import warnings

import numba
import numpy as np
import ot
import psutil

import otsolve
from otsolve.entropic import _kernels
from otsolve._threads import threads_for
from otsolve.entropic._problem import NO_KERNEL, MatrixCost
from otsolve.bench.measure import timed
from otsolve.bench.report import print_table as table
from otsolve.cli import demo_clouds as clouds

TOL = 1e-6
LOG_CAP = 8          # POT sinkhorn_log iterations timed at n >= 5000
MAX_ITER = 20_000
POT_MAX_ITER = 5_000  # POT kernel: it does not reach TOL at small reg, cap its run time


def l1_error(P, a, b):
    if P is None or not np.isfinite(P).all():
        return math.nan
    return max(np.abs(P.sum(1) - a).sum(), np.abs(P.sum(0) - b).sum())


def run_otsolve(C, a, b, reg):
    start = time.perf_counter()
    res = otsolve.sinkhorn(C, a, b, reg=reg, tol=TOL, max_iter=MAX_ITER)
    return time.perf_counter() - start, res.n_iter, l1_error(res.plan, a, b), res.value_linear


def run_pot(C, a, b, reg, method, cap=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        P, log = ot.sinkhorn(a, b, C, reg, method=method, stopThr=TOL, numItermax=cap or POT_MAX_ITER,
                             log=True)
        elapsed = time.perf_counter() - start
    return elapsed, int(log["niter"]), l1_error(P, a, b), float(np.nansum(P * C))


def run_geomloss(x, y, scale, a, b, reg, C):
    import torch
    from geomloss import SamplesLoss
    xs, ys = (torch.tensor(z * math.sqrt(2.0 / scale)) for z in (x, y))
    at, bt = torch.tensor(a), torch.tensor(b)
    loss = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(reg), scaling=0.5, debias=False,
                       potentials=True, backend="tensorized")
    start = time.perf_counter()
    F, G = loss(at, xs, bt, ys)
    elapsed = time.perf_counter() - start
    F, G = F.numpy().ravel(), G.numpy().ravel()
    P = a[:, None] * b[None, :] * np.exp((F[:, None] + G[None, :] - C) / reg)
    diameter = math.sqrt((np.ptp(np.concatenate([x, y]), axis=0) ** 2).sum() * 2.0 / scale)
    levels = 2 + max(0, math.ceil(math.log2(diameter / math.sqrt(reg))))  # its eps schedule
    return elapsed, levels, l1_error(P, a, b), float((P * C).sum())


def iteration_floor(C, repeats=3):
    """One np.exp pass over C vs one otsolve iteration (a soft-min over the rows of C, one over
    its columns): in the log domain (2 n m exponentials) and with the kept kernel (2 mat-vecs)."""
    n, m = C.shape
    buf = np.empty_like(C)
    h_m, h_n = np.full(m, -math.log(m)), np.full(n, -math.log(n))
    lse_n, lse_m = np.zeros(n), np.zeros(m)
    cost = MatrixCost(C)

    def log_iteration():
        _kernels.softmin_rows(C, n, h_m, 100.0, lse_n, NO_KERNEL)
        _kernels.softmin_cols(C, h_n, 100.0, lse_m, NO_KERNEL)

    def kernel_iteration():
        cost.softmin(0, h_m, 100.0, lse_n)
        cost.softmin(1, h_n, 100.0, lse_m)

    times = {}
    with threads_for(C.size):  # otsolve's own thread policy
        for name, fn in (("exp", lambda: np.exp(C, out=buf)), ("log", log_iteration),
                         ("kernel", kernel_iteration)):
            fn()  # the kernel is built here
            times[name] = min(timed(fn)[0] for _ in range(repeats))
    return times["exp"], times["log"], times["kernel"]


def fmt(t, it, err):
    return f"{t:.3g}", str(it), f"{err:.1e}"


def bench_matrix(n, regs):
    x, y = clouds(n)
    C = ot.dist(x, y)
    scale = C.max()
    C /= scale
    a = b = np.full(n, 1.0 / n)
    rows = []
    for reg in regs:
        ours = run_otsolve(C, a, b, reg)
        kernel = run_pot(C, a, b, reg, "sinkhorn")
        cap = LOG_CAP if n >= 5000 else None
        log = run_pot(C, a, b, reg, "sinkhorn_log", cap)
        log_note = ""
        if cap:
            per_it = log[0] / max(log[1], 1)
            ok = kernel[2] <= 10 * TOL
            if ok:
                target = kernel[1]
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    target = otsolve.sinkhorn(C, a, b, reg=reg, tol=TOL, max_iter=MAX_ITER).n_iter
            log = (per_it * target, target, math.nan, log[3])
            log_note = "" if ok else "~"
        geom = run_geomloss(x, y, scale, a, b, reg, C)
        rows.append((n, reg, *fmt(*ours[:3]), *fmt(*kernel[:3]), log_note + f"{log[0]:.3g}", log[1],
                     f"{log[2]:.1e}", *fmt(*geom[:3]),
                     f"{kernel[0] / ours[0]:.2f}", f"{log[0] / ours[0]:.1f}", f"{geom[0] / ours[0]:.2f}",
                     f"{abs(ours[3] - kernel[3]) / ours[3]:.1e}"))
    return rows


def bench_points(n):
    """One iteration (a pass over rows, one over columns) on n = m points in 2-D, the costs
    recomputed in the kernel: memory O(n + m)."""
    from otsolve.entropic._problem import PointCost
    x, y = clouds(n)
    process = psutil.Process()
    base = process.memory_info().rss
    cost = PointCost(x, y, 0, 2.0)  # squared Euclidean
    a = np.full(n, 1.0 / n)
    f, g = np.zeros(n), np.zeros(n)
    lse_f, lse_g = np.zeros(n), np.zeros(n)
    reg = 1e-2 * cost.scale
    start = time.perf_counter()
    cost.softmin(0, np.log(a) + g / reg, 1.0 / reg, lse_f)
    f = -reg * lse_f
    cost.softmin(1, np.log(a) + f / reg, 1.0 / reg, lse_g)
    elapsed = time.perf_counter() - start
    extra = (process.memory_info().rss - base) / 2**20
    print(f"\nPoint clouds n = m = {n} in 2-D, squared Euclidean, reg = 1e-2 x diameter^2: one "
          f"iteration (2 x {n}^2 costs and exps) {elapsed:.1f} s; resident memory +{extra:.0f} MiB "
          f"(the cost matrix alone would need {n * n * 8 / 2**30:.0f} GiB); "
          f"potentials finite: {bool(np.isfinite(lse_f).all() and np.isfinite(lse_g).all())}")


SMALL_REG_TOL = 1e-9   # the default tol (L1, relative to the mass)
UNIT_ITERS = 1000      # the issue's unit: this many iterations of two numpy mat-vecs


def matvec_unit(n):
    """Seconds of UNIT_ITERS iterations of two numpy mat-vecs (K v, K^T u) with an n x n kernel."""
    K, v = np.random.default_rng(0).random((n, n)), np.ones(n)
    with threads_for(n * n):  # as the solver runs them (BLAS on one thread)
        t, _ = timed(lambda: [(K @ v, v @ K) for _ in range(20)], repeats=3)
    return t / 20 * UNIT_ITERS


def bench_small_reg(sizes):
    rows = []
    for n in sizes:
        x, y = clouds(n)
        C = ot.dist(x, y)
        C /= C.max()
        a = np.full(n, 1.0 / n)
        unit = matvec_unit(n)
        for rel in (1e-3, 3e-4, 1e-4):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                otsolve.sinkhorn(C, a, a, reg=rel)  # compiles (or loads) the Newton kernels
                t, res = timed(lambda: otsolve.sinkhorn(C, a, a, reg=rel), repeats=3)
                start = time.perf_counter()
                P, log = ot.sinkhorn(a, a, C, rel, stopThr=SMALL_REG_TOL, numItermax=POT_MAX_ITER, log=True)
                t_pot = time.perf_counter() - start
            rows.append((n, f"{rel:g}", res.status.name, res.n_iter, f"{l1_error(res.plan, a, a):.1e}",
                         f"{t:.3g}", f"{unit:.3g}", f"{t / unit:.2f}", f"{t_pot:.3g}", int(log["niter"]),
                         f"{l1_error(P, a, a):.1e}", f"{t_pot / t:.2f}"))
    table(f"Small reg, tol {SMALL_REG_TOL:g} (L1 marginal error recomputed from the plan; times in s; "
          f"unit = {UNIT_ITERS} iterations of two numpy mat-vecs; otsolve median of 3; POT kernel capped at {POT_MAX_ITER} its)",
          ("n", "reg/maxC", "status", "its", "err", "otsolve", "unit", "ots/unit", "POT", "its", "err",
           "POT/ots"), rows)


def bench_small_n():
    """One solve at n = 64..512 against POT's kernel and log-domain Sinkhorn, all at stopThr /
    tol 1e-9 (POT: L2 norm of the column error, checked every 10 iterations; otsolve: L1 of the
    rows, its own rule, met on the returned plan)."""
    rows = []
    for n in (64, 128, 256, 512):
        x, y = clouds(n)
        C = ot.dist(x, y)
        C /= C.max()
        a = np.full(n, 1.0 / n)
        for rel in (0.05, 0.2, 1.0):
            reg = rel * C.mean()

            def ours():
                return otsolve.sinkhorn(C, a, a, reg=reg, tol=SMALL_REG_TOL)

            def pot(method):
                return ot.sinkhorn(a, a, C, reg, method=method, stopThr=SMALL_REG_TOL, numItermax=100_000,
                                   log=True)
            ours(), pot("sinkhorn")
            t_o, res = timed(ours, repeats=9)
            t_p, (P, log) = timed(lambda: pot("sinkhorn"), repeats=9)
            t_l, (P_l, log_l) = timed(lambda: pot("sinkhorn_log"), repeats=3)
            rows.append((n, f"{rel:g}", f"{t_o * 1e3:.2f}", res.n_iter, f"{l1_error(res.plan, a, a):.1e}",
                         f"{t_p * 1e3:.2f}", int(log["niter"]), f"{l1_error(P, a, a):.1e}", f"{t_p / t_o:.2f}",
                         f"{t_l * 1e3:.1f}", int(log_l["niter"]), f"{t_l / t_o:.1f}"))
    table(f"Small problems, tol {SMALL_REG_TOL:g} (median ms of 9, POT log of 3; reg relative to the mean cost)",
          ("n", "reg/meanC", "otsolve", "its", "err", "POT", "its", "err", "POT/ots", "POT log", "its",
           "log/ots"), rows)


def bench_gan(reg=0.05):
    import torch
    from geomloss import SamplesLoss
    from otsolve.gan import ot_loss

    def ours(x, y, method, **options):
        x = x.clone().requires_grad_(True)
        loss = ot_loss(x, y, method=method, p=2, reg=reg, **options)
        loss.backward()
        return loss.item(), x.grad

    def geom(x, y, debias):  # its cost is |x - y|^2 / 2, eps = blur^2: value and gradient times 2
        x = x.clone().requires_grad_(True)
        loss = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(reg / 2), debias=debias, backend="tensorized")(x, y)
        loss.backward()
        return 2 * loss.item(), 2 * x.grad

    rows = []
    gen = torch.Generator().manual_seed(0)
    for n in (64, 256, 512, 1024):
        x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
        y = torch.randn(n, 2, generator=gen, dtype=torch.float64) + 1.0
        for method, debias in (("sinkhorn", False), ("sinkhorn_divergence", True)):
            ours(x, y, method), geom(x, y, debias)
            t_o, (v_o, g_o) = timed(lambda: ours(x, y, method), repeats=5)
            t_g, (v_g, g_g) = timed(lambda: geom(x, y, debias), repeats=5)
            v_t, g_t = ours(x, y, method, tol=1e-12)
            scale = g_t.norm().item()
            rows.append((n, method, f"{t_o * 1e3:.1f}", f"{t_g * 1e3:.1f}", f"{t_g / t_o:.2f}",
                         f"{abs(v_o - v_t) / abs(v_t):.1e}", f"{(g_o - g_t).norm().item() / scale:.1e}",
                         f"{abs(v_g - v_t) / abs(v_t):.1e}", f"{(g_g - g_t).norm().item() / scale:.1e}"))
    table(f"GAN loss, p = 2, reg = {reg} (GeomLoss blur = sqrt(reg / 2)), float64 CPU, forward + backward "
          "(median ms of 5); errors relative to otsolve at tol 1e-12 (gradient: L2 norm)",
          ("n", "method", "otsolve", "GeomLoss", "geom/ots", "value err", "grad err", "geom value err",
           "geom grad err"), rows)


def bench_after_blas(n=1000):
    """The first solve after a BLAS call (its worker threads still spinning) vs a steady one."""
    x, y = clouds(n)
    C = ot.dist(x, y)
    C /= C.max()
    big = np.random.default_rng(0).random((2000, 2000))
    otsolve.sinkhorn(C, reg=0.01)
    rows = []
    for label, before in (("steady", lambda: None), ("after big @ big", lambda: big @ big),
                          ("after x @ y.T", lambda: x @ y.T)):
        times = []
        for _ in range(3):
            before()
            start = time.perf_counter()
            otsolve.sinkhorn(C, reg=0.01)
            times.append(time.perf_counter() - start)
        rows.append((n, label, f"{min(times):.3g}", f"{max(times):.3g}"))
    table("The solve after a BLAS call (s, min and max of 3; reg 0.01 x max C)",
          ("n", "before the solve", "min", "max"), rows)


LARGE_TOL = 1e-6      # issue 16 item 4: L1 marginal error, relative to the mass
LARGE_REG = 1e-3      # times the squared diameter of the clouds
PEER_N = 10_000       # POT and GeomLoss on the dense 10^4 x 10^4 problem (0.8 GB a matrix)


def large_clouds(n, kind, seed=0):
    """Uniform in the unit square, or the Gaussian clouds of the other tables."""
    if kind == "uniform":
        rng = np.random.default_rng(seed)
        return rng.random((n, 2)), rng.random((n, 2))
    return clouds(n, seed=seed)


def bench_large_clouds(sizes, peers):
    """sinkhorn_points on n = m points at reg = LARGE_REG x diameter^2, tol LARGE_TOL (kernel
    truncation is automatic above 2048^2 pairs): wall and CPU time, iterations (the coarse
    2048-cluster solve included), peak memory (tracemalloc: numpy arrays; and the process's
    peak resident size, which includes Python, Numba and the libraries), the certified bound of
    the mass skipped and the marginal error (of the kept pairs plus that bound)."""
    rows, peer_rows = [], []
    for kind in ("uniform", "gauss"):
        for n in sizes:
            x, y = large_clouds(n, kind)
            both = np.concatenate([x, y])
            reg = LARGE_REG * float(np.sum(np.ptp(both, axis=0) ** 2))
            tracemalloc.start()
            wall, cpu = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = otsolve.sinkhorn_points(x, y, reg=reg, tol=LARGE_TOL, max_iter=MAX_ITER)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
            skipped = re.search(r"hold at most (\S+) of the mass", res.message)
            rows.append((kind, n, f"{reg:.3g}", str(res.status), res.n_iter, f"{wall:.1f}", f"{cpu:.1f}",
                         f"{wall / max(res.n_iter, 1):.3f}", f"{peak:.0f}", f"{rss:.0f}",
                         skipped.group(1) if skipped else "-", f"{res.marginal_error:.1e}"))
            print("  done:", *rows[-1], flush=True)  # a long run: each row as soon as it is measured
            if peers and n == PEER_N:
                peer_rows.append((kind, n, res.n_iter, wall, x, y, reg))
    table(f"Point clouds, reg = {LARGE_REG:g} x diameter^2, tol {LARGE_TOL:g}: sinkhorn_points "
          "(automatic kernel truncation); wall and CPU s; MiB", ("data", "n", "reg", "status", "its", "wall",
                                                                 "cpu", "s/it", "numpy peak", "peak RSS",
                                                                 "skipped mass", "L1 err"), rows)
    if peer_rows:
        bench_large_peers(peer_rows)


def bench_large_peers(runs):
    """POT's log-domain Sinkhorn (LOG_CAP iterations timed, its time extrapolated to otsolve's
    iteration count: '~') and GeomLoss (tensorized, its fixed annealing schedule) on the dense
    problem, same data and reg as the otsolve row."""
    rows = []
    for kind, n, its, wall, x, y, reg in runs:
        C = ot.dist(x, y)
        a = np.full(n, 1.0 / n)
        t_log, n_log, _, _ = run_pot(C, a, a, reg, "sinkhorn_log", cap=LOG_CAP)
        per_it = t_log / max(n_log, 1)
        t_geo, levels, err_geo, _ = run_geomloss(x, y, float(C.max()), a, a, reg, C)
        rows.append((kind, n, f"{wall:.1f}", its, f"{per_it:.2f}", f"~{per_it * its:.0f}", f"{per_it * its / wall:.0f}",
                     f"{t_geo:.1f}", levels, f"{err_geo:.1e}", f"{t_geo / wall:.2f}"))
        del C
    table("The same problems on peers (s): POT sinkhorn_log per iteration and extrapolated to otsolve's "
          "iteration count, GeomLoss tensorized CPU (no tolerance: its L1 error)",
          ("data", "n", "otsolve", "its", "POT log s/it", "POT log", "POT/ots", "GeomLoss", "levels", "err",
           "geom/ots"), rows)


def issue16(sizes):
    bench_small_reg(sizes)
    bench_small_n()
    bench_gan()
    bench_after_blas()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-big", action="store_true")
    parser.add_argument("--issue16", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1000, 5000])
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--large-sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    if args.large:  # compile (or load) the truncated kernels outside the measurements
        otsolve.sinkhorn_points(*large_clouds(300, "uniform"), reg=1e-3, truncate=True)
        bench_large_clouds(args.large_sizes, peers=not args.no_peers)
        return
    if args.issue16:
        otsolve.sinkhorn(np.array([[0.0, 1.0], [1.0, 0.0]]), reg=0.1)
        issue16(args.sizes)
        return
    sizes = (500, 1000) if args.quick else (1000, 5000)
    regs = (1e-1, 1e-2, 1e-3)
    start = time.perf_counter()
    otsolve.sinkhorn(np.array([[0.0, 1.0], [1.0, 0.0]]), reg=0.1)
    otsolve.sinkhorn_points(np.zeros((2, 2)), np.ones((2, 2)), reg=0.1)
    print(f"first calls (Numba compilation or cache load): {time.perf_counter() - start:.2f} s; "
          f"Numba threads: {numba.get_num_threads()}")
    rows = []
    for n in sizes:
        rows += bench_matrix(n, regs)
    table(f"Sinkhorn to L1 marginal error {TOL:g} (times in s; err = final L1 marginal error)",
          ("n", "reg", "otsolve", "its", "err", "POT", "its", "err", "POT log", "its", "err",
           "GeomLoss", "levels", "err", "POT/ots", "log/ots", "geom/ots", "|lin-POT|"), rows)
    floor_rows = []
    for n in sizes:
        x, y = clouds(n)
        C = ot.dist(x, y)
        C /= C.max()
        t_exp, t_log, t_kernel = iteration_floor(C)
        floor_rows.append((n, f"{t_exp * 1e3:.1f}", f"{t_log * 1e3:.1f}", f"{t_log / t_exp:.2f}",
                           f"{t_kernel * 1e3:.1f}", f"{t_kernel / t_exp:.2f}"))
    table("One np.exp pass over C (the floor) vs one otsolve iteration (ms): log domain (2 n m "
          "exponentials), kept kernel (2 mat-vecs)", ("n", "np.exp", "log-domain", "ratio",
                                                        "kernel", "ratio"), floor_rows)
    if not args.no_big and not args.quick:
        bench_points(100_000)


if __name__ == "__main__":
    main()
