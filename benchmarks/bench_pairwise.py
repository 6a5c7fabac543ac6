"""Many problems at once: K x K W2 matrices and 1-D W_p at n = 10^6, otsolve vs its peers.

    python benchmarks/bench_pairwise.py            # K = 60 clouds of 300 points, n = 10^6 on the line
    python benchmarks/bench_pairwise.py --quick    # K = 12, n = 10^5: a smoke run
    python benchmarks/bench_pairwise.py --only sinkhorn   # one table (sinkhorn, exact or line)

Same process, same data. Pairwise rows: otsolve.pairwise locally (all Numba threads) and on a
2-worker Dask LocalCluster (one thread each), against a Python loop over POT's ot.emd2 (one
thread) and Komiske's ``wasserstein.PairwiseEMD`` (C++/OpenMP, 2 threads). PairwiseEMD's wheels need
numpy < 2, so it runs in its own environment, on the same data saved to a file:

    python -m venv /tmp/pemd && /tmp/pemd/bin/pip install "numpy<2" wasserstein==1.1.0
    python benchmarks/bench_pairwise.py --pairwise-emd-python /tmp/pemd/bin/python

The value gap is max |D - D_POT|. The first otsolve call (Numba compilation or cache load) is
timed apart.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import ot
import scipy.stats

import otsolve
from otsolve.bench.measure import timed
from otsolve.bench.problems import cloud_collection as collection
from otsolve.bench.report import print_table as table


def pot_loop(clouds):
    K = len(clouds)
    D = np.zeros((K, K))
    for i in range(K):
        for j in range(i + 1, K):
            D[i, j] = D[j, i] = np.sqrt(max(ot.emd2([], [], ot.dist(clouds[i], clouds[j])), 0.0))
    return D


PAIRWISE_EMD = """
import sys, time, numpy as np, wasserstein
data = np.load(sys.argv[1])
events = [np.hstack([np.full((len(x), 1), 1.0 / len(x)), x]) for x in (data[k] for k in sorted(data, key=int))]
emd = wasserstein.PairwiseEMD(beta=2.0, norm=True, num_threads=2, print_every=0)
emd(events[:2])  # warm-up
start, cpu = time.perf_counter(), time.process_time()
emd(events)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
np.save(sys.argv[2], np.sqrt(np.maximum(emd.emds(), 0.0)))
print(seconds, cpu)
"""


def pairwise_emd_run(python, clouds):
    """(seconds, CPU seconds, D) of wasserstein.PairwiseEMD (W2, 2 threads) run by another interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "clouds.npz", **{str(k): x for k, x in enumerate(clouds)})
        out = subprocess.run([python, "-c", PAIRWISE_EMD, str(Path(tmp) / "clouds.npz"), str(Path(tmp) / "D.npy")],
                             capture_output=True, text=True, check=True)
        seconds, cpu = map(float, out.stdout.split()[-2:])
        return seconds, cpu, np.load(Path(tmp) / "D.npy")


def timed_cpu(fn):
    """(seconds, CPU seconds of this process, all threads, output) of one call: on a shared
    machine the CPU time shows the work, the wall time also the other loads."""
    cpu = time.process_time()
    seconds, out = timed(fn)
    return seconds, time.process_time() - cpu, out


def dask_run(clouds):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        otsolve.pairwise(clouds[:4], client=client, chunk_size=1)  # every worker loads the Numba cache
        return timed(lambda: otsolve.pairwise(clouds, client=client).distances)


def pairwise_rows(K, n, emd_python=None):
    clouds = collection(K, n)
    start = time.perf_counter()
    otsolve.pairwise(clouds[:2])
    compile_s = time.perf_counter() - start
    t_pot, cpu_pot, D_pot = timed_cpu(lambda: pot_loop(clouds))
    t_local, cpu_local, D_local = timed_cpu(lambda: otsolve.pairwise(clouds).distances)
    rows = [["POT ot.emd2 loop", f"{t_pot:.2f}", f"{cpu_pot:.2f}", "1.00", "0"],
            [f"otsolve local ({numba.get_num_threads()} threads)", f"{t_local:.2f}", f"{cpu_local:.2f}",
             f"{t_pot / t_local:.2f}", f"{np.abs(D_local - D_pot).max():.1e}"]]
    if emd_python:
        t_emd, cpu_emd, D_emd = pairwise_emd_run(emd_python, clouds)
        rows.append(["wasserstein.PairwiseEMD (2 threads)", f"{t_emd:.2f}", f"{cpu_emd:.2f}", f"{t_pot / t_emd:.2f}",
                     f"{np.abs(D_emd - D_pot).max():.1e}"])
        rows[1][-1] += f" ({t_emd / t_local:.2f}x PairwiseEMD, CPU {cpu_emd / cpu_local:.2f}x)"
    try:
        t_dask, D_dask = dask_run(clouds)
        rows.append(["otsolve Dask LocalCluster (2 workers)", f"{t_dask:.2f}", "-", f"{t_pot / t_dask:.2f}",
                     f"{np.abs(D_dask - D_pot).max():.1e}" + (" (bits = local)" if (D_dask == D_local).all() else "")])
    except ImportError:
        rows.append(["otsolve Dask", "-", "-", "-", "needs the dask extra"])
    t_sliced, cpu_sliced, _ = timed_cpu(lambda: otsolve.pairwise(clouds, method="sliced", seed=0))
    rows.append(["otsolve sliced (64 directions; another distance)", f"{t_sliced:.2f}", f"{cpu_sliced:.2f}",
                 f"{t_pot / t_sliced:.1f}", "-"])
    table(f"K = {K} clouds of {n} 2-D points, {K * (K - 1) // 2} pairs, exact W2 "
          f"(otsolve compile/cache load {compile_s:.1f} s)", ["method", "seconds", "CPU s", "x POT", "value gap"],
          rows)


