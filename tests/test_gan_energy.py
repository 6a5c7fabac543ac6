"""Tests of OT-GAN's minibatch energy distance (value and gradient against POT's Sinkhorn plans and
finite differences of the entropic objective) and of train() with the energy loss and the optimisers."""
import numpy as np
import ot
import pytest
import torch

from otsolve.gan import minibatch_energy_distance, mode_coverage, train

torch.set_num_threads(1)
REG = 0.5  # moderate: POT's log-domain Sinkhorn converges to 1e-13 in a few hundred iterations
TERMS = ((1, "x", "y"), (1, "x", "y2"), (1, "x2", "y"), (1, "x2", "y2"), (-2, "x", "x2"), (-2, "y", "y2"))


# ---------- oracles: POT plans and numpy formulas ----------

def pot_plan(u, v, reg, p):
    C = np.sqrt(((u[:, None] - v[None]) ** 2).sum(-1)) ** p
    a, b = np.full(len(u), 1 / len(u)), np.full(len(v), 1 / len(v))
    P = ot.sinkhorn(a, b, C, reg, method="sinkhorn_log", stopThr=1e-14, numItermax=100_000)
    return C, P, a, b


def oracle(batches, reg, p):
    """Six-term value with W = <C, P>, the entropic counterpart with <C, P> + reg KL(P | ab^T), and the
    OT-GAN gradient sum_j P_ij grad_u c(u_i, v_j) summed over the terms, all from POT's plans."""
    value, entropic = 0.0, 0.0
    grads = {k: np.zeros_like(v) for k, v in batches.items()}
    for coef, s, t in TERMS:
        u, v = batches[s], batches[t]
        C, P, a, b = pot_plan(u, v, reg, p)
        kl = np.sum(P * np.log(P / np.outer(a, b))) - P.sum() + 1.0
        value += coef * np.sum(C * P)
        entropic += coef * (np.sum(C * P) + reg * kl)
        for i in range(len(u)):
            for j in range(len(v)):
                d = u[i] - v[j]
                dc = 2 * d if p == 2 else d / np.linalg.norm(d)  # grad_u of |u - v|^p
                grads[s][i] += coef * P[i, j] * dc
                grads[t][j] -= coef * P[i, j] * dc
    return value, entropic, grads


def make_batches(seed=0, n=5, m=6, d=2):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, d)), "x2": rng.normal(size=(n, d)),
            "y": rng.normal(size=(m, d)) + 1.0, "y2": rng.normal(size=(m, d)) + 1.0}


def ours(batches, reg, p, **options):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in batches.items()}
    D = minibatch_energy_distance(tensors["x"], tensors["x2"], tensors["y"], tensors["y2"], reg=reg, p=p,
                                  tol=1e-13, **options)
    D.backward()
    return float(D.detach()), {k: t.grad.numpy() for k, t in tensors.items()}


@pytest.mark.parametrize("p", [1, 2])
def test_value_and_gradient_match_pot_plans(p):
    batches = make_batches()
    value, grads = ours(batches, REG, p)
    ref_value, _, ref_grads = oracle(batches, REG, p)
    assert value == pytest.approx(ref_value, abs=1e-10)  # both plans to 1e-13 marginal error
    for k in batches:
        np.testing.assert_allclose(grads[k], ref_grads[k], atol=1e-10)


def test_gradient_is_that_of_the_entropic_objective():
    """Central differences of the entropic combination (POT plans) match the returned gradient; those of
    the returned value itself do not (its plans move with the points): what the docstring says."""
    batches = make_batches(1)
    _, grads = ours(batches, REG, 2)
    h, worst_entropic, worst_linear = 1e-5, 0.0, 0.0
    for k in batches:
        for i, c in ((0, 0), (2, 1)):
            plus, minus = {q: v.copy() for q, v in batches.items()}, {q: v.copy() for q, v in batches.items()}
            plus[k][i, c] += h
            minus[k][i, c] -= h
            (lp, ep, _), (lm, em, _) = oracle(plus, REG, 2), oracle(minus, REG, 2)
            worst_entropic = max(worst_entropic, abs((ep - em) / (2 * h) - grads[k][i, c]))
            worst_linear = max(worst_linear, abs((lp - lm) / (2 * h) - grads[k][i, c]))
    assert worst_entropic < 1e-7  # measured 3e-10: O(h^2) plus plan error 1e-13 / h
    assert worst_linear > 1e-2  # measured 0.25 at reg 0.5: d<C,P>/dx has the dP/dx terms too


