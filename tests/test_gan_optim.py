"""Tests of otsolve.gan's optimistic optimisers against hand-written numpy steps of their formulas, on
the bilinear game, and of the c-transform critic's transport map against finite differences."""
import copy
import math

import numpy as np
import pytest
import torch

from otsolve.gan import CTransformCritic, OptimisticAdam, OptimisticSGD, make_critic, mlp

torch.set_num_threads(1)
STEP_ATOL = 1e-12  # float64 parameters after tens of steps: a few ulps per step of O(1) values


# ---------- reference steps in numpy (the formulas, written out) ----------

def reference_optimistic_adam(theta, grads, lr, b1, b2, eps):
    """theta_t = theta_{t-1} - 2 eta_t m_t / (sqrt(v_t) + eps) + eta_t m_{t-1} / (sqrt(v_{t-1}) + eps)."""
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m_new, v_new = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        eta = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        theta = theta - 2 * eta * m_new / (np.sqrt(v_new) + eps) + eta * m / (np.sqrt(v) + eps)
        m, v = m_new, v_new
        yield theta


def numpy_adam_run(net, loss_fn, n_steps, lr, b1, b2, eps):
    """Parameters after each step of the numpy reference, gradients from autograd on a copy of net."""
    params = [p.detach().numpy().copy() for p in net.parameters()]
    state = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    out = []
    for t in range(1, n_steps + 1):
        grads = _grads_at(net, params, loss_fn)
        new_params, new_state = [], []
        for theta, (m, v), g in zip(params, state, grads):
            m_new, v_new = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            eta = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            new_params.append(theta - 2 * eta * m_new / (np.sqrt(v_new) + eps) + eta * m / (np.sqrt(v) + eps))
            new_state.append((m_new, v_new))
        params, state = new_params, new_state
        out.append(params)
    return out


def numpy_osgd_run(net, loss_fn, n_steps, lr):
    params = [p.detach().numpy().copy() for p in net.parameters()]
    previous = [np.zeros_like(p) for p in params]
    for _ in range(n_steps):
        grads = _grads_at(net, params, loss_fn)
        params = [theta - 2 * lr * g + lr * g0 for theta, g, g0 in zip(params, grads, previous)]
        previous = grads
    return params


def _grads_at(net, params, loss_fn):
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p, value in zip(twin.parameters(), params):
            p.copy_(torch.from_numpy(value))
    loss_fn(twin).backward()
    return [p.grad.numpy().copy() for p in twin.parameters()]


def small_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = mlp(3, 2, hidden=(5,), activation=torch.nn.Tanh).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x, y = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g, dtype=torch.float64)
    return net, lambda model: ((model(x) - y) ** 2).mean()


# ---------- OptimisticAdam ----------

def test_optimistic_adam_two_steps_by_hand():
    # f(w) = w^2 / 2 from w = 1 (gradient w), lr 0.1, betas (0.5, 0.9), eps 1e-8
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = OptimisticAdam([w], lr=0.1, betas=(0.5, 0.9), eps=1e-8)
    eps = 1e-8
    # step 1: g = 1, m = 0.5, v = 0.1, eta = 0.1 sqrt(0.1) / 0.5; the m_0 term is 0
    w1 = 1 - 2 * (0.1 * math.sqrt(0.1) / 0.5) * 0.5 / (math.sqrt(0.1) + eps)
    # step 2: g = w1, m = 0.25 + 0.5 w1, v = 0.09 + 0.1 w1^2, eta = 0.1 sqrt(1 - 0.81) / 0.75
    m2, v2, eta2 = 0.25 + 0.5 * w1, 0.09 + 0.1 * w1 ** 2, 0.1 * math.sqrt(0.19) / 0.75
    w2 = w1 - 2 * eta2 * m2 / (math.sqrt(v2) + eps) + eta2 * 0.5 / (math.sqrt(0.1) + eps)
    expected = [w1, w2]
    for k in range(2):
        opt.zero_grad()
        (w ** 2 / 2).sum().backward()
        opt.step()
        assert w.item() == pytest.approx(expected[k], abs=1e-15)
    assert abs(w1 - 0.8) < 1e-7 and abs(w2 - 0.699364) < 1e-6  # the same numbers worked on paper


def test_optimistic_adam_matches_numpy_reference_on_a_network():
    net, loss_fn = small_problem()
    lr, betas, eps, n_steps = 0.01, (0.5, 0.9), 1e-8, 40
    expected = numpy_adam_run(net, loss_fn, n_steps, lr, *betas, eps)
    opt = OptimisticAdam(net.parameters(), lr=lr, betas=betas, eps=eps)
    for t in range(n_steps):
        opt.zero_grad()
        loss_fn(net).backward()
        opt.step()
        for p, q in zip(net.parameters(), expected[t]):
            np.testing.assert_allclose(p.detach().numpy(), q, rtol=0, atol=STEP_ATOL)


def test_optimistic_adam_scalar_sequence_matches_generator_reference():
    # gradients given (not computed): the parameter sequence of the formula, elementwise
    grads = [np.array([1.0, -2.0]), np.array([0.5, 3.0]), np.array([-1.0, 0.1])]
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = OptimisticAdam([w], lr=0.05, betas=(0.9, 0.999), eps=1e-8)
    for g, ref in zip(grads, reference_optimistic_adam(np.zeros(2), grads, 0.05, 0.9, 0.999, 1e-8)):
        w.grad = torch.from_numpy(g)
        opt.step()
        np.testing.assert_allclose(w.detach().numpy(), ref, rtol=0, atol=1e-15)