def sinkhorn_loop(clouds, solve):
    """The upper triangle, by one call of ``solve(x, y)`` a pair, mirrored."""
    K = len(clouds)
    D = np.zeros((K, K))
    for i in range(K):
        for j in range(i + 1, K):
            D[i, j] = D[j, i] = solve(clouds[i], clouds[j])
    return D


def sinkhorn_rows(K, n, quick=False):
    """Entropic W2 matrices (value <C, P>^(1/2) of the entropic plan, tol 1e-9 on the marginals):
    otsolve.pairwise (the batched kernel) vs the loop over otsolve.wasserstein it replaced vs a
    loop over POT's ot.sinkhorn2 (same stopping threshold). reg is absolute; the mean squared
    distance between two clouds is ~10, so 0.5 is ~0.05 of it and 0.05 ~0.005 (where pairs need
    the Newton phase of the per-pair solver: the kernel hands them to it)."""
    clouds = collection(K, n)
    rows = []
    for reg in (0.5, 0.05):
        otsolve.pairwise(clouds[:2], method="sinkhorn", reg=reg)  # compile / cache load
        t_loop, cpu_loop, D_loop = timed_cpu(lambda: sinkhorn_loop(
            clouds, lambda x, y: otsolve.wasserstein(x, y, method="sinkhorn", reg=reg).value))
        res = None

        def batched():
            nonlocal res
            res = otsolve.pairwise(clouds, method="sinkhorn", reg=reg)
            return res.distances
        t_ours, cpu_ours, D_ours = timed_cpu(batched)
        gap = np.abs(D_ours - D_loop).max() / D_loop.max()
        rows += [[f"{reg:g}", "otsolve.pairwise (batched)", f"{t_ours:.2f}", f"{cpu_ours:.2f}", "1.00",
                  f"{gap:.1e} (failures {len(res.failures)})"],
                 [f"{reg:g}", "loop over otsolve.wasserstein", f"{t_loop:.2f}", f"{cpu_loop:.2f}",
                  f"{t_loop / t_ours:.2f}", "0"]]
        if reg != 0.5 and not quick:  # POT's plain iterations take ~0.5 s a pair there (K = 12, n = 100)
            continue
        t_pot, cpu_pot, D_pot = timed_cpu(lambda: sinkhorn_loop(clouds, lambda x, y: np.sqrt(max(ot.sinkhorn2(
            [], [], ot.dist(x, y), reg, stopThr=1e-9, numItermax=10_000), 0.0))))
        rows.append([f"{reg:g}", "loop over POT ot.sinkhorn2", f"{t_pot:.2f}", f"{cpu_pot:.2f}",
                     f"{t_pot / t_ours:.2f}", f"{np.abs(D_pot - D_loop).max() / D_loop.max():.1e}"])
    table(f"K = {K} clouds of {n} 2-D points, {K * (K - 1) // 2} pairs, entropic W2 ({numba.get_num_threads()} "
          "threads)", ["reg", "method", "seconds", "CPU s", "x batched", "rel. gap to the loop"], rows)


def line_rows(n):
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=n), rng.normal(size=n) * 2 + 1
    w_u, w_v = rng.random(n), rng.random(n)
    w_u, w_v = w_u / w_u.sum(), w_v / w_v.sum()  # POT expects unit masses
    otsolve.wasserstein_1d(u[:10], v[:10], w_u[:10], w_v[:10], p=2)
    otsolve.wasserstein_1d(u[:10], v[:10])
    rows = []
    for label, weights, p in (("W1, uniform", (None, None), 1), ("W1, weighted", (w_u, w_v), 1),
                              ("W2, uniform", (None, None), 2)):
        t_ours, ours = timed(lambda: otsolve.wasserstein_1d(u, v, *weights, p=p), repeats=3)
        t_pot, pot = timed(lambda: ot.wasserstein_1d(u, v, *weights, p=p) ** (1 / p), repeats=3)
        row = [label, f"{t_ours:.3f}", f"{t_pot:.3f}", f"{t_pot / t_ours:.1f}", f"{abs(ours - pot):.1e}"]
        if p == 1:
            t_scipy, ref = timed(lambda: scipy.stats.wasserstein_distance(u, v, *weights), repeats=3)
            row += [f"{t_scipy:.3f}", f"{t_scipy / t_ours:.1f}", f"{abs(ours - ref):.1e}"]
        else:
            row += ["-", "-", "-"]
        rows.append(row)
    table(f"1-D, n = m = {n}", ["problem", "otsolve s", "POT s", "x POT", "gap POT", "SciPy s", "x SciPy",
                                "gap SciPy"], rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairwise-emd-python", default=None,
                        help="an interpreter with numpy < 2 and wasserstein 1.1.0 (PairwiseEMD's row)")
    parser.add_argument("--only", choices=("line", "exact", "sinkhorn"), default=None)
    args = parser.parse_args()
    if args.only in (None, "line"):
        line_rows(10**5 if args.quick else 10**6)
    if args.only in (None, "exact"):
        pairwise_rows(12 if args.quick else 60, 100 if args.quick else 300, args.pairwise_emd_python)
    if args.only in (None, "sinkhorn"):
        sinkhorn_rows(12 if args.quick else 60, 100 if args.quick else 300, args.quick)
