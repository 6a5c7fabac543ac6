"""The benchmark driver: every selected solver on every selected problem, in one process."""
from __future__ import annotations

import datetime
import math
import numbers
import os
import time
from dataclasses import dataclass, field

from . import problems as P
from . import solvers as S
from .measure import measure
from .report import append_partial, clear_partial
from .reference import reference

SUITES = {
    "quick": {
        "problems": {"gauss2d-sqeuclidean": (200, 400, 800), "mixture2d-euclidean": (200, 400, 800),
                     "gauss64d-sqeuclidean": (200, 400, 800), "uniform2d-euclidean": (200, 400, 800),
                     "grid-grf-moderate": (16, 32), "grid-cauchy": (16, 32), "grid-shapes": (16, 32),
                     "assign-points": (250, 500, 1000), "assign-random": (250, 500, 1000),
                     "gan-8gaussians": (64, 128, 256)},
        "repeats": 3, "budget_s": 1.0, "slow_s": 5.0},
    "full": {
        "problems": {**{name: (500, 1000, 2000) for name, (fam, _) in P.PROBLEMS.items() if fam == "clouds"},
                     **{name: (32, 64, 128) for name, (fam, _) in P.PROBLEMS.items() if fam == "grids"},
                     "assign-points": (500, 1000, 2000), "assign-random": (500, 1000, 2000),
                     "gan-8gaussians": (64, 128, 256, 512)},
        "repeats": 3, "budget_s": 5.0, "slow_s": 60.0},
}
DOTMARK_SIZES = {"quick": (32,), "full": (32, 64, 128)}


@dataclass
class BenchResult:
    """What :func:`run` measured: ``runs`` (one dict a run), ``skipped`` (dicts with a reason),
    ``meta`` (machine, versions, settings) and ``files`` (the report's paths)."""

    runs: list
    skipped: list
    meta: dict
    files: dict = field(default_factory=dict)


def _choose_solvers(solvers):
    if solvers is None:
        return list(S.SOLVERS.values()), [dict(solver=n, reason=r) for n, r in S.MISSING.items()]
    chosen, missing = [], []
    for item in solvers:
        if isinstance(item, S.Solver):
            chosen.append(item)
        elif item in S.SOLVERS:
            chosen.append(S.SOLVERS[item])
        elif item in S.MISSING:
            missing.append(dict(solver=item, reason=S.MISSING[item]))
        elif any(s.library.lower() == str(item).lower() for s in S.SOLVERS.values()):
            chosen += [s for s in S.SOLVERS.values() if s.library.lower() == str(item).lower()]
        else:
            raise ValueError(f"unknown solver {item!r}; choose from {', '.join([*S.SOLVERS, *S.MISSING])} "
                             f"or a library ({', '.join(sorted({s.library for s in S.SOLVERS.values()}))})")
    return list({s.name: s for s in chosen}.values()), missing


def _choose_problems(suite, problems, sizes):
    spec = SUITES[suite]["problems"]
    if problems is None:
        names = list(spec)
    else:
        names = []
        for item in problems:
            if item in P.PROBLEMS:
                names.append(item)
            elif item == "dotmark":
                continue  # the files of --dotmark
            elif item in P.FAMILIES:
                family = [n for n, (fam, _) in P.PROBLEMS.items() if fam == item]
                names += [n for n in family if n in spec] or family
            else:
                raise ValueError(f"unknown problem {item!r}; choose from {', '.join(P.PROBLEMS)} "
                                 f"or a family ({', '.join(P.FAMILIES)})")
    full = SUITES["full"]["problems"]
    return [(name, tuple(sizes) if sizes else spec.get(name, full[name])) for name in dict.fromkeys(names)]


def _check_sizes(sizes):
    if sizes is None:
        return None
    out = []
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"sizes must be integers; got {s!r}")
        if s < 2:
            raise ValueError(f"sizes must be >= 2 (points per side, or pixels per image side); got {s}")
        out.append(int(s))
    return sorted(set(out))


def _instances(suite, chosen, sizes, dotmark, seed, want_generated):
    for name, name_sizes in chosen if want_generated else ():
        for size in name_sizes:
            yield lambda name=name, size=size: P.make_problem(name, size, seed)
    if dotmark is not None:
        for prob in P.dotmark_problems(dotmark, sizes or DOTMARK_SIZES[suite]):
            yield lambda prob=prob: prob


