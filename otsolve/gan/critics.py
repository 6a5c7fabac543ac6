"""Neural critics for the Kantorovich potential phi, each with its way of keeping (phi, psi) admissible.

Convention (as in the seed poster, Mallasto, Montufar, Gerolin): ``fake`` samples carry phi, ``real``
samples carry psi, and every critic maximises ``mean phi(fake) + mean psi(real)`` over its weights:

* :class:`WeightClippingCritic` (Arjovsky, Chintala, Bottou 2017): psi = -phi, weights clipped to a box;
* :class:`GradientPenaltyCritic` (Gulrajani et al. 2017): psi = -phi, penalty (|grad phi| - 1)^2;
* :class:`CTransformCritic` (Mallasto et al.): psi = the batch c-transform of phi,
  psi(y_j) = min_i c(x_i, y_j) - phi(x_i), admissible by construction.
"""
from __future__ import annotations

import torch

from .._validation import check_choice, check_positive

CRITICS = ("wc", "gp", "ctransform")
DISTANCE_FLOOR = 1e-30  # squared distances are clamped here before sqrt: gradient 0 (not NaN) at x == y


def mlp(in_dim, out_dim=1, hidden=(128, 128, 128), activation=torch.nn.ReLU):
    """A fully connected network ``in_dim -> hidden... -> out_dim`` (the critics' and generators' default).

    Examples
    --------
    >>> mlp(2, 1, hidden=(8,))
    Sequential(
      (0): Linear(in_features=2, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=1, bias=True)
    )
    """
    layers, width = [], in_dim
    for h in hidden:
        layers += [torch.nn.Linear(width, h), activation()]
        width = h
    layers.append(torch.nn.Linear(width, out_dim))
    return torch.nn.Sequential(*layers)


def pairwise_cost(x, y, p=1):
    """|x_i - y_j|^p for p in {1, 2}, differentiable (gradient 0 at coincident points for p=1)."""
    d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(dim=2)
    return d2 if p == 2 else torch.sqrt(d2.clamp_min(DISTANCE_FLOOR))


