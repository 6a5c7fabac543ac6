"""Numba thread counts: small parallel regions can cost more to wake than their work."""
from __future__ import annotations

import contextlib
import time

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

PARALLEL_MIN_PAIRS = 4_000_000  # below this a pass takes a few ms on one thread, while waking
                                # the other threads can cost a scheduler time slice (~10 ms) per
                                # pass on a busy machine: small problems run on one thread


_blas = []  # the BLAS libraries numpy loaded (threadpoolctl), found at the first solve


def _blas_libraries():
    if not _blas:
        _blas.append(ThreadpoolController().select(user_api="blas"))
    return _blas[0]


@contextlib.contextmanager
def threads_for(pairs):
    """Run the enclosed kernels on one thread when a pass covers fewer than PARALLEL_MIN_PAIRS,
    and numpy's BLAS (the kept-kernel mat-vecs) on one thread always: BLAS workers still spinning
    after a call compete with Numba's threads on a small machine (a solve after ``x @ y.T`` took
    15-60x its time, and a 1000 x 1000 mat-vec 16 ms instead of 1.3 ms), and a mat-vec is
    bandwidth-bound. The libraries are looked up once and their thread counts set directly (a
    ctypes call each): threadpoolctl's ``limit`` context cost ~20 us, a tenth of a small solve."""
    blas = _blas_libraries().lib_controllers
    blas_before = [lib.get_num_threads() for lib in blas]
    before = numba.get_num_threads()
    try:
        for lib, threads in zip(blas, blas_before):
            if threads != 1:
                lib.set_num_threads(1)
        if pairs < PARALLEL_MIN_PAIRS:
            numba.set_num_threads(1)
        yield
    finally:
        numba.set_num_threads(before)
        for lib, threads in zip(blas, blas_before):
            if threads != 1:
                lib.set_num_threads(threads)


class MeasuredThreads:
    """Run the steps with all Numba threads or with one, whichever measured faster per step
    (the first step of a run is not timed: it may compile). A step is one small parallel
    region; on an oversubscribed machine its barrier can cost more than the work. Results do not
    depend on the choice: rows are independent and the update is serial."""

    MIN_STEPS = 3   # timed steps per setting before choosing
    REMEMBER = 30.0  # seconds a choice is reused by later runs with the same step size
    choices = {}     # (work per step, threads) -> (choice, time.monotonic() when measured)

    def __init__(self, work):
        self.most = numba.get_num_threads()
        self.spent = {self.most: [0.0, 0], 1: [0.0, 0]}
        self.key = (work, self.most)
        choice, when = self.choices.get(self.key, (None, -np.inf))
        self.choice = self.most if self.most == 1 else (
            choice if time.monotonic() - when < self.REMEMBER else None)
        self.warm = False

    def run(self, steps_of, k):
        """Call steps_of(lo, hi) for consecutive ranges covering range(k)."""
        lo = 0
        if not self.warm:
            with self.using():  # the remembered choice, if any: all threads may be slow here
                steps_of(0, 1)
            self.warm, lo = True, 1
        while lo < k and self.choice is None:
            threads = min(self.spent, key=lambda t: self.spent[t][1])
            hi = min(k, lo + self.MIN_STEPS)
            with self.using(threads):
                start = time.perf_counter()
                steps_of(lo, hi)
                self.spent[threads][0] += time.perf_counter() - start
            self.spent[threads][1] += hi - lo
            lo = hi
            if min(n for _, n in self.spent.values()) >= self.MIN_STEPS:
                self.choice = min(self.spent, key=lambda t: self.spent[t][0] / self.spent[t][1])
                self.choices[self.key] = self.choice, time.monotonic()
        if lo < k:
            with self.using(self.choice):
                steps_of(lo, k)

    def using(self, threads=None):
        """Context: run Numba kernels with ``threads`` (default: the choice, or all)."""
        return NumThreads(threads or self.choice or self.most, self.most)


class NumThreads:
    def __init__(self, threads, most):
        self.threads, self.most = threads, most

    def __enter__(self):
        if self.threads != self.most:
            numba.set_num_threads(self.threads)

    def __exit__(self, *exc):
        if self.threads != self.most:
            numba.set_num_threads(self.most)
