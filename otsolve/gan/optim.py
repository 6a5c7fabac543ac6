"""Optimistic optimisers for min-max games (generator against critic): Daskalakis, Ilyas, Syrgkanis,
Zeng (ICLR 2018), "Training GANs with Optimism"."""
from __future__ import annotations

import math

import torch

from .._validation import check_positive


class OptimisticAdam(torch.optim.Optimizer):
    r"""Optimistic Adam (Daskalakis et al. 2018, Algorithm 1): optimism on Adam's preconditioned step.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,\quad
        \eta_t = \mathrm{lr}\,\frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}

        \theta_t = \theta_{t-1} - 2 \eta_t \frac{m_t}{\sqrt{v_t} + \epsilon}
                   + \eta_t \frac{m_{t-1}}{\sqrt{v_{t-1}} + \epsilon}

    with m_0 = v_0 = 0 (so the first step is twice Adam's). This is not Adam fed with
    ``2 g_t - g_{t-1}``, a different algorithm found in many circulating versions.

    Parameters
    ----------
    params : iterable of tensors or parameter groups
    lr : float, default 1e-3
    betas : (float, float), default (0.5, 0.9)
        A usual choice for GAN training (beta1 = 0.5 as in OT-GAN and DCGAN); each in [0, 1).
    eps : float, default 1e-8
        Must be > 0 (m_0 / (sqrt(v_0) + eps) is 0 / eps at the first step).
    maximize : bool, default False
        Ascend instead (the other player of a min-max game).

    Examples
    --------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = OptimisticAdam([w], lr=0.1)
    >>> (w ** 2 / 2).sum().backward(); opt.step()
    >>> round(float(w), 6)  # 1 - 2 lr: the first step is twice Adam's
    0.8
    """

    def __init__(self, params, lr=1e-3, betas=(0.5, 0.9), eps=1e-8, *, maximize=False):
        lr, eps = check_positive(lr, "lr"), check_positive(eps, "eps")
        betas = _check_betas(betas)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, maximize=bool(maximize)))

    @torch.no_grad()
    def step(self, closure=None):
        """One step on every parameter with a gradient; ``closure`` re-evaluates the loss."""
        loss = _closure(closure)
        for group, p, grad, state in _with_gradients(self):
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            m, v = state["exp_avg"], state["exp_avg_sq"]
            previous = m / (v.sqrt() + eps)  # m_{t-1} / (sqrt(v_{t-1}) + eps), before the update
            state["step"] += 1
            t = state["step"]
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            eta = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            p.add_(m / (v.sqrt() + eps), alpha=-2 * eta).add_(previous, alpha=eta)
        return loss


class OptimisticSGD(torch.optim.Optimizer):
    r"""Optimistic gradient descent (optimistic mirror descent, Euclidean mirror map).

    .. math:: \theta_t = \theta_{t-1} - 2\,\mathrm{lr}\, g_t + \mathrm{lr}\, g_{t-1}, \qquad g_0 = 0

    On bilinear games ``min_x max_y x^T A y`` its last iterate converges where simultaneous
    gradient descent spirals out (Daskalakis et al. 2018).

    Parameters
    ----------
    params : iterable of tensors or parameter groups
    lr : float, default 1e-3
    maximize : bool, default False
        Ascend instead.

    Examples
    --------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = OptimisticSGD([w], lr=0.1)
    >>> for _ in range(2):
    ...     opt.zero_grad(); (w ** 2 / 2).sum().backward(); opt.step()
    >>> round(float(w), 6)  # 1 - 0.2 = 0.8, then 0.8 - 2 (0.1) 0.8 + 0.1 (1)
    0.74
    """

    def __init__(self, params, lr=1e-3, *, maximize=False):
        super().__init__(params, dict(lr=check_positive(lr, "lr"), maximize=bool(maximize)))

    @torch.no_grad()
    def step(self, closure=None):
        """One step on every parameter with a gradient; ``closure`` re-evaluates the loss."""
        loss = _closure(closure)
        for group, p, grad, state in _with_gradients(self):
            if not state:
                state["previous_grad"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            p.add_(grad, alpha=-2 * group["lr"]).add_(state["previous_grad"], alpha=group["lr"])
            state["previous_grad"].copy_(grad)
        return loss


def _with_gradients(optimizer):
    """(group, parameter, gradient (negated under ``maximize``), state) of every parameter of
    ``optimizer`` that has a gradient: the walk both optimisers' steps share."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                yield group, p, _gradient(p, group["maximize"]), optimizer.state[p]


def _closure(closure):
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _gradient(p, maximize):
    if p.grad.is_sparse:
        raise RuntimeError("optimistic optimisers do not support sparse gradients")
    return -p.grad if maximize else p.grad


def _check_betas(betas):
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair (beta1, beta2); got {betas!r}") from None
    for name, b in (("betas[0]", b1), ("betas[1]", b2)):
        if not 0.0 <= check_positive(b, name, allow_zero=True) < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {b}")
    return float(b1), float(b2)