def run(suite="quick", solvers=None, problems=None, sizes=None, out="bench_out", progress=True, dotmark=None,
        seed=0) -> BenchResult:
    """Benchmark otsolve and every installed peer; write ``out``/report.md, results.json and plots.

    Parameters
    ----------
    suite : {"quick", "full"}
        Problems, sizes and repeats: ``"quick"`` (a few minutes on 2 cores) or ``"full"``.
    solvers : list of str or Solver, optional
        Registry names (``"otsolve.exact"``, ``"pot.emd"``, see ``otsolve.bench.SOLVERS``),
        library names (``"POT"``) or :class:`Solver` entries. Default: all installed.
    problems : list of str, optional
        Problem names (``otsolve.bench.PROBLEMS``) or families (``"clouds"``, ``"grids"``,
        ``"assignment"``, ``"batch"``). Default: the suite's.
    sizes : list of int, optional
        Sizes for every selected problem (points per side; pixels per side for grids).
    out : str or path, optional
        Folder for the report (created); None writes nothing.
    progress : bool, default True
        A tqdm progress bar on stderr.
    dotmark : str, optional
        A folder of DOTmark CSV files (``<Class>/data<RES>_<id>.csv``): alone, only these are
        benchmarked; with ``problems``, these as well.
    seed : int, default 0
        Seed of the generators.

    Returns
    -------
    BenchResult
        The runs (time = median of the calls after a warm-up call, ``first_call_s`` apart; value;
        ``rel_gap`` to the certified reference; ``flag``; ``vs_best_peer`` = time / time of the
        fastest unflagged peer of the same objective on the same problem), the skipped runs.

    Raises
    ------
    ValueError, TypeError
        For an unknown suite, solver or problem, sizes that are not integers >= 2, or a
        ``dotmark`` folder without DOTmark files.

    Examples
    --------
    >>> res = run(solvers=["otsolve.exact", "scipy.lsa"], problems=["assign-random"], sizes=[10],
    ...           out=None, progress=False)
    >>> [(r["solver"], r["flag"], abs(r["rel_gap"]) < 1e-12) for r in res.runs]
    [('otsolve.exact', '', True), ('scipy.lsa', '', True)]
    """
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose 'quick' or 'full'")
    sizes = _check_sizes(sizes)
    chosen_solvers, skipped = _choose_solvers(solvers)
    if problems is not None and "dotmark" in problems and dotmark is None:
        raise ValueError("the dotmark problems need a folder of DOTmark files: dotmark=DIR (--dotmark DIR)")
    # --dotmark alone benchmarks the user's files only; with problems, those as well
    want_generated = (dotmark is None) if problems is None else any(p != "dotmark" for p in problems)
    chosen = _choose_problems(suite, problems, sizes) if want_generated else []
    settings = SUITES[suite]
    instances = list(_instances(suite, chosen, sizes, dotmark, seed, want_generated))
    if out is not None:
        clear_partial(out)  # a stopped run's: this one appends anew
    total = len(instances) * len(chosen_solvers)
    bar = _bar(total, progress)
    runs, slow, seen, started = [], {}, set(), time.perf_counter()
    for build in instances:
        problem, refs = build(), {}
        for solver in chosen_solvers:
            bar.set_postfix_str(f"{problem.name} {problem.size} {solver.name}", refresh=False)
            key = (solver.name, problem.name)
            reason = solver.skip_reason(problem, suite) or (
                f"took {slow[key][1]:.0f} s at size {slow[key][0]} (over {settings['slow_s']:g} s)" if key in slow else None)
            if reason:
                skipped.append(dict(solver=solver.name, problem=problem.name, size=problem.size, reason=reason))
                bar.update()
                continue
            if solver.objective not in refs:
                refs[solver.objective] = reference(problem, solver.objective)
            if solver.needs == "matrix" or (solver.needs == "any" and problem.dense_ok):
                _ = problem.C  # built once, before any timing
            record = measure(solver, problem, settings["repeats"], settings["budget_s"],
                             first_of_solver=solver.name not in seen)
            seen.add(solver.name)
            runs.append(_record(problem, solver, record, refs[solver.objective]))
            if out is not None:
                append_partial(out, runs[-1])
            if record["time_s"] > settings["slow_s"]:  # the median: a first call may compile
                slow[key] = (problem.size, record["time_s"])
            bar.update()
    bar.close()
    _ratios(runs)
    meta = machine_info()
    meta.update(suite=suite, seed=seed, seconds=time.perf_counter() - started,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                repeats=settings["repeats"], repeat_budget_s=settings["budget_s"], slow_s=settings["slow_s"],
                entropic_reg=P.ENTROPIC_REG)
    result = BenchResult(runs, skipped, meta)
    if out is not None:
        from .report import write_report
        result.files = write_report(result, out)
    return result


def _bar(total, progress):
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not progress, unit="run", desc="otsolve bench", dynamic_ncols=True)


def _record(problem, solver, rec, ref):
    value, ref_value = rec["value"], (ref.value if ref is not None and ref.certified else math.nan)
    gap = (value - ref_value) / abs(ref_value) if ref_value not in (0.0,) and math.isfinite(ref_value) else math.nan
    if rec["status"] == "error":
        flag = "error"
    elif not math.isfinite(ref_value):
        flag = "no certified value"
    elif not math.isfinite(gap) or abs(gap) > solver.rtol:
        flag = "wrong"
    else:
        flag = ""
    return dict(family=problem.family, problem=problem.name, size=problem.size, n=problem.n, m=problem.m,
                solver=solver.name, library=solver.library, objective=solver.objective,
                iterative=solver.iterative, rtol=solver.rtol, reg=problem.reg if solver.objective == "entropic" else None,
                **rec, reference=ref_value, reference_how=ref.how if ref is not None else "",
                rel_gap=gap, flag=flag)


def _ratios(runs):
    """vs_best_peer: time / time of the fastest unflagged non-otsolve run of the same objective."""
    groups = {}
    for r in runs:
        groups.setdefault((r["problem"], r["size"], r["n"], r["objective"]), []).append(r)
    for group in groups.values():
        peers = [r for r in group if r["library"] != "otsolve" and not r["flag"] and math.isfinite(r["time_s"])]
        best = min(peers, key=lambda r: r["time_s"]) if peers else None
        for r in group:
            r["best_peer"] = best["solver"] if best else None
            r["best_peer_time_s"] = best["time_s"] if best else math.nan
            r["vs_best_peer"] = r["time_s"] / best["time_s"] if best else math.nan


def machine_info() -> dict:
    """Machine and library versions, for the report."""
    import platform
    import importlib.metadata as md
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for dist in ("otsolve", "numpy", "scipy", "numba", "pot", "geomloss", "torch", "wasserstein", "matplotlib"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return dict(platform=platform.platform(), cpu=cpu, cores=cores, numba_threads=numba.get_num_threads(),
                python=platform.python_version(), versions=versions)
