"""Shared by the benchmark scripts: the data, a timer and a right-aligned text table."""
import statistics
import time

import numpy as np

from otsolve.cli import demo_clouds


def clouds(n, m=None, seed=0):
    """Two 2-D Gaussian clouds of n and m (default n) points, the second shifted and stretched:
    the data of ``otsolve demo`` (one generator for both)."""
    return demo_clouds(n, seed, m)


def timed(fn, repeats=1):
    """(median seconds of ``repeats`` calls of fn, its last output)."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def table(title, header, rows):
    """Print ``rows`` under ``header``, each column as wide as its widest cell."""
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(str(r[k])) for r in rows)) for k, h in enumerate(header)]
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)), flush=True)


def collection(k, n, seed=0):
    """k 2-D clouds of n points from three families: round, stretched and shifted Gaussians."""
    rng = np.random.default_rng(seed)
    scale = np.array([[1.0, 1.0], [1.5, 0.5], [1.0, 1.0]])
    shift = np.array([[0.0, 0.0], [0.0, 0.0], [2.0, 1.0]])
    return [rng.normal(size=(n, 2)) * scale[t % 3] + shift[t % 3] for t in range(k)]