def test_maximize_ascends():
    grads = [np.array([1.0, -2.0]), np.array([0.5, 3.0])]
    for make in (lambda p, mx: OptimisticAdam(p, lr=0.1, maximize=mx),
                 lambda p, mx: OptimisticSGD(p, lr=0.1, maximize=mx)):
        u = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        v = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        ou, ov = make([u], True), make([v], False)
        for g in grads:
            u.grad, v.grad = torch.from_numpy(g), torch.from_numpy(-g)  # ascending f == descending -f
            ou.step(), ov.step()
        np.testing.assert_array_equal(u.detach().numpy(), v.detach().numpy())


# ---------- OptimisticSGD ----------

def test_optimistic_sgd_matches_numpy_reference_on_a_network():
    net, loss_fn = small_problem(1)
    expected = numpy_osgd_run(net, loss_fn, 30, 0.05)
    opt = OptimisticSGD(net.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss_fn(net).backward()
        opt.step()
    for p, q in zip(net.parameters(), expected):
        np.testing.assert_allclose(p.detach().numpy(), q, rtol=0, atol=STEP_ATOL)


def bilinear_game(make, n_steps=2000):
    """min_x max_y x^T A y (equilibrium 0): the distance of the last iterate to it, every step."""
    A = torch.tensor([[1.0, 0.5], [-0.3, 1.2]], dtype=torch.float64)
    x = torch.nn.Parameter(torch.tensor([1.0, 0.5], dtype=torch.float64))
    y = torch.nn.Parameter(torch.tensor([0.5, -1.0], dtype=torch.float64))
    ox, oy = make([x], False), make([y], True)
    norms = []
    for _ in range(n_steps):
        ox.zero_grad(), oy.zero_grad()
        (x @ A @ y).backward()
        ox.step(), oy.step()
        norms.append(float(torch.cat([x, y]).detach().norm()))
    return np.array(norms)


def test_bilinear_game_gd_spirals_out_optimistic_converges():
    gd = bilinear_game(lambda p, mx: torch.optim.SGD(p, lr=0.05, maximize=mx))
    ogd = bilinear_game(lambda p, mx: OptimisticSGD(p, lr=0.05, maximize=mx))
    start = math.sqrt(1.0 + 0.25 + 0.25 + 1.0)
    assert gd[-1] > 30 * start and np.all(np.diff(gd) > 0)  # measured 1.6 -> 96, growing at every step
    assert ogd[-1] < 0.1 * start and np.all(np.diff(ogd) < 0)  # measured 0.066, shrinking at every step


@pytest.mark.parametrize("make, match", [
    (lambda p: OptimisticAdam(p, lr=-1.0), "lr must be > 0"),
    (lambda p: OptimisticAdam(p, eps=0.0), "eps must be > 0"),
    (lambda p: OptimisticAdam(p, betas=(1.0, 0.9)), r"betas\[0\] must be in \[0, 1\)"),
    (lambda p: OptimisticAdam(p, betas=(0.5, -0.1)), r"betas\[1\] must be >= 0"),
    (lambda p: OptimisticSGD(p, lr=0.0), "lr must be > 0"),
])
def test_bad_optimiser_options(make, match):
    with pytest.raises(ValueError, match=match):
        make([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(TypeError, match="betas must be a pair"):
        OptimisticAdam([torch.nn.Parameter(torch.zeros(1))], betas=0.5)


# ---------- the c-transform critic's map ----------

def test_critic_transport_matches_finite_differences_of_phi():
    torch.manual_seed(0)
    critic = make_critic("ctransform", mlp(2, 1, hidden=(16, 16), activation=torch.nn.Tanh).double(), p=2)
    x = torch.randn(6, 2, dtype=torch.float64)
    h = 1e-6
    grad = torch.zeros_like(x)
    with torch.no_grad():
        for k in range(2):
            e = torch.zeros(2, dtype=torch.float64)
            e[k] = h
            grad[:, k] = (critic.phi(x + e) - critic.phi(x - e)) / (2 * h)
    expected = x - 0.5 * grad  # cost |x - y|^2: grad phi(x) = 2 (x - T(x))
    torch.testing.assert_close(critic.transport(x), expected, rtol=0, atol=1e-8)  # central differences: O(h^2)


def test_critic_transport_of_known_potentials():
    t = torch.tensor([0.5, -1.0], dtype=torch.float64)
    net = torch.nn.Linear(2, 1).double()
    with torch.no_grad():  # phi(x) = -2 t.x + 3: the optimal potential of the translation by t
        net.weight.copy_(-2 * t[None, :]), net.bias.fill_(3.0)
    critic = CTransformCritic(net, p=2)
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(critic.transport(x), x + t, rtol=0, atol=1e-15)
    images = torch.randn(3, 1, 2, 1, dtype=torch.float64)  # trailing dimensions flattened, shape kept
    assert critic.transport(images).shape == images.shape


def test_critic_transport_needs_p2():
    with pytest.raises(ValueError, match="transport needs p=2"):
        make_critic("ctransform", mlp(2, 1, hidden=(4,)), p=1).transport(torch.zeros(2, 2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        make_critic("ctransform", mlp(2, 1, hidden=(4,)), p=2).transport(np.zeros((2, 2)))
