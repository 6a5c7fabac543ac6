"""otsolve.bench: reproducible generators, the DOTmark reader, the report, ratios and wrong-answer flags."""
import json
import math
import statistics

import numpy as np
import pytest

import otsolve
from otsolve import bench
from otsolve.bench import problems as P
from otsolve.bench.measure import PeakMemory
from otsolve.bench.reference import entropic_lower_bound, entropic_primal, entropic_reference, exact_reference, semidual_value
from otsolve.cli import main
from oracles import lp_transport

SMALL = {"clouds": 24, "grids": 8, "assignment": 12, "batch": 16}


@pytest.mark.parametrize("name", list(bench.PROBLEMS))
def test_generators_are_seeded_and_reproducible(name):
    size = SMALL[bench.PROBLEMS[name][0]]
    p, q, other = bench.make_problem(name, size), bench.make_problem(name, size), bench.make_problem(name, size, seed=1)
    for field in ("a", "b", "x", "y", "cost"):
        u, v = getattr(p, field), getattr(q, field)
        assert (u is None) == (v is None)
        if u is not None:
            assert np.array_equal(u, v), field
    differs = [not np.array_equal(getattr(p, f), getattr(other, f)) for f in ("a", "b", "C")]
    assert any(differs)  # another seed, other data (weights for grids, points or costs otherwise)
    assert np.isclose(p.a.sum(), 1, rtol=1e-12) and np.isclose(p.b.sum(), 1, rtol=1e-12)
    assert (p.a >= 0).all() and (p.b >= 0).all()
    assert p.C.shape == (p.n, p.m) and np.isfinite(p.C).all() and (p.C >= 0).all()
    n = size * size if p.family == "grids" else size
    assert p.n == n and p.size == size and p.reg > 0


def test_grid_smoothness_levels_differ():
    rng = np.random.default_rng(0)
    def roughness(kind):
        img = P.grid_image(kind, 64, rng)
        return np.abs(np.diff(img, axis=0)).mean() / img.std()
    assert roughness("grf-rough") > 2 * roughness("grf-moderate") > 4 * roughness("grf-smooth")
    assert (P.grid_image("loggrf", 16, rng) > 0).all() and set(np.unique(P.grid_image("shapes", 16, rng))) <= {0.0, 1.0}


def test_dotmark_reader_on_files_it_writes(tmp_path):
    folder = tmp_path / "Data" / "Shapes"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=(6, 6)) for _ in range(3)]
    for k, img in enumerate(images):
        np.savetxt(folder / f"data6_100{k + 1}.csv", img, fmt="%d", delimiter=",")
    np.savetxt(folder / "data8_1001.csv", np.ones((8, 8)), delimiter=",")  # another resolution, alone
    found = bench.dotmark_problems(str(tmp_path), sizes=[6])
    assert len(found) == 1  # 1001 with 1002; 1003 has no partner
    p = found[0]
    assert (p.name, p.family, p.size, p.n) == ("dotmark-Shapes", "dotmark", 6, 36)
    assert np.allclose(p.a, images[0].ravel() / images[0].sum()) and np.allclose(p.b, images[1].ravel() / images[1].sum())
    assert np.allclose(p.x[7], [1.5 / 6, 1.5 / 6]) and p.metric == "sqeuclidean"
    assert np.isclose(exact_reference(p).value, lp_transport(p.C, p.a, p.b)[0], rtol=1e-9)


def test_dotmark_reader_errors(tmp_path):
    bad = tmp_path / "data4_1.csv"
    bad.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="data4_1.csv.*square"):
        bench.read_dotmark_image(str(bad))
    with pytest.raises(ValueError, match="no DOTmark files"):
        bench.dotmark_problems(str(tmp_path), sizes=[32])
    with pytest.raises(ValueError, match="no such directory"):
        bench.dotmark_problems(str(tmp_path / "missing"))


