"""Tests of otsolve.gan: envelope gradients against finite differences and against autograd through
unrolled log-domain Sinkhorn (written here, independent of otsolve), critics, training, the study."""
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse

import torch  # the gan extra; CI installs torch before it

import otsolve  # noqa: E402
from otsolve.cli import main  # noqa: E402
from otsolve.gan import (OTLoss, CTransformCritic, GradientPenaltyCritic, WeightClippingCritic,  # noqa: E402
                         critic_error_study, make_critic, mlp, mode_coverage, ot_loss, train)

torch.set_num_threads(1)
GRAD_ATOL = 1e-6  # float64 central differences (step 1e-6) on smooth functions of O(1)
ENTROPIC_EPS, ENTROPIC_ATOL = 1e-5, 1e-5  # a solve converged to ~1e-12 moves the value by ~1e-11: /2e-5


def clouds(n=5, m=4, d=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(m, d, generator=g, dtype=dtype) + 0.5
    return x.requires_grad_(True), y.requires_grad_(True)


def random_weights(k, seed):
    w = np.random.default_rng(seed).uniform(0.5, 1.5, size=k)
    return w / w.sum()


# ---------- oracles (share no code with otsolve) ----------

def lp_plan(C, a, b):
    """The exact plan by scipy's HiGHS linear program."""
    n, m = C.shape
    rows = scipy.sparse.kron(scipy.sparse.eye(n), np.ones((1, m)))
    cols = scipy.sparse.kron(np.ones((1, n)), scipy.sparse.eye(m))
    res = scipy.optimize.linprog(C.ravel(), A_eq=scipy.sparse.vstack([rows, cols]),
                                 b_eq=np.concatenate([a, b]), method="highs")
    assert res.status == 0
    return res.x.reshape(n, m)


def torch_cost(x, y, p):
    d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return d2 if p == 2 else torch.sqrt(d2)


def unrolled_sinkhorn(C, a, b, reg, n_iter=3000):
    """Entropic OT value <C,P> + reg KL(P|ab^T) by plain log-domain Sinkhorn, differentiable by autograd."""
    la, lb = torch.log(a), torch.log(b)
    f, g = torch.zeros_like(a), torch.zeros_like(b)
    for _ in range(n_iter):
        f = -reg * torch.logsumexp(lb[None, :] + (g[None, :] - C) / reg, dim=1)
        g = -reg * torch.logsumexp(la[:, None] + (f[:, None] - C) / reg, dim=0)
    logP = la[:, None] + lb[None, :] + (f[:, None] + g[None, :] - C) / reg
    P = torch.exp(logP)
    return (P * C).sum() + reg * (P * (logP - la[:, None] - lb[None, :])).sum() - reg * (P.sum() - 1)


# ---------- import behaviour ----------

def test_import_otsolve_does_not_import_torch():
    code = "import sys, otsolve; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_gives_install_hint():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import otsolve.gan\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert 'pip install "otsolve[gan]"' in out and "torch build" in out


# ---------- exact ----------

@pytest.mark.parametrize("p", [1, 2])
def test_exact_gradcheck(p):
    x, y = clouds()
    assert torch.autograd.gradcheck(lambda u, v: ot_loss(u, v, p=p), (x, y), eps=1e-6, atol=GRAD_ATOL)


@pytest.mark.parametrize("p", [1, 2])
def test_exact_value_and_gradient_match_linprog(p):
    x, y = clouds(6, 7, 3, seed=1)
    a, b = random_weights(6, 1), random_weights(7, 2)
    loss = ot_loss(x, y, a, b, p=p)
    loss.backward()
    C = torch_cost(x.detach(), y.detach(), p).numpy()
    P = torch.as_tensor(lp_plan(C, a, b))
    xr, yr = x.detach().clone().requires_grad_(True), y.detach().clone().requires_grad_(True)
    ref = (P * torch_cost(xr, yr, p)).sum()  # gradient of <P*, C(x, y)> at the LP plan
    ref.backward()
    assert float(loss) == pytest.approx(float(ref), rel=1e-10)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(y.grad, yr.grad, rtol=1e-8, atol=1e-10)


def test_p1_coincident_points_give_finite_zero_gradient():
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    loss = ot_loss(x, x.detach().clone(), p=1)
    loss.backward()
    assert float(loss) == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_float32_and_shapes_kept():
    x = torch.randn(8, 1, 2, 2, requires_grad=True)  # images: trailing dimensions flattened
    y = torch.randn(6, 1, 2, 2)
    loss = OTLoss("exact", p=2)(x, y)
    loss.backward()
    assert loss.dtype == torch.float32 and loss.ndim == 0 and x.grad.shape == x.shape and y.grad is None
    assert float(loss) == pytest.approx(otsolve.exact(otsolve.cost_matrix(
        x.detach().reshape(8, -1).double().numpy(), y.reshape(6, -1).double().numpy())).value, rel=1e-6)


# ---------- sinkhorn and the divergence (need the sinkhorn branch) ----------

@pytest.mark.parametrize("p", [1, 2])
def test_sinkhorn_matches_unrolled_autograd(p):
    x, y = clouds(5, 4, 2, seed=3)
    a, b = random_weights(5, 3), random_weights(4, 4)
    loss = ot_loss(x, y, a, b, method="sinkhorn", p=p, reg=0.3, tol=1e-13)
    loss.backward()
    xr, yr = x.detach().clone().requires_grad_(True), y.detach().clone().requires_grad_(True)
    ref = unrolled_sinkhorn(torch_cost(xr, yr, p), torch.as_tensor(a), torch.as_tensor(b), 0.3)
    ref.backward()
    assert float(loss) == pytest.approx(float(ref), rel=1e-9)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(y.grad, yr.grad, rtol=1e-7, atol=1e-9)


def test_sinkhorn_gradcheck():
    x, y = clouds(4, 3, 2, seed=4)
    fun = lambda u, v: ot_loss(u, v, method="sinkhorn", p=2, reg=0.5, tol=1e-13)
    assert torch.autograd.gradcheck(fun, (x, y), eps=ENTROPIC_EPS, atol=ENTROPIC_ATOL)


def test_sinkhorn_divergence_matches_unrolled_autograd_and_gradcheck():
    x, y = clouds(5, 4, 2, seed=5)
    reg = 0.4
    loss = ot_loss(x, y, method="sinkhorn_divergence", p=2, reg=reg, tol=1e-13)
    loss.backward()
    xr, yr = x.detach().clone().requires_grad_(True), y.detach().clone().requires_grad_(True)
    a, b = torch.full((5,), 0.2, dtype=torch.float64), torch.full((4,), 0.25, dtype=torch.float64)
    ref = (unrolled_sinkhorn(torch_cost(xr, yr, 2), a, b, reg)
           - 0.5 * unrolled_sinkhorn(torch_cost(xr, xr, 2), a, a, reg)
           - 0.5 * unrolled_sinkhorn(torch_cost(yr, yr, 2), b, b, reg))
    ref.backward()
    assert float(loss) == pytest.approx(float(ref), rel=1e-8)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(y.grad, yr.grad, rtol=1e-6, atol=1e-9)
    fun = lambda u, v: ot_loss(u, v, method="sinkhorn_divergence", p=2, reg=reg, tol=1e-13)
    assert torch.autograd.gradcheck(fun, (x.detach().requires_grad_(True), y.detach().requires_grad_(True)),
                                    eps=ENTROPIC_EPS, atol=ENTROPIC_ATOL)


def test_sinkhorn_divergence_zero_on_identical_batches():
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    loss = ot_loss(x, x.detach().clone(), method="sinkhorn_divergence", reg=0.2, tol=1e-12)
    loss.backward()
    assert abs(float(loss)) < 1e-9 and float(x.grad.abs().max()) < 1e-6


# ---------- semi-dual (needs the semidual branch) ----------

def test_semidual_entropic_matches_unrolled_sinkhorn():
    x, y = clouds(6, 5, 2, seed=6)
    reg = 0.5
    loss = ot_loss(x, y, method="semidual", p=2, reg=reg, seed=0)
    loss.backward()
    xr, yr = x.detach().clone().requires_grad_(True), y.detach().clone().requires_grad_(True)
    a, b = torch.full((6,), 1 / 6, dtype=torch.float64), torch.full((5,), 0.2, dtype=torch.float64)
    ref = unrolled_sinkhorn(torch_cost(xr, yr, 2), a, b, reg)
    ref.backward()
    # the semi-dual solver promises ~1e-3 relative on the value; the gradient follows its potential g
    assert float(loss) == pytest.approx(float(ref), rel=5e-3)
    scale = float(xr.grad.abs().max())
    assert float((x.grad - xr.grad).abs().max()) < 3e-2 * scale
    assert float((y.grad - yr.grad).abs().max()) < 3e-2 * float(yr.grad.abs().max())


def test_semidual_unregularised_value_near_exact():
    x, y = clouds(8, 8, 2, seed=7)
    loss = ot_loss(x, y, method="semidual", p=1, seed=0)
    loss.backward()
    exact = float(ot_loss(x, y, p=1))
    assert float(loss) <= exact + 1e-9            # the semi-dual value is a lower bound (weak duality)
    assert float(loss) == pytest.approx(exact, rel=1e-2)
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


# ---------- bad input ----------

def test_bad_input():
    x, y = torch.randn(4, 2), torch.randn(3, 2)
    with pytest.raises(ValueError, match="same dimension"):
        ot_loss(x, torch.randn(3, 5))
    with pytest.raises(ValueError, match="x contains nan"):
        ot_loss(torch.tensor([[0.0, float("nan")]]), y)
    with pytest.raises(ValueError, match="y contains inf"):
        ot_loss(x, torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(ValueError, match="x is an empty batch"):
        ot_loss(torch.zeros(0, 2), y)
    with pytest.raises(ValueError, match="unknown method 'wasserstein'"):
        ot_loss(x, y, method="wasserstein")
    with pytest.raises(ValueError, match="reg is required"):
        ot_loss(x, y, method="sinkhorn")
    with pytest.raises(ValueError, match="reg is not used by method='exact'"):
        ot_loss(x, y, reg=0.1)
    with pytest.raises(ValueError, match="reg must be > 0"):
        ot_loss(x, y, method="sinkhorn_divergence", reg=-1.0)
    with pytest.raises(ValueError, match="p must be 1"):
        ot_loss(x, y, p=3)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ot_loss(np.zeros((4, 2)), y)
    with pytest.raises(TypeError, match="floating-point"):
        ot_loss(torch.zeros(4, 2, dtype=torch.int64), y)
    with pytest.raises(ValueError, match="b has 2 entries"):
        ot_loss(x, y, b=[0.5, 0.5])
    with pytest.raises(ValueError, match="unknown critic"):
        make_critic("spectral", mlp(2))
    with pytest.raises(ValueError, match="fake and real must have the same dimension"):
        make_critic("gp", mlp(2)).critic_loss(x, torch.randn(3, 5))


def test_inputs_unchanged():
    x, y = clouds()
    x0, y0 = x.detach().clone(), y.detach().clone()
    a = np.full(5, 0.2)
    ot_loss(x, y, a, p=1).backward()
    assert torch.equal(x.detach(), x0) and torch.equal(y.detach(), y0) and np.all(a == 0.2)


# ---------- critics ----------

def test_ctransform_estimate_is_a_lower_bound_of_batch_w1():
    torch.manual_seed(0)
    critic = CTransformCritic(mlp(2, hidden=(16, 16)))
    for seed in range(3):
        x, y = clouds(12, 12, 2, seed=seed, dtype=torch.float32)
        w1 = otsolve.exact(otsolve.cost_matrix(x.detach().double().numpy(), y.detach().double().numpy(), p=1)).value
        assert critic.estimate(x, y) <= w1 + 1e-5  # weak duality; float32 network
        critic.step(x, y)


def test_lipschitz_critics_on_a_linear_potential():
    # phi(x) = u.x with |u| = 1: the optimal W1 potential between two translates; gradient norm 1
    u = torch.tensor([[0.6, 0.8]])
    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(u)
    fake, real = torch.randn(50, 2) + 3 * u, torch.randn(50, 2)
    gp = GradientPenaltyCritic(net)
    assert float(gp.penalty(fake, real)) == pytest.approx(0.0, abs=1e-10)
    assert gp.estimate(fake, real) == pytest.approx(float((fake - real).mean(0) @ u[0]), rel=1e-5)
    wc = WeightClippingCritic(torch.nn.Linear(2, 1))
    assert max(float(w.abs().max()) for w in wc.net.parameters()) <= 0.01


# ---------- training and the study ----------

def test_sinkhorn_divergence_gan_covers_the_8_modes():
    res = train("gaussians8", "sinkhorn_divergence", n_steps=300, batch_size=128, reg=0.1, seed=0, progress=False)
    covered, _ = mode_coverage(res.sample(2000), res.sampler.centers, radius=0.5)
    assert covered >= 7, covered
    assert res.history.w1[-1] < 0.5 * res.history.w1[0]


def test_train_with_a_critic_saves_figures(tmp_path):
    res = train("digits", "gp", n_steps=4, batch_size=16, critic_steps=2, eval_size=32, n_snapshots=2,
                progress=False, out_dir=str(tmp_path))
    assert len(res.history.loss) == 4 and len(res.history.w1) >= 2
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("samples.png", "losses.png"))
    assert res.sample(3).shape == (3, 64)


def test_critic_study_ordering():
    res = critic_error_study(("gaussians",), ("wc", "gp", "ctransform", "exact"), n_reps=2, n_train=150,
                             n_eval=5, hidden=(64, 64))
    wc, gp, ct = (res.row("gaussians", m).mean for m in ("wc", "gp", "ctransform"))
    assert ct < 0.5 * min(wc, gp), (wc, gp, ct)
    assert res.row("gaussians", "exact").mean < 1e-5  # the ground truth itself, returned as a float32 tensor
    assert "c-transform" in res.table()


def test_cli_commands(tmp_path, capsys):
    assert main(["gan", "--data", "gaussians8", "--loss", "exact", "--steps", "3", "--batch-size", "32",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "samples.png").exists()
    assert main(["critic-error", "--settings", "gaussians", "--methods", "ctransform", "exact", "--reps", "1",
                 "--steps", "5", "--eval-batches", "2", "--figure", str(tmp_path / "ce.png")]) == 0
    assert "c-transform" in capsys.readouterr().out and (tmp_path / "ce.png").exists()


@pytest.mark.parametrize("kwargs", [dict(method="exact", p=3), dict(method="sinkhorn"),
                                    dict(method="exact", reg=0.1), dict(method="sinkhorn", reg=-1.0)])
def test_otloss_validates_at_construction(kwargs):
    method = kwargs.pop("method")
    with pytest.raises(ValueError, match="p must|reg"):
        OTLoss(method, **kwargs)


def test_double_backward_is_refused_not_silently_wrong():
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 2, dtype=torch.float64)
    loss = OTLoss("sinkhorn", reg=0.5)(x, y)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, x, create_graph=True)
    (grad,) = torch.autograd.grad(OTLoss("sinkhorn", reg=0.5)(x, y), x)  # first order is fine
    assert torch.isfinite(grad).all()
