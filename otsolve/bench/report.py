"""The benchmark report: report.md (tables by family), results.json (one record a run), PNG plots."""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import numpy as np

GAP_FLOOR = 1e-16  # relative gaps below this are drawn at it on the log axis (exact agreement)


def _clean(v):
    """JSON-safe: NaN and inf become null, numpy scalars Python numbers."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _fmt(v, spec):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def _geomean(values):
    values = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else math.nan


def scaling(runs):
    """{(family, solver): (ns, times, slope)}: at each n, the geometric mean time over the family's
    problems that the solver ran at every one of its sizes (so that a size skipped for one problem
    does not bend the curve), and the slope of log time against log n (NaN with fewer than 2 sizes)."""
    points = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        if r["flag"] != "error" and math.isfinite(r["time_s"]):
            points[(r["family"], r["solver"])][r["problem"]][r["n"]] = r["time_s"]
    out = {}
    for key, by_problem in sorted(points.items()):
        all_ns = sorted({n for times in by_problem.values() for n in times})
        complete = [t for t in by_problem.values() if len(t) == len(all_ns)]
        if len(all_ns) < 2 or not complete:  # no problem at every size: the best-covered one
            complete = [max(by_problem.values(), key=len)]
        ns = sorted(complete[0])
        times = [_geomean([t[n] for t in complete]) for n in ns]
        slope = float(np.polyfit(np.log(ns), np.log(times), 1)[0]) if len(ns) >= 2 else math.nan
        out[key] = (ns, times, slope)
    return out


MARKERS = "os^vD<>p*h"


def _color(k):
    """The k-th of 20 distinct colours (tab20 in an order that keeps neighbours apart)."""
    from matplotlib import colormaps
    return colormaps["tab20"]((2 * k) % 20 + (2 * k) // 20)


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone (Agg here)

    fig = Figure(figsize=(9, 4.8))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot_scaling(fits, family, path):
    """Time against n on log-log axes, one line per solver, its fitted slope in the legend."""
    fig, ax = _figure()
    for k, ((fam, solver), (ns, times, slope)) in enumerate((k, v) for k, v in fits.items() if k[0] == family):
        label = solver if math.isnan(slope) else f"{solver} (slope {slope:.2f})"
        ax.loglog(ns, times, MARKERS[k % len(MARKERS)] + "-", color=_color(k % 20), label=label)
    ax.set_xlabel("n (points per measure)")
    ax.set_ylabel("seconds (median; geometric mean over problems)")
    ax.set_title(f"{family}: time against size")
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, ax, path)


def _save(fig, ax, path):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_accuracy(runs, path):
    """Relative gap to the certified value against time, for the iterative solvers."""
    fig, ax = _figure()
    by_solver = defaultdict(list)
    for r in runs:
        if r["iterative"] and math.isfinite(r["time_s"]) and math.isfinite(r["rel_gap"]):
            by_solver[r["solver"]].append((r["time_s"], max(abs(r["rel_gap"]), GAP_FLOOR)))
    for k, (solver, pts) in enumerate(sorted(by_solver.items())):
        t, g = zip(*pts)
        ax.loglog(t, g, MARKERS[k % len(MARKERS)], color=_color(k % 20), alpha=0.7, label=solver)
    ax.set_xlabel("seconds (median)")
    ax.set_ylabel("|value - certified value| / certified value")
    ax.set_title("iterative solvers: accuracy against time (every problem and size)")
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, ax, path)


RUN_COLUMNS = ("size", "n", "solver", "seconds", "first call", "vs best peer", "peak MiB", "value",
               "rel. gap", "iters", "status", "flag")


def _run_row(r):
    return (r["size"], r["n"], r["solver"], _fmt(r["time_s"], ".3g"), _fmt(r["first_call_s"], ".3g"),
            _fmt(r["vs_best_peer"], ".2f"), _fmt(r["peak_mib"], ".1f"), _fmt(r["value"], ".8g"),
            _fmt(r["rel_gap"], ".1e"), "-" if r["n_iter"] is None else r["n_iter"], r["status"],
            f"**{r['flag']}**" if r["flag"] == "wrong" else r["flag"])


def print_table(title, header, rows):
    """Print ``rows`` under ``header`` as plain text, each column as wide as its widest cell (the
    benchmark scripts' tables)."""
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(str(r[k])) for r in rows)) for k, h in enumerate(header)]
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)), flush=True)


