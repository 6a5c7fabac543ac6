"""The otsolve command line."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import otsolve
from otsolve.cli import demo_clouds, main
from oracles import lp_transport


def test_demo_prints_value_time_and_certificate(capsys):
    assert main(["--n", "150", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    value = float(re.search(r"W2\s+=\s+(\S+)", out).group(1))
    x, y = demo_clouds(150, 3)
    expected = otsolve.exact(otsolve.cost_matrix(x, y)).value ** 0.5
    assert np.isclose(value, expected, rtol=1e-10)
    for word in ("time", "duality gap", "dual violation", "marginal error", "optimal"):
        assert word in out


def test_console_script_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "otsolve.cli", "demo", "--n", "50", "--p", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "exact W1" in done.stdout


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of the command line run in this process."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    x, y, wy = rng.normal(size=(30, 2)), rng.normal(size=(20, 2)) + 1.0, rng.random(20) + 0.1
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.csv", y, delimiter=",")
    np.savetxt(tmp_path / "y.txt", y)
    np.savetxt(tmp_path / "wy.txt", wy)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    return tmp_path, x, y, wy


def test_distance_reads_npy_csv_txt_and_weights(files, capsys):
    path, x, y, wy = files
    code, out, _ = run_cli(["distance", str(path / "x.npy"), str(path / "y.csv"), "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["status"] == "optimal"
    # oracle: the LP of HiGHS on the same clouds
    C = ((x[:, None] - y[None]) ** 2).sum(-1)
    assert report["value"] == pytest.approx(lp_transport(C, np.full(30, 1 / 30), np.full(20, 1 / 20))[0] ** 0.5, rel=1e-9)
    code, out, _ = run_cli(["distance", str(path / "x.npy"), str(path / "y.txt"), "--weights-y",
                            str(path / "wy.txt"), "--p", "1", "--json"], capsys)
    C1 = np.sqrt(C)
    assert code == 0
    assert json.loads(out)["value"] == pytest.approx(lp_transport(C1, np.full(30, 1 / 30), wy / wy.sum())[0], rel=1e-9)
    code, out, _ = run_cli(["distance", str(path / "x.npy"), str(path / "y.csv")], capsys)
    assert code == 0 and "W2" in out and "duality_gap" in out and "seconds" in out
    code, out, _ = run_cli(["distance", str(path / "x.npy"), str(path / "y.csv"), "--method", "sinkhorn",
                            "--reg", "0.05", "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["method"] == "sinkhorn" and report["value"] > 0


@pytest.mark.parametrize("argv, name", [
    (["distance", "{p}/missing.npy", "{p}/y.csv"], "X"),
    (["distance", "{p}/x.npy", "{p}/bad.csv"], "Y"),
    (["distance", "{p}/x.npy", "{p}/y.csv", "--p", "0"], "--p"),
    (["distance", "{p}/x.npy", "{p}/y.csv", "--p", "two"], "--p"),
    (["distance", "{p}/x.npy", "{p}/y.csv", "--weights-x", "{p}/wy.txt"], "--weights-x"),
    (["distance", "{p}/x.npy", "{p}/y.csv", "--method", "sinkhorn"], "--reg"),
    (["distance", "{p}/x.npy", "{p}/y.csv", "--reg", "-1"], "--reg"),
    (["distance", "{p}/x.npy", "{p}/y.csv", "--method", "magic"], "--method"),
    (["distance", "{p}/x.npy"], "Y"),
    (["--n", "-5"], "--n"),
    (["demo", "--n", "-5"], "--n"),
    (["demo", "--p", "nan"], "--p"),
    (["gan", "--steps", "0"], "--steps"),
])
def test_bad_input_exits_2_with_one_line(files, capsys, argv, name):
    path = files[0]
    code, _, err = run_cli([a.format(p=path) for a in argv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("otsolve: error:") and name in lines[0], err


def test_bad_input_at_the_console_has_no_traceback(files):
    path = files[0]
    for argv in (["demo", "--n", "-5"], ["distance", str(path / "x.npy"), str(path / "bad.csv")]):
        done = subprocess.run([sys.executable, "-m", "otsolve.cli", *argv], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.strip().startswith("otsolve: error:")


def test_empty_and_scalar_files_name_the_argument(tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("")
    np.save(tmp_path / "scalar.npy", np.array(3.0))
    np.save(tmp_path / "y.npy", np.zeros((3, 1)))
    for bad in ("empty.csv", "scalar.npy"):
        code, _, err = run_cli(["distance", str(tmp_path / bad), str(tmp_path / "y.npy")], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("otsolve: error: X:"), err