def test_references_are_certified_and_evaluators_agree():
    p = bench.make_problem("mixture2d-euclidean", 30)
    ref = exact_reference(p)
    assert ref.certified and ref.lower <= ref.value <= ref.upper
    assert np.isclose(ref.value, lp_transport(p.C, p.a, p.b)[0], rtol=1e-9)  # HiGHS oracle
    ent = entropic_reference(p)
    assert ent.certified and ent.value >= ref.value
    res = otsolve.sinkhorn(p.C, p.a, p.b, reg=p.reg, tol=1e-12)
    assert np.isclose(entropic_primal(p, res.plan, p.reg), res.value, rtol=1e-10)
    lower = entropic_lower_bound(p, res.f, res.g, p.reg)
    assert np.isclose(lower, ent.value, rtol=1e-9)  # both near-optimal duals: rtol from tol 1e-11, 1e-12
    # the semi-dual maximises the dual over f exactly: at the same g it is no smaller
    assert semidual_value(p, res.g, p.reg) >= lower - 1e-12 * abs(lower)
    assert semidual_value(p, res.g * 0, p.reg) < lower  # and a poor g gives a poor bound
    assert entropic_lower_bound(p, res.f - 1.0, res.g, p.reg) < lower


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory() as mem:
        block = np.ones(2**23)  # 64 MiB
        block[::512] = 2.0
        del block
    assert mem.mib >= 50


def test_tiny_run_writes_report_json_and_plots(tmp_path):
    bench.run(solvers=["otsolve.exact", "pot.emd"], problems=["gauss2d-sqeuclidean"], sizes=[20, 40],
              out=str(tmp_path), progress=False)
    for name in ("report.md", "results.json", "time_vs_size_clouds.png", "accuracy_vs_time.png"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "results.partial.jsonl").exists()  # the runs saved as they came: gone once done
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "results.json").read_text())
    runs = saved["runs"]
    assert len(runs) == 4 and {r["solver"] for r in runs} == {"otsolve.exact", "pot.emd"}
    assert saved["meta"]["versions"]["numpy"] == np.__version__
    for r in runs:
        assert r["time_s"] == statistics.median(r["times"]) and r["first_call_s"] > 0
        assert r["flag"] == "" and abs(r["rel_gap"]) < 1e-9 and r["status"] == "optimal"
        # the ratio comes from the recorded times: the only peer is pot.emd
        peer = next(q for q in runs if q["solver"] == "pot.emd" and q["size"] == r["size"])
        assert r["best_peer"] == "pot.emd"
        assert math.isclose(r["vs_best_peer"], r["time_s"] / peer["time_s"], rel_tol=1e-12)
    text = (tmp_path / "report.md").read_text()
    assert "## clouds" in text and "otsolve.exact" in text and "## Machine" in text and "slope" in text
    assert "None: every run is within" in text


def test_a_wrong_solver_is_flagged_and_never_the_best_peer(tmp_path):
    def wrong(problem):
        return bench.Outcome(1.01 * lp_transport(problem.C, problem.a, problem.b)[0], status="optimal")
    bench.register(bench.Solver("fake.wrong", "fake", "exact", wrong))
    try:
        res = bench.run(solvers=["otsolve.exact", "fake.wrong"], problems=["uniform2d-sqeuclidean"], sizes=[15],
                        out=str(tmp_path), progress=False)
    finally:
        bench.unregister("fake.wrong")
    by = {r["solver"]: r for r in res.runs}
    assert by["fake.wrong"]["flag"] == "wrong" and np.isclose(by["fake.wrong"]["rel_gap"], 0.01)
    assert by["otsolve.exact"]["flag"] == "" and by["otsolve.exact"]["best_peer"] is None
    assert math.isnan(by["otsolve.exact"]["vs_best_peer"])
    text = (tmp_path / "report.md").read_text()
    flagged = text.split("## Flagged runs")[1].split("\n## ")[0]
    assert "fake.wrong" in flagged and "**wrong**" in text
    assert "fake.wrong" not in bench.SOLVERS


