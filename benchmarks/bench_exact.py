"""Exact OT: otsolve vs POT's C++ network simplex (ot.emd) vs SciPy's HiGHS, same data, one process.

    python benchmarks/bench_exact.py            # one pair 100..1000, dense 500..5000, lazy, warm starts, batch
    python benchmarks/bench_exact.py --large    # adds dense 10000 and lazy 50000
    python benchmarks/bench_exact.py --quick    # small sizes, a smoke run
    python benchmarks/bench_exact.py --multiscale [--large] [--stretch]   # only the multiscale clouds and grids
        (--large: clouds to n = 100,000, grids to 128x128 with POT on GRID_POT_CLASSES_128;
         --stretch: 256x256 grids, otsolve only)
    python benchmarks/bench_exact.py --grids128   # only the 128x128 grids with POT (its 2 GiB matrix; long)

Data: two 2-D Gaussian clouds (the second shifted and stretched), squared Euclidean cost scaled to
[0, 1]. Times are wall-clock medians; the first otsolve call (Numba compilation, cached to disk
afterwards) is timed apart. A fast wrong answer is no win: each row shows the value difference.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import scipy.optimize

import otsolve
from otsolve.lp import exact_points
from otsolve.bench import problems
from otsolve.lp.grid import solve_grid
from otsolve.lp.multiscale import solve_multiscale
from otsolve.bench.measure import PeakMemory, timed
from otsolve.bench.report import print_table as table
from otsolve.bench.solvers import highs_value
from otsolve.cli import demo_clouds as clouds


def highs(C):
    """The optimal value of the uniform-weight LP by HiGHS (the harness's own LP oracle)."""
    n, m = C.shape
    return highs_value(problems.Problem("clouds", "dense", n, np.full(n, 1 / n), np.full(m, 1 / m), cost=C))[0]


def bench_dense(sizes, highs_max):
    rows = []
    for n in sizes:
        x, y = clouds(n)
        C = otsolve.cost_matrix(x, y)
        C /= C.max()
        repeats = 3 if n <= 2000 else 1
        t_ours, res = timed(lambda: otsolve.exact(C), repeats)
        t_pot, pot_value = timed(lambda: ot.emd2([], [], C, numItermax=10**10), repeats)
        t_highs, highs_value = timed(lambda: highs(C)) if n <= highs_max else (float("nan"), float("nan"))
        rows.append((n, f"{t_ours:.3f}", f"{t_pot:.3f}", f"{t_highs:.3f}", f"{t_ours / t_pot:.2f}",
                     f"{res.value - pot_value:.1e}", f"{res.value - highs_value:.1e}", res.n_iter,
                     f"{res.duality_gap:.0e}", f"{res.max_dual_violation:.0e}"))
    table("dense exact OT, uniform weights (the assignment path; seconds; ratio = otsolve / POT)",
          ["n", "otsolve", "POT emd", "HiGHS", "ratio", "value-POT", "value-HiGHS", "paths", "gap",
           "dual viol."], rows)


SIMPLEX_ONLY = 10**12  # a pivot budget never reached: otsolve.exact then runs its simplex


def bench_assignment(sizes):
    """Single pairs of 2-D clouds with uniform weights (an assignment problem): otsolve.exact
    (assignment path) vs its simplex vs POT's ot.emd vs SciPy's linear_sum_assignment; then
    random weights (no assignment: the simplex) vs POT."""
    rows, weighted = [], []
    rng = np.random.default_rng(4)
    for n in sizes:
        x, y = clouds(n)
        C = otsolve.cost_matrix(x, y)
        repeats = 5 if n <= 1000 else 1
        t_ours, res = timed(lambda: otsolve.exact(C), repeats)
        t_simplex, simplex = timed(lambda: otsolve.exact(C, max_iter=SIMPLEX_ONLY), repeats)
        t_pot, pot_value = timed(lambda: ot.emd2([], [], C, numItermax=10**10), repeats)
        t_lsa, lsa_value = timed(lambda: C[scipy.optimize.linear_sum_assignment(C)].mean(), repeats)
        rows.append((n, f"{1e3 * t_ours:.1f}", f"{1e3 * t_simplex:.1f}", f"{1e3 * t_pot:.1f}", f"{1e3 * t_lsa:.1f}",
                     f"{t_simplex / t_ours:.2f}", f"{t_pot / t_ours:.2f}", f"{t_lsa / t_ours:.2f}",
                     f"{max(abs(res.value - lsa_value), abs(simplex.value - lsa_value)):.0e}", str(res.status)))
        a, b = rng.random(n) + 0.1, rng.random(n) + 0.1
        a, b = a / a.sum(), b / b.sum()
        t_w, res_w = timed(lambda: otsolve.exact(C, a, b), repeats)
        t_wpot, pot_w = timed(lambda: ot.emd2(a, b, C, numItermax=10**10), repeats)
        weighted.append((n, f"{1e3 * t_w:.1f}", f"{1e3 * t_wpot:.1f}", f"{t_wpot / t_w:.2f}",
                         f"{res_w.value - pot_w:.0e}"))
    table("one pair, uniform weights, n = m (ms; x = time of the peer / time of otsolve.exact)",
          ["n", "otsolve", "its simplex", "POT emd", "SciPy lsa", "x simplex", "x POT", "x SciPy", "value diff",
           "status"], rows)
    table("one pair, random weights (the simplex; ms)", ["n", "otsolve", "POT emd", "x POT", "value-POT"], weighted)


def bench_lazy(sizes, pot_max):
    rows = []
    for n in sizes:
        x, y = clouds(n)
        with PeakMemory() as mem:
            t_ours, res = timed(lambda: exact_points(x, y, None, None, p=2, metric="euclidean"))
        if n <= pot_max:
            with PeakMemory() as pot_mem:
                t_pot, pot_value = timed(lambda: float(ot.emd2_lazy(x, y, numItermax=10**10,
                                                                     return_matrix=False)))
            pot = (f"{t_pot:.1f}", f"{pot_mem.mib:.0f}", f"{t_ours / t_pot:.2f}", f"{res.value - pot_value:.1e}")
        else:
            pot = ("-", "-", "-", "-")
        dense_gib = n * n * 8 / 2**30
        rows.append((n, f"{t_ours:.1f}", f"{mem.mib:.0f}", *pot, f"{dense_gib:.1f}", res.n_iter))
    table("lazy exact OT on point clouds, costs on the fly (seconds, peak MiB above baseline)",
          ["n", "otsolve", "MiB", "POT emd2_lazy", "MiB", "ratio", "value diff", "dense C would be GiB",
           "pivots"], rows)


def bench_warm(n):
    x, y = clouds(n)
    C = otsolve.cost_matrix(x, y)
    C /= C.max()
    rng = np.random.default_rng(1)
    C2 = C * (1 + 0.01 * rng.random(C.shape))  # a perturbed problem, e.g. the next GAN step
    base = otsolve.exact(C)
    reg = 1e-2
    pot = ot.sinkhorn(np.full(n, 1 / n), np.full(n, 1 / n), C2, reg, method="sinkhorn_log", log=True)[1]
    starts = {"exact duals of the unperturbed problem": base.potentials,
              f"Sinkhorn duals (reg={reg})": (reg * pot["log_u"], reg * pot["log_v"])}
    t_cold, cold = timed(lambda: otsolve.exact(C2, max_iter=SIMPLEX_ONLY), 3)  # warm starts are the simplex's
    t_assign, assign = timed(lambda: otsolve.exact(C2), 3)
    rows = [("cold simplex", f"{t_cold:.3f}", cold.n_iter, "1.00", "0"),
            ("cold, assignment path (augmenting paths)", f"{t_assign:.3f}", assign.n_iter, f"{t_cold / t_assign:.2f}",
             f"{assign.value - cold.value:.0e}")]
    for name, start in starts.items():
        t, res = timed(lambda: otsolve.exact(C2, warm_start=start), 3)
        rows.append((name, f"{t:.3f}", res.n_iter, f"{t_cold / t:.2f}", f"{res.value - cold.value:.0e}"))
    table(f"warm start, perturbed problem n={n}", ["start", "seconds", "pivots", "speed-up", "value diff"], rows)


def bench_batch(k, n):
    rng = np.random.default_rng(2)
    Cs = rng.random((k, n, 2))
    Cs = np.stack([otsolve.cost_matrix(c, rng.normal(size=(n, 2))) for c in Cs])
    t_ours, res = timed(lambda: otsolve.exact_batch(Cs), 3)
    t_pot, pot_values = timed(lambda: [ot.emd2([], [], C) for C in Cs], 3)
    t_loop, _ = timed(lambda: [otsolve.exact(C) for C in Cs], 3)
    diff = max(abs(r.value - v) for r, v in zip(res, pot_values))
    table(f"batch of {k} problems of n={n}", ["otsolve exact_batch", "POT emd loop", "otsolve exact loop",
                                              "ratio batch/POT", "max value diff"],
          [(f"{t_ours:.3f}", f"{t_pot:.3f}", f"{t_loop:.3f}", f"{t_ours / t_pot:.2f}", f"{diff:.0e}")])


def phases(stats):
    return "/".join(f"{stats.seconds[k]:.1f}" for k in ("hierarchy", "candidates", "simplex", "pricing",
                                                          "certificate"))


def bench_multiscale(sizes, pot_max):
    """Multiscale exact solver vs POT's dense emd2 on the same clouds (sq. Euclidean, unscaled)."""
    rows, times = [], []
    for n in sizes:
        x, y = clouds(n)
        with PeakMemory() as mem:
            t_ours, (res, stats) = timed(lambda: solve_multiscale(x, y))
        times.append(t_ours)
        pot = ("-", "-", "-")
        if n <= pot_max:
            C = otsolve.cost_matrix(x, y)
            t_pot, pot_value = timed(lambda: ot.emd2([], [], C, numItermax=10**10))
            del C
            pot = (f"{t_pot:.1f}", f"{t_ours / t_pot:.3f}", f"{res.value - pot_value:.1e}")
        rows.append((n, f"{t_ours:.1f}", *pot, f"{mem.mib:.0f}", len(stats.sizes), stats.arcs[-1], sum(stats.pivots),
                     stats.rounds[-1], phases(stats), f"{res.max_dual_violation:.0e}", str(res.status)))
    table("multiscale exact OT on 2-D clouds (seconds; ratio = otsolve / POT dense emd2, same data)",
          ["n", "otsolve", "POT emd2", "ratio", "value-POT", "MiB", "levels", "arcs kept", "pivots",
           "rounds", "phases h/c/s/p/cert", "dual viol.", "status"], rows)
    if len(sizes) > 1:
        slope = np.polyfit(np.log(sizes), np.log(times), 1)[0]
        print(f"scaling exponent of the multiscale time in n (least squares, log-log): {slope:.2f}")


def bench_grids(resolutions, kinds, pot_max, pot_kinds=None, points_max=None):
    """wasserstein_grid's multiscale solve (grid hierarchy) vs the same grids as point clouds
    (k-d hierarchy) vs POT's dense emd2, on DOTmark-like image pairs (otsolve.bench.problems),
    squared Euclidean cost on the unit square. POT runs once per class up to ``pot_max`` (for
    ``pot_kinds`` at that size: its cost matrix is 2 GiB at 128x128)."""
    rows, times = [], {}
    for res in resolutions:
        for kind in kinds:
            problem = problems.grid_pair(kind, res)
            A, B = problem.a.reshape(res, res), problem.b.reshape(res, res)
            repeats = 3 if res <= 64 else 1
            t_grid, (out, stats) = timed(lambda: solve_grid(A, B, spacing=1.0 / res), repeats)
            times.setdefault(kind, []).append(t_grid)
            old = ("-", "-")
            if points_max is None or res <= points_max:
                t_points, _ = timed(lambda: solve_multiscale(problem.x, problem.y, problem.a, problem.b), repeats)
                old = (f"{t_points:.2f}", f"{t_grid / t_points:.2f}")
            pot = ("-", "-", "-")
            if res < pot_max or (res == pot_max and (pot_kinds is None or kind in pot_kinds)):
                C = otsolve.cost_matrix(problem.x, problem.y)
                t_pot, pot_value = timed(lambda: ot.emd2(problem.a, problem.b, C, numItermax=10**10),
                                         repeats if res <= 64 else 1)
                del C
                pot = (f"{t_pot:.1f}", f"{t_grid / t_pot:.3f}", f"{out.value - pot_value:.1e}")
            rows.append((f"{res}x{res}", kind, f"{t_grid:.2f}", *old, *pot, len(stats.sizes), stats.arcs[-1],
                         sum(stats.pivots), stats.rounds[-1], phases(stats), f"{out.max_dual_violation:.0e}",
                         str(out.status)))
            print(" | ".join(map(str, rows[-1])), flush=True)  # POT's rows at 128x128 take many minutes
    table("wasserstein_grid (multiscale on the grid hierarchy) on DOTmark-like images (seconds; "
          "points = the same grids as clouds, k-d hierarchy; POT = dense emd2; same data)",
          ["grid", "class", "grid", "points", "grid/points", "POT emd2", "grid/POT", "value-POT", "levels",
           "arcs kept", "pivots", "rounds", "phases h/c/s/p/cert", "dual viol.", "status"], rows)
    if len(resolutions) > 1:
        pixels = np.log(np.square(resolutions))
        slopes = {kind: np.polyfit(pixels, np.log(t), 1)[0] for kind, t in times.items()}
        print("scaling exponent of the grid time in the number of pixels (log-log, per class): "
              + ", ".join(f"{kind} {slope:.2f}" for kind, slope in slopes.items()))


GRID_CLASSES = ["whitenoise", "grf-rough", "grf-moderate", "grf-smooth", "loggrf", "cauchy", "shapes"]
GRID_POT_CLASSES_128 = ["whitenoise", "grf-moderate", "cauchy"]  # POT's 2 GiB matrix: a few classes only


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="add dense n=10000 and lazy n=50000")
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--multiscale", action="store_true", help="only the multiscale clouds and grids")
    parser.add_argument("--stretch", action="store_true", help="with --multiscale: 256x256 grids (otsolve only)")
    parser.add_argument("--grids128", action="store_true", help="only 128x128 grids, POT on GRID_POT_CLASSES_128")
    args = parser.parse_args()
    start = time.perf_counter()
    otsolve.exact(np.random.default_rng(0).random((30, 30)))
    exact_points(*clouds(30), None, None, p=2, metric="euclidean")
    otsolve.exact_batch(np.random.default_rng(0).random((2, 5, 5)))
    solve_multiscale(*clouds(600))
    otsolve.wasserstein_grid(np.ones((20, 20)), np.ones((20, 20)), multiscale=True)
    print(f"first calls (Numba compile or cache load): {time.perf_counter() - start:.1f} s")
    if args.grids128:
        bench_grids([128], GRID_POT_CLASSES_128, pot_max=128, points_max=0)
        return
    if args.multiscale:
        bench_multiscale([5000, 10000, 20000] + ([50000, 100000] if args.large else []), pot_max=10000)
        bench_grids([32, 64] + ([128] if args.large else []), GRID_CLASSES, pot_max=128 if args.large else 64,
                    pot_kinds=GRID_POT_CLASSES_128)
        if args.stretch:
            bench_grids([256], GRID_CLASSES, pot_max=0, points_max=128)
        return
    if args.quick:
        bench_multiscale([2000], pot_max=2000)
        bench_grids([16], GRID_CLASSES[:2], pot_max=16)
        bench_assignment([100, 300])
        bench_dense([100, 200], highs_max=200)
        bench_lazy([1000], pot_max=1000)
        bench_warm(300)
        bench_batch(32, 32)
        return
    bench_assignment([100, 300, 1000])
    bench_dense([200, 500, 1000, 2000, 5000] + ([10000] if args.large else []), highs_max=200)
    bench_lazy([10000, 20000] + ([50000] if args.large else []), pot_max=10000)
    bench_warm(2000)
    bench_batch(256, 64)
    bench_multiscale([5000, 10000, 20000] + ([50000] if args.large else []), pot_max=10000)
    bench_grids([32, 64] + ([128] if args.large else []), GRID_CLASSES, pot_max=128 if args.large else 64,
                pot_kinds=GRID_POT_CLASSES_128)


if __name__ == "__main__":
    main()
