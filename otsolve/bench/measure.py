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
    """Peak resident memory above the level at entry, in MiB (``.mib``; NaN when unmeasurable).

    Linux: the kernel's own peak (VmHWM, reset on entry), exact and free of overhead, and it sees
    allocations by compiled code (Numba, C++, torch) that a sampler could miss. Elsewhere: psutil's
    RSS sampled by a thread (imported lazily: it is optional), else tracemalloc (numpy buffers only).
    """

    def __enter__(self):
        self.how, self.mib = None, math.nan
        try:
            with open(CLEAR_REFS, "w") as fh:
                fh.write("5")
            self.base, self.how = _status_kib("VmRSS"), "vmhwm"
            return self
        except OSError:
            pass
        try:
            import psutil
        except ImportError:
            tracemalloc.start()
            self.how = "tracemalloc"
            return self
        self.process, self.how = psutil.Process(), "psutil"
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(SAMPLE_SECONDS)

    def __exit__(self, *exc):
        if self.how == "vmhwm":
            self.mib = max(0, _status_kib("VmHWM") - self.base) / 1024
        elif self.how == "psutil":
            self.running = False
            self.thread.join()
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.mib = (self.peak - self.base) / 2**20
        else:
            self.mib = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        return False


def _first_line(text, width=160):
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= width else line[:width - 3] + "..."


def measure(solver, problem, repeats, budget_s):
    """Time ``solver`` on ``problem``: one warm-up call (timed apart), then the median of up to
    ``repeats`` calls (fewer when the warm-up took more than ``budget_s / repeats``), at least one.

    Returns a dict: time_s, first_call_s, repeats, times, peak_mib, memory_how, value, n_iter,
    status, note (a solver exception becomes status "error" with its message).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            start = time.perf_counter()
            solver.solve(problem)
            first = time.perf_counter() - start
            count = max(1, min(repeats, int(budget_s / max(first, 1e-9))))
            times, peak = [], 0.0
            for _ in range(count):
                with PeakMemory() as mem:
                    start = time.perf_counter()
                    out = solver.solve(problem)
                    times.append(time.perf_counter() - start)
                peak = max(peak, mem.mib)
        except Exception as err:  # a peer's failure is a result to report, not a crash of the harness
            return dict(time_s=math.nan, first_call_s=math.nan, repeats=0, times=[], peak_mib=math.nan,
                        memory_how=None, value=math.nan, n_iter=None, status="error",
                        note=_first_line(f"{type(err).__name__}: {err}"))
    # a solver's own warning (convergence, numerical errors) says more than numpy's RuntimeWarnings
    caught = sorted(caught, key=lambda w: issubclass(w.category, RuntimeWarning))
    note = out.note or (_first_line(f"{caught[0].category.__name__}: {caught[0].message}") if caught else "")
    return dict(time_s=statistics.median(times), first_call_s=first, repeats=count, times=times,
                peak_mib=peak, memory_how=mem.how, value=float(out.value), n_iter=out.n_iter,
                status=out.status, note=note)
