"""A reduced run of the generator-quality study (benchmarks/gan_quality.py) and its command."""
import numpy as np
import pytest
import torch

from otsolve.cli import main
from otsolve.gan import generator_quality_study
from otsolve.gan.quality import HELD_OUT_DIGITS, _split

torch.set_num_threads(1)


def test_reduced_study(tmp_path):
    res = generator_quality_study(("gaussians8",), ("ctransform", "energy"), ("adam", "optimistic_adam"),
                                  n_steps=4, batch_size=16, eval_size=64, n_evals=2, critic_steps=1)
    assert [(r.loss, r.optimizer) for r in res.rows] == [(loss, o) for loss in ("ctransform", "energy")
                                                         for o in ("adam", "optimistic_adam")]
    for r in res.rows:
        assert 0 < r.w1 <= r.w2 + 1e-12  # W1 <= W2 (Jensen) between the same clouds
        assert 0 <= r.modes <= 8 and r.samples.shape == (64, 2) and r.step_seconds > 0
        assert len(r.w1_curve) == len(r.eval_step) == 3  # steps 0, 2, 4
    table = res.table()
    assert table.count("\n") == 2 + len(res.rows) - 1 and "| gaussians8 | energy | optimistic_adam |" in table
    path = res.save_figure(str(tmp_path / "grid.png"))
    assert (tmp_path / "grid.png").stat().st_size > 1000 and path.endswith("grid.png")


def test_digits_held_out_never_sampled():
    sampler, held_out = _split("digits", 2000, seed=0)
    assert held_out.shape == (HELD_OUT_DIGITS, 64)
    drawn = sampler.sample(5000, np.random.default_rng(0))
    held = {row.tobytes() for row in held_out}
    # scikit-learn's digits hold a few exact duplicates; a drawn image equal to a held-out one must be one
    overlap = sum(row.tobytes() in held for row in drawn)
    assert overlap <= 0.01 * len(drawn)


def test_gan_study_command(tmp_path, capsys):
    figure = str(tmp_path / "q.png")
    assert main(["gan-study", "--data", "digits", "--losses", "exact", "--optimizers", "optimistic_adam",
                 "--steps", "2", "--batch-size", "8", "--eval-size", "32", "--figure", figure]) == 0
    out = capsys.readouterr().out
    assert "| digits | exact | optimistic_adam |" in out and "saved" in out


def test_bad_study_arguments():
    with pytest.raises(ValueError, match="unknown loss 'gan'"):
        generator_quality_study(("gaussians8",), ("gan",))
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        generator_quality_study(("gaussians8",), ("exact",), ("sgd",))
    with pytest.raises(ValueError, match="unknown data 'mnist'"):
        generator_quality_study(("mnist",))