def _table(header, rows):
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return lines


def _summary(runs):
    """Per family and objective: otsolve's time over the best peer's (geometric mean, range)."""
    groups = defaultdict(list)
    for r in runs:
        if r["library"] == "otsolve":
            groups[(r["family"], r["objective"], r["solver"])].append(r)
    rows = []
    for (family, objective, solver), rs in sorted(groups.items()):
        ratios = [r["vs_best_peer"] for r in rs if math.isfinite(r["vs_best_peer"])]
        peers = sorted({r["best_peer"] for r in rs if r["best_peer"]})
        rows.append((family, objective, solver, len(rs), _fmt(_geomean(ratios), ".2f"),
                     f"{_fmt(min(ratios), '.2f')} - {_fmt(max(ratios), '.2f')}" if ratios else "-",
                     ", ".join(peers) or "-", sum(r["flag"] == "wrong" for r in rs)))
    return _table(("family", "objective", "otsolve solver", "runs", "time / best peer (geo. mean)",
                   "range", "best peers", "wrong"), rows)


PARTIAL = "results.partial.jsonl"  # the runs of a suite in progress, one JSON line each


def append_partial(out, record):
    """Append one run to ``out``/PARTIAL (no rewrite of the runs before it): a long suite stopped
    half-way keeps what it measured."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, PARTIAL), "a") as fh:
        fh.write(json.dumps(_clean(record)) + "\n")


def clear_partial(out):
    """Remove ``out``/PARTIAL (a stopped run's, or one whose runs are in results.json)."""
    if os.path.exists(os.path.join(out, PARTIAL)):
        os.remove(os.path.join(out, PARTIAL))


def write_report(result, out) -> dict:
    """Write report.md, results.json and the plots into ``out``; return {name: path}."""
    os.makedirs(out, exist_ok=True)
    runs, meta = result.runs, result.meta
    files = {"json": os.path.join(out, "results.json"), "report": os.path.join(out, "report.md")}
    with open(files["json"], "w") as fh:
        json.dump(_clean(dict(meta=meta, runs=runs, skipped=result.skipped)), fh, indent=1)
    clear_partial(out)  # the runs saved as they came (harness.run): all in results.json now
    fits = scaling(runs)
    families = sorted({r["family"] for r in runs})
    for family in families:
        files[f"time_{family}"] = os.path.join(out, f"time_vs_size_{family}.png")
        plot_scaling(fits, family, files[f"time_{family}"])
    files["accuracy"] = os.path.join(out, "accuracy_vs_time.png")
    plot_accuracy(runs, files["accuracy"])
    lines = _head(meta)
    lines += ["", "## otsolve against the best peer", "",
              "Time of each otsolve solver over the fastest unflagged peer solving the same objective "
              "on the same problem (below 1: otsolve is faster).", "", *_summary(runs)]
    wrong = [r for r in runs if r["flag"] in ("wrong", "error")]
    lines += ["", "## Flagged runs", ""]
    if wrong:
        lines += ["A fast wrong answer is no win: these runs are off the certified value by more than the "
                  "accuracy their settings promise (rtol), or failed.", ""]
        lines += _table(("problem", "size", "solver", "value", "certified value", "rel. gap", "rtol", "flag", "note"),
                        [(r["problem"], r["size"], r["solver"], _fmt(r["value"], ".10g"), _fmt(r["reference"], ".10g"),
                          _fmt(r["rel_gap"], ".2e"), _fmt(r["rtol"], ".0e"), r["flag"], r["note"]) for r in wrong])
    else:
        lines += ["None: every run is within its promised accuracy of the certified value."]
    for family in families:
        lines += ["", f"## {family}", "", f"![time against size]({os.path.basename(files[f'time_{family}'])})"]
        fam_runs = [r for r in runs if r["family"] == family]
        for problem in sorted({r["problem"] for r in fam_runs}):
            rs = sorted((r for r in fam_runs if r["problem"] == problem),
                        key=lambda r: (r["size"], r["objective"], r["time_s"] if math.isfinite(r["time_s"]) else math.inf))
            for objective in ("exact", "entropic"):
                sub = [r for r in rs if r["objective"] == objective]
                if sub:
                    reg = f", reg = {meta['entropic_reg']:g} x spread(C)" if objective == "entropic" else ""
                    lines += ["", f"### {problem}: {objective} OT{reg}", "", *_table(RUN_COLUMNS, map(_run_row, sub))]
    lines += ["", "## Scaling", "", "Slope of log time against log n (n = points per measure), fitted over the "
              "sizes run; time is the geometric mean over the family's problems run at every size.", ""]
    lines += _table(("family", "solver", "n", "slope"),
                    [(fam, solver, ", ".join(map(str, ns)), _fmt(slope, ".2f")) for (fam, solver), (ns, _, slope) in fits.items()])
    lines += ["", "## Accuracy against time", "", f"![accuracy]({os.path.basename(files['accuracy'])})"]
    lines += ["", "## Skipped", "", *_skipped(result.skipped), "", *_notes()]
    with open(files["report"], "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return files


def _head(meta):
    v = meta["versions"]
    versions = ", ".join(f"{k} {x}" for k, x in v.items() if x)
    absent = ", ".join(k for k, x in v.items() if not x)
    return ["# otsolve bench report", "",
            f"Suite `{meta['suite']}`, seed {meta['seed']}, {meta['date']}, {meta['seconds']:.0f} s in all.", "",
            "## Machine", "",
            f"- {meta['cpu']}, {meta['cores']} cores available, Numba threads {meta['numba_threads']}",
            f"- {meta['platform']}, Python {meta['python']}",
            f"- {versions}" + (f" (not installed: {absent})" if absent else ""),
            f"- time: median of up to {meta['repeats']} calls after one warm-up call (fewer calls when the "
            f"warm-up took over {meta['repeat_budget_s']:g} s / {meta['repeats']}); the warm-up ('first call', "
            "Numba compilation or cache load included) is reported apart; peak MiB: the larger of resident "
            "memory and tracemalloc's peak above the level before an untimed call"]


def _skipped(skipped):
    """One row per (solver, reason), with the problems and sizes it covers."""
    groups = defaultdict(list)
    for s in skipped:
        groups[(s["solver"], s["reason"])].append(s)
    rows = []
    for (solver, reason), ss in sorted(groups.items()):
        where = sorted({f"{s['problem']} {s['size']}" for s in ss if "problem" in s})
        shown = ", ".join(where[:6]) + (f" and {len(where) - 6} more" if len(where) > 6 else "")
        rows.append((solver, reason, shown or "all problems"))
    return _table(("solver", "reason", "runs skipped"), rows) if rows else ["Nothing was skipped."]


def _notes():
    return ["## How to read it", "",
            "- value: exact OT, the transport cost <C, P>; entropic OT, <C, P> + reg KL(P | a b^T) of the "
            "returned plan, or the dual objective (semi-dual SGD, GeomLoss: lower bounds).",
            "- certified value: exact, otsolve.exact with its certificate rechecked by the harness (a feasible "
            "plan and a dual bound from (f, min_i C - f) that agree to 1e-9), HiGHS when that fails; entropic, "
            "otsolve.sinkhorn at tol 1e-11 with the entropic dual bound computed by the harness (agreement 1e-7).",
            "- rel. gap: (value - certified value) / certified value; a run is flagged **wrong** when |gap| "
            "exceeds the rtol its settings promise (exact 1e-6; Sinkhorn at tol 1e-6: 1e-4; stochastic and "
            "GeomLoss: 1e-2). Flagged runs are never the best peer.",
            "- vs best peer: time over the fastest unflagged run of a peer (not otsolve) on the same problem "
            "and objective; status 'unchecked': the solver has no convergence test (fixed budget or schedule)."]