def test_zero_when_all_batches_equal_and_shapes_kept():
    x = torch.randn(7, 1, 2, 2, dtype=torch.float32, requires_grad=True)
    D = minibatch_energy_distance(x, x, x, x, reg=0.1)
    assert D.dtype == torch.float32 and D.shape == ()
    assert abs(float(D.detach())) < 1e-6
    D.backward()
    assert x.grad.shape == x.shape


def test_only_requested_gradients():
    b = {k: torch.tensor(v) for k, v in make_batches().items()}
    x = b["x"].clone().requires_grad_(True)
    minibatch_energy_distance(x, b["x2"], b["y"], b["y2"], reg=REG).backward()
    assert x.grad is not None and b["y"].grad is None


@pytest.mark.parametrize("change, error, match", [
    ({"x2": torch.zeros(4, 2)}, ValueError, "x and x2 must have the same batch size"),
    ({"y2": torch.zeros(5, 2)}, ValueError, "y and y2 must have the same batch size"),
    ({"y": torch.zeros(6, 3), "y2": torch.zeros(6, 3)}, ValueError, "same dimension"),
    ({"x": np.zeros((5, 2))}, TypeError, "x must be a torch.Tensor"),
    ({"p": 3}, ValueError, "p must be 1"),
    ({"reg": None}, ValueError, "reg is required"),
    ({"reg": 0.0}, ValueError, "reg must be > 0"),
    ({"y": torch.full((6, 2), float("nan"))}, ValueError, "y contains nan"),
])
def test_bad_input(change, error, match):
    args = {"x": torch.zeros(5, 2), "x2": torch.ones(5, 2), "y": torch.ones(6, 2), "y2": torch.zeros(6, 2),
            "reg": 0.1, "p": 2}
    args.update(change)
    with pytest.raises(error, match=match):
        minibatch_energy_distance(args["x"], args["x2"], args["y"], args["y2"], reg=args["reg"], p=args["p"])


# ---------- training ----------

def test_energy_gan_learns_gaussians8():
    res = train("gaussians8", "energy", n_steps=150, batch_size=64, seed=0, progress=False)  # reg 0.5
    covered, _ = mode_coverage(res.sample(2000), res.sampler.centers, radius=0.5)
    assert res.history.w1[-1] < 0.5 * res.history.w1[0]  # measured 1.90 -> 0.64
    assert covered >= 6, covered  # measured 7 of 8 after 150 steps


@pytest.mark.parametrize("loss, optimizer", [("gp", "optimistic_adam"), ("exact", "optimistic_sgd"),
                                             ("wc", "adam")])
def test_train_with_each_optimiser(loss, optimizer):
    res = train("gaussians8", loss, n_steps=5, batch_size=16, critic_steps=1, eval_size=32, progress=False,
                optimizer=optimizer, lr=1e-2 if optimizer == "optimistic_sgd" else None)
    assert len(res.history.loss) == 5 and np.isfinite(res.history.loss).all()


def test_train_picks_the_optimiser():
    from otsolve.gan.optim import OptimisticAdam, OptimisticSGD
    from otsolve.gan.train import _optimizers
    gen = torch.nn.Linear(2, 2)
    opt, critic = _optimizers("ctransform", gen, 2, 1e-4, "cpu", "optimistic_adam")
    assert isinstance(opt, OptimisticAdam) and isinstance(critic.optimizer, OptimisticAdam)
    assert opt.defaults["betas"] == critic.betas
    opt, critic = _optimizers("sinkhorn", gen, 2, 1e-3, "cpu", "optimistic_sgd")
    assert isinstance(opt, OptimisticSGD) and critic is None
    opt, critic = _optimizers("wc", gen, 2, 5e-5, "cpu", None)
    assert isinstance(opt, torch.optim.RMSprop) and isinstance(critic.optimizer, torch.optim.RMSprop)
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        train("gaussians8", "exact", n_steps=1, optimizer="sgd", progress=False)
