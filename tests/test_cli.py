"""The otsolve command line."""
import re
import subprocess
import sys

import numpy as np

import otsolve
from otsolve.cli import demo_clouds, main


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