class Critic:
    """A potential network ``net`` (batch (n, d) -> (n,) or (n, 1)) with an admissibility method.

    Parameters
    ----------
    net : torch.nn.Module
    optimizer : torch.optim.Optimizer, optional
        Defaults to the optimiser of the method's paper on ``net.parameters()``.

    Methods give the critic's training loss, the generator's loss and the batch W1 estimate.
    """

    name = "critic"

    def __init__(self, net, *, optimizer=None):
        if not isinstance(net, torch.nn.Module):
            raise TypeError(f"net must be a torch.nn.Module; got {type(net).__name__}")
        self.net = net
        self.optimizer = optimizer if optimizer is not None else self.default_optimizer(net.parameters())
        self._last_real = None

    def default_optimizer(self, params):
        raise NotImplementedError

    def phi(self, x):
        """The potential on a batch, shape (n,)."""
        return self.net(x.reshape(x.shape[0], -1)).reshape(x.shape[0])

    def psi(self, fake, real):
        """The potential on the real side: -phi for Lipschitz critics."""
        return -self.phi(real)

    def objective(self, fake, real):
        """mean phi(fake) + mean psi(real): the batch estimate of W1, differentiable."""
        return self.phi(fake).mean() + self.psi(fake, real).mean()

    def penalty(self, fake, real):
        return fake.new_zeros(())

    def critic_loss(self, fake, real):
        """The loss the critic minimises: minus the objective (plus its penalty); inputs are detached."""
        fake, real = _flat(fake.detach(), "fake"), _flat(real.detach(), "real")
        _check_pair(fake, real)
        self._last_real = real
        return -self.objective(fake, real) + self.penalty(fake, real)

    def generator_loss(self, fake, real=None):
        """The loss the generator minimises (the critic's estimate as a function of ``fake``).

        ``real`` is needed by the c-transform only; by default the last real batch of ``critic_loss``.
        """
        fake = _flat(fake, "fake")
        return self.phi(fake).mean()

    def estimate(self, fake, real):
        """The batch W1 estimate ``mean phi(fake) + mean psi(real)`` as a float."""
        fake, real = _flat(fake.detach(), "fake"), _flat(real.detach(), "real")
        _check_pair(fake, real)
        with torch.no_grad():
            return float(self.objective(fake, real))

    def step(self, fake, real):
        """One optimiser step on :meth:`critic_loss`; returns the loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.critic_loss(fake, real)
        loss.backward()
        self.optimizer.step()
        self.after_step()
        return float(loss.detach())

    def after_step(self):
        pass

    def __repr__(self):
        return f"{type(self).__name__}({self.net.__class__.__name__})"


class WeightClippingCritic(Critic):
    """WGAN critic (Arjovsky et al. 2017): weights clipped to [-clip, clip]; RMSprop(lr=5e-5).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> critic = WeightClippingCritic(mlp(2, hidden=(16,)))
    >>> _ = critic.step(torch.randn(8, 2) + 1, torch.randn(8, 2) - 1)
    >>> max(float(w.abs().max()) for w in critic.net.parameters()) <= 0.01
    True
    """

    name = "wc"

    def __init__(self, net, *, clip=0.01, lr=5e-5, optimizer=None):
        self.clip, self.lr = check_positive(clip, "clip"), check_positive(lr, "lr")
        super().__init__(net, optimizer=optimizer)
        self.after_step()  # start inside the box, as the clipped network is the admissible set

    def default_optimizer(self, params):
        return torch.optim.RMSprop(params, lr=self.lr)

    @torch.no_grad()
    def after_step(self):
        for w in self.net.parameters():
            w.clamp_(-self.clip, self.clip)


class GradientPenaltyCritic(Critic):
    """WGAN-GP critic (Gulrajani et al. 2017): penalty lambda (|grad phi(x_hat)| - 1)^2 at random
    interpolates x_hat of fake and real; Adam(lr=1e-4, betas=(0, 0.9)) as in their Algorithm 1."""

    name = "gp"

    def __init__(self, net, *, penalty_weight=10.0, lr=1e-4, betas=(0.0, 0.9), optimizer=None):
        self.penalty_weight = check_positive(penalty_weight, "penalty_weight", allow_zero=True)
        self.lr, self.betas = check_positive(lr, "lr"), tuple(betas)
        super().__init__(net, optimizer=optimizer)

    def default_optimizer(self, params):
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas)

    def penalty(self, fake, real):
        k = min(fake.shape[0], real.shape[0])
        t = torch.rand(k, 1, dtype=fake.dtype, device=fake.device)
        x_hat = (t * real[:k] + (1 - t) * fake[:k]).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.phi(x_hat).sum(), x_hat, create_graph=True)
        return self.penalty_weight * ((grad.norm(dim=1) - 1.0) ** 2).mean()


class CTransformCritic(Critic):
    """Batch c-transform critic (Mallasto et al.): psi(y_j) = min_i |x_i - y_j|^p - phi(x_i).

    Any phi gives an admissible pair, so the estimate is a lower bound of the batch OT cost (weak
    duality). The poster gives no optimiser; the default is Adam(lr=1e-4, betas=(0.5, 0.999)).
    """

    name = "ctransform"

    def __init__(self, net, *, p=1, lr=1e-4, betas=(0.5, 0.999), optimizer=None):
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"p must be 1 (cost |x - y|) or 2 (cost |x - y|^2); got {p!r}")
        self.p, self.lr, self.betas = int(p), check_positive(lr, "lr"), tuple(betas)
        super().__init__(net, optimizer=optimizer)

    def default_optimizer(self, params):
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas)

    def psi(self, fake, real):
        C = pairwise_cost(fake, real, self.p)
        return (C - self.phi(fake)[:, None]).min(dim=0).values

    def generator_loss(self, fake, real=None):
        fake = _flat(fake, "fake")
        if real is None:
            if self._last_real is None:
                raise ValueError("the c-transform critic's generator_loss needs real samples: pass real=, "
                                 "or call critic_loss(fake, real) first")
            real = self._last_real
        real = _flat(real.detach(), "real")
        _check_pair(fake, real)
        return self.objective(fake, real)

    def transport(self, x):
        """The map of fake samples towards real ones read off phi: T(x) = x - grad phi(x) / 2 (p=2 only).

        At an optimum phi(x) = min_y |x - y|^2 - psi(y), so grad phi(x) = 2 (x - T(x)) where T(x) is
        the minimising y (envelope theorem; the seed's x - (grad h)^{-1}(grad phi(x)), h = |.|^2).
        ``x`` (n, ...) is flattened as the critic reads it and the result has x's shape, detached.
        """
        if self.p != 2:
            raise ValueError(f"transport needs p=2 (cost |x - y|^2, strictly convex); this critic has p={self.p}, "
                             "whose potential does not determine a map: use make_critic('ctransform', net, p=2)")
        flat = _flat(x, "x")
        with torch.enable_grad():
            z = flat.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.phi(z).sum(), z)
        return (z - 0.5 * grad).detach().reshape(x.shape)


def make_critic(kind, net, **options):
    """The critic of ``kind`` ("wc", "gp" or "ctransform") around ``net``, with its defaults."""
    kind = check_choice(kind, "critic", CRITICS)
    cls = {"wc": WeightClippingCritic, "gp": GradientPenaltyCritic, "ctransform": CTransformCritic}[kind]
    return cls(net, **options)


def _flat(t, name):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
    if t.ndim == 0 or t.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(t.shape)}); need at least one sample")
    return t.reshape(t.shape[0], -1)


def _check_pair(fake, real):
    if fake.shape[1] != real.shape[1]:
        raise ValueError(f"fake and real must have the same dimension: fake.shape == {tuple(fake.shape)}, "
                         f"real.shape == {tuple(real.shape)}")