def test_missing_peers_and_out_of_scope_runs_are_skipped_with_a_reason(tmp_path):
    bench.MISSING["fake.absent"] = "fake is not installed"
    try:
        res = bench.run(solvers=["fake.absent", "scipy.lsa", "otsolve.exact"], problems=["gan-8gaussians"],
                        sizes=[8], out=str(tmp_path), progress=False)
    finally:
        bench.MISSING.pop("fake.absent")
    reasons = {s["solver"]: s["reason"] for s in res.skipped}
    assert reasons["fake.absent"] == "fake is not installed"
    assert "assignment problems only" in reasons["scipy.lsa"]
    text = (tmp_path / "report.md").read_text()
    assert "fake is not installed" in text.split("## Skipped")[1]


def test_bad_selections_raise():
    with pytest.raises(ValueError, match="unknown solver 'nope'"):
        bench.run(solvers=["nope"], out=None, progress=False)
    with pytest.raises(ValueError, match="unknown problem"):
        bench.run(problems=["nope"], out=None, progress=False)
    with pytest.raises(ValueError, match="unknown suite"):
        bench.run(suite="medium", out=None, progress=False)
    with pytest.raises(ValueError, match="sizes must be >= 2"):
        bench.run(sizes=[1], out=None, progress=False)


def test_cli_bench(tmp_path, capsys):
    code = main(["bench", "--solvers", "otsolve.exact", "scipy.lsa", "--problems", "assign-random",
                 "--sizes", "10", "20", "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "4 runs" in out and (tmp_path / "report.md").is_file()
    assert "time_vs_size_assignment.png" in out
    assert main(["bench", "--solvers", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("otsolve: error: unknown solver 'nope'") and "\n" not in err
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--sizes", "0"])
    assert stop.value.code == 2


def test_cli_bench_on_dotmark_files(tmp_path, capsys):
    folder = tmp_path / "dotmark" / "CauchyDensity"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for k in (1, 2):
        np.savetxt(folder / f"data8_100{k}.csv", rng.random((8, 8)), delimiter=",")
    out = tmp_path / "report"
    code = main(["bench", "--dotmark", str(tmp_path / "dotmark"), "--sizes", "8", "--solvers", "otsolve.exact",
                 "pot.emd", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {(r["problem"], r["family"], r["n"]) for r in runs} == {("dotmark-CauchyDensity", "dotmark", 64)}
    assert all(r["flag"] == "" for r in runs) and "## dotmark" in (out / "report.md").read_text()
    assert main(["bench", "--dotmark", str(tmp_path / "absent"), "--out", str(out)]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_multiscale_entry_agrees_with_the_lp_on_grids_and_clouds():
    """otsolve.multiscale runs the grid hierarchy on images and k-d trees on clouds; the harness's
    certified reference (and HiGHS below) must agree with both."""
    res = bench.run(solvers=["otsolve.multiscale", "scipy.highs"],
                    problems=["grid-shapes", "grid-cauchy", "mixture2d-euclidean", "assign-random"], sizes=[12],
                    out=None, progress=False)
    mine = [r for r in res.runs if r["solver"] == "otsolve.multiscale"]
    assert {r["problem"] for r in mine} == {"grid-shapes", "grid-cauchy", "mixture2d-euclidean"}
    for r in mine:
        highs = next(q for q in res.runs if q["solver"] == "scipy.highs" and q["problem"] == r["problem"])
        assert r["flag"] == "" and r["status"] == "optimal", r
        assert math.isclose(r["value"], highs["value"], rel_tol=1e-9)


def test_reference_without_a_dense_matrix_is_the_certified_multiscale_value(monkeypatch):
    """Problems too large for a dense matrix get their reference from the multiscale simplex,
    rechecked by the harness's own bound over all pairs; it must equal the LP."""
    from scipy.spatial.distance import cdist
    from otsolve.bench import problems, reference
    monkeypatch.setattr(problems, "DENSE_MAX_PAIRS", 100)
    for name in ("gauss2d-sqeuclidean", "grid-shapes"):
        problem = problems.make_problem(name, 12)
        assert not problem.dense_ok
        ref = reference.reference(problem, "exact")
        value = lp_transport(cdist(problem.x, problem.y, problem.metric), problem.a, problem.b)[0]
        assert ref.certified and ref.how.startswith("otsolve multiscale")
        assert math.isclose(ref.value, value, rel_tol=1e-9)
