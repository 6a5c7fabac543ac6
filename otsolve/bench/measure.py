"""Timing and peak memory of one solver on one problem."""
from __future__ import annotations

import math
import statistics
import threading
import time
import tracemalloc
import warnings

CLEAR_REFS = "/proc/self/clear_refs"  # Linux: writing "5" resets the peak RSS (VmHWM) to the current RSS
SAMPLE_SECONDS = 0.005                # psutil fallback: RSS sampled every 5 ms by a thread


def _status_kib(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"no {key} in /proc/self/status")


class PeakMemory:
    """Peak memory of the enclosed code above the level at entry, in MiB (``.mib``).

    The larger of two measures: resident memory (Linux: the kernel's own peak VmHWM, reset on
    entry, which sees allocations by compiled code: Numba, C++, torch; elsewhere psutil's RSS
    sampled by a thread, imported lazily as it is optional) and tracemalloc's peak (every numpy
    buffer, even one the allocator recycles without growing the resident set).
    """

    def __enter__(self):
        self.how, self.mib = "tracemalloc", math.nan
        self._start_rss()
        self.traced = not tracemalloc.is_tracing()
        if self.traced:
            tracemalloc.start()
        return self

    def _start_rss(self):
        try:
            with open(CLEAR_REFS, "w") as fh:
                fh.write("5")
            self.base, self.how = _status_kib("VmRSS") * 1024, "vmhwm+tracemalloc"
            return
        except OSError:
            pass
        try:
            import psutil
        except ImportError:
            return
        self.process, self.how = psutil.Process(), "psutil+tracemalloc"
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(SAMPLE_SECONDS)

    def __exit__(self, *exc):
        rss = 0
        if self.how.startswith("vmhwm"):
            rss = _status_kib("VmHWM") * 1024 - self.base
        elif self.how.startswith("psutil"):
            self.running = False
            self.thread.join()
            rss = max(self.peak, self.process.memory_info().rss) - self.base
        traced = tracemalloc.get_traced_memory()[1] if self.traced else 0
        if self.traced:
            tracemalloc.stop()
        self.mib = max(rss, traced, 0) / 2**20
        return False


def timings(fn, repeats=1, budget_s=math.inf):
    """(seconds of each call, last output) of up to ``repeats`` calls of ``fn``, at least one;
    no further call once the calls made took ``budget_s`` in all."""
    times, out = [], None
    while not times or (len(times) < repeats and sum(times) < budget_s):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def timed(fn, repeats=1, budget_s=math.inf):
    """(median seconds of the calls of :func:`timings`, last output)."""
    times, out = timings(fn, repeats, budget_s)
    return statistics.median(times), out


def _first_line(text, width=160):
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= width else line[:width - 3] + "..."


def measure(solver, problem, repeats, budget_s, first_of_solver=False):
    """Time ``solver`` on ``problem``: one warm-up call (timed apart), then the median of up to
    ``repeats`` calls (fewer when the warm-up took more than ``budget_s / repeats``), at least one.

    Peak memory is taken on an untimed call (tracemalloc slows allocations): the warm-up, unless
    ``first_of_solver`` (its warm-up may compile: Numba, torch), which gets one more call.
    Returns a dict: time_s, first_call_s, repeats, times, peak_mib, memory_how, value, n_iter,
    status, note (a solver exception becomes status "error" with its message).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with PeakMemory() as mem:
                start = time.perf_counter()
                solver.solve(problem)
                first = time.perf_counter() - start
            count = max(1, min(repeats, int(budget_s / max(first, 1e-9))))
            times, out = timings(lambda: solver.solve(problem), count)
            if first_of_solver:
                with PeakMemory() as mem:
                    solver.solve(problem)
        except Exception as err:  # a peer's failure is a result to report, not a crash of the harness
            return dict(time_s=math.nan, first_call_s=math.nan, repeats=0, times=[], peak_mib=math.nan,
                        memory_how=None, value=math.nan, n_iter=None, status="error",
                        note=_first_line(f"{type(err).__name__}: {err}"))
    # a solver's own warning (convergence, numerical errors) says more than numpy's RuntimeWarnings
    caught = sorted(caught, key=lambda w: issubclass(w.category, RuntimeWarning))
    note = out.note or (_first_line(f"{caught[0].category.__name__}: {caught[0].message}") if caught else "")
    return dict(time_s=statistics.median(times), first_call_s=first, repeats=count, times=times,
                peak_mib=mem.mib, memory_how=mem.how, value=float(out.value), n_iter=out.n_iter,
                status=out.status, note=note)
