"""The minibatch energy distance of OT-GAN (Salimans, Zhang, Radford, Metaxas, ICLR 2018)."""
from __future__ import annotations

import numpy as np
import torch

import otsolve

from .._validation import check_positive, check_points
from .losses import POWERS, _as_batch, _pull, _to_numpy, _to_torch

# (coefficient, first batch, second batch) of each W term; batches numbered x, x2, y, y2
TERMS = ((1.0, 0, 2), (1.0, 0, 3), (1.0, 1, 2), (1.0, 1, 3), (-2.0, 0, 1), (-2.0, 2, 3))
NAMES = ("x", "x2", "y", "y2")


def minibatch_energy_distance(x, x2, y, y2, *, reg, p=2, **options):
    r"""Return OT-GAN's minibatch energy distance between two batches per side, differentiable.

    .. math::
        D = W(x, y) + W(x, y') + W(x', y) + W(x', y') - 2 W(x, x') - 2 W(y, y'),\qquad
        W(u, v) = \langle C, P^\varepsilon \rangle

    where :math:`P^\varepsilon` is the entropic plan of :func:`otsolve.sinkhorn` between the uniform
    batches for the cost ``C_ij = |u_i - v_j|^p`` (the returned value is its linear cost, not the
    entropic objective). Gradients hold every plan fixed, as OT-GAN does (no backpropagation through
    Sinkhorn): ``d D / d u_i = sum_k coef_k sum_j P^k_ij grad_u c(u_i, v_j)`` over the terms holding u.
    By the envelope theorem this is the exact gradient of the same combination of entropic
    objectives ``<C, P> + reg KL(P | a b^T)`` (not of D itself, whose plans move with the points).

    Parameters
    ----------
    x, x2 : (n, ...) torch.Tensor
        Two generated batches of the same size (trailing dimensions flattened).
    y, y2 : (m, ...) torch.Tensor
        Two data batches of the same size, of the same dimension as x.
    reg : float
        Entropic strength epsilon > 0 in cost units.
    p : {1, 2}
        Cost ``|u - v|`` or ``|u - v|^2``.
    **options
        Passed to :func:`otsolve.sinkhorn` (``tol``, ``max_iter``, ...).

    Returns
    -------
    torch.Tensor
        A 0-d tensor on x's device and dtype.

    Raises
    ------
    ValueError, TypeError
        On non-tensors, mismatched batch sizes or dimensions, p not 1 or 2, reg missing or <= 0.

    References
    ----------
    Salimans, Zhang, Radford, Metaxas (2018), Improving GANs using optimal transport.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0], [1.0]])
    >>> round(float(minibatch_energy_distance(x, x, x + 3, x + 3, reg=0.01)), 4)  # 4 W(x, x+3) - 0 - 0
    36.0
    """
    batches = [_as_batch(t, name) for t, name in zip((x, x2, y, y2), NAMES)]
    if p not in POWERS or isinstance(p, bool):
        raise ValueError(f"p must be 1 (cost |x - y|) or 2 (cost |x - y|^2); got {p!r}")
    if reg is None:
        raise ValueError("reg is required (entropic strength in cost units, > 0)")
    reg = check_positive(reg, "reg")
    clouds = [check_points(_to_numpy(t), name) for t, name in zip(batches, NAMES)]
    _check_sizes(clouds)
    value, plans = 0.0, []
    for coef, i, j in TERMS:
        res = otsolve.sinkhorn(otsolve.cost_matrix(clouds[i], clouds[j], p=int(p)), reg=reg, **options)
        value += coef * res.value_linear
        plans.append(np.asarray(res.plan, dtype=np.float64))
    return _FixedPlans.apply(value, plans, clouds, int(p), *batches)


class _FixedPlans(torch.autograd.Function):
    """A precomputed value whose gradients come from the fixed plans of its W terms."""

    @staticmethod
    def forward(ctx, value, plans, clouds, p, *batches):
        ctx.plans, ctx.clouds, ctx.p = plans, clouds, p
        ctx.meta = [(t.dtype, t.device) for t in batches]
        return torch.tensor(value, dtype=batches[0].dtype, device=batches[0].device)

    @staticmethod
    def backward(ctx, grad_out):
        need = ctx.needs_input_grad[4:]
        grads = [np.zeros_like(u) if k else None for u, k in zip(ctx.clouds, need)]
        for (coef, i, j), P in zip(TERMS, ctx.plans):
            if need[i]:
                grads[i] += coef * _pull(P, ctx.clouds[i], ctx.clouds[j], ctx.p)
            if need[j]:
                grads[j] += coef * _pull(P.T, ctx.clouds[j], ctx.clouds[i], ctx.p)
        out = [None if g is None else _to_torch(g, *meta) * grad_out.to(meta[0]) for g, meta in zip(grads, ctx.meta)]
        return (None, None, None, None, *out)


def _check_sizes(clouds):
    for a, b in ((0, 1), (2, 3)):
        if clouds[a].shape[0] != clouds[b].shape[0]:
            raise ValueError(f"{NAMES[a]} and {NAMES[b]} must have the same batch size: {NAMES[a]} has "
                             f"{clouds[a].shape[0]} points, {NAMES[b]} has {clouds[b].shape[0]}")
    for k in range(1, 4):
        if clouds[k].shape[1] != clouds[0].shape[1]:
            raise ValueError(f"all batches must have the same dimension: x has {clouds[0].shape[1]}, "
                             f"{NAMES[k]} has {clouds[k].shape[1]}")
