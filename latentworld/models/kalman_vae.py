"""The Kalman VAE family: an auxiliary-variable model whose latent dynamics are linear-Gaussian
given mixing weights, so the posterior of z comes in closed form from a Kalman smoother.

Generative model (z ∈ R^Dz, a ∈ R^Da, u ∈ R^Du):

- z_1 ~ p(z_1): the VHP (or N(0, I) as the ablation);
- z_{t+1} ~ N(F_t z_t + B_t u_t, Q_t) with (F_t, B_t, Q_t) = Σ_m α_{t,m} (F^m, B^m, Q^m);
  Q^m are diagonal variances, so every mixture stays positive definite;
- a_t ~ N(H z_t, R): H the rectangular identity (first Da dims of z are the "position",
  the rest the "velocity"), or learned with ``learn_h``; R learned diagonal;
- x_t ~ p_θ(x_t | a_t): Bernoulli for images, Gaussian for angle vectors.

What makes a member of the family is where the mixing weights α_t come from (a subclass's
:meth:`KalmanVAE.mixing_weights`): the EKVAE computes them from the state, softmax(g(z_t, u_t)),
and smooths with the filtered mean as linearisation point; the KVAE from an LSTM over the
pseudo-observations a_{1:t}, which :meth:`KalmanVAE.transition_inputs` appends to the actions.

Recognition: a_t ~ q_φ(a_t|x_t); the sampled a_{1:T} are the pseudo-observations of the Kalman
smoother in z. The filter's initial belief must be Gaussian but the VHP is not: the filter starts
from a learned Gaussian N(m_0, diag s_0) (initialised to N(0, I)) and the VHP enters the rate
through Eq. 18 at a sample of the smoothed z_1.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from latentworld.common.errors import ConfigError
from latentworld.common.settings import check_settings, setting
from latentworld.models.base import StateSpaceModel
from latentworld.models.networks import Decoder, Encoder
from latentworld.models.prior import make_prior
from latentworld.probability.gaussian import (
    LOG_2PI,
    expected_observation_nll,
    mvn_entropy,
    mvn_kl,
    mvn_log_prob,
    mvn_sample,
)
from latentworld.probability.kalman import KalmanResult, Transition, kalman_smoother
from latentworld.probability.mixture_transition import as_transition, mix_bases
from latentworld.probability.noise import batch_noise


@dataclass
class KalmanVAEConfig:
    """Sizes and options every Kalman VAE shares; a member's config adds its own (``kind`` first)."""

    kind: str = setting("ekvae", choices=("ekvae",))
    """The model (the registry name in ``latentworld.models.MODELS``)."""
    dim_z: int = setting(3, low=1)
    """Size of the latent state z (position dims first, then velocity dims)."""
    dim_a: int = setting(2, low=1)
    """Size of the auxiliary variable a = H z + noise (the position part of z)."""
    num_bases: int = setting(16, low=1)
    """M, the number of base matrices F, B, Q that the mixing weights combine."""
    obs_kind: str = setting("image", choices=("image", "image_conv", "vector"))
    """Observation networks: "image" (MLP, small grayscale), "image_conv" (64×64 RGB) or "vector"."""
    hidden: int = setting(256, low=1)
    """Width of the encoder/decoder hidden layers."""
    conv_width: int = setting(32, low=1)
    """For ``obs_kind: image_conv``: channels of the outer conv layers (the inner two have twice as many)."""
    prior: str = setting("vhp", choices=("vhp", "normal"))
    """Initial-state prior: "vhp" (variational hierarchical prior) or "normal" (ablation)."""
    learn_h: bool = False
    """Learn H instead of the rectangular identity (disables the position/velocity split)."""
    inference: str = setting("smoother", choices=("smoother", "filter"))
    """Recognition model: "smoother" (paper §4) or "filter" (App. A.6)."""
    init_process_logvar: float = setting(-5.0, low=-20, high=5)
    """Initial log-variance of the process noise Q."""
    init_obs_logvar: float = setting(-4.0, low=-20, high=5)
    """Initial log-variance of the pseudo-observation noise R."""

    def __post_init__(self) -> None:
        check_settings(self)
        if self.dim_a > self.dim_z:
            raise ConfigError(f"dim_a ({self.dim_a}) must not exceed dim_z ({self.dim_z}): a = H z is part of z")


class KalmanVAE(StateSpaceModel):
    """The shared machinery: observation networks, the linear-Gaussian pieces, Kalman inference, the
    objective (paper Eq. 15, 17, 18) and open-loop prediction.

    A subclass supplies :meth:`mixing_weights` (and, if they read more than the actions,
    :meth:`transition_inputs`). Throughout, ``v`` ``(..., Dv)`` is what the transition reads beside z:
    the actions u in its first Du columns, then whatever the subclass appends.

    Args:
        config: sizes and options.
        obs_shape: ``(C, H, W)`` for images, ``(Dobs,)`` for vectors.
        dim_u: action size.
    """

    linear_given_inputs = False
    """True when the transition does not read z (the mixing weights come from the inputs v alone)."""

    def __init__(self, config: KalmanVAEConfig, obs_shape: tuple[int, ...], dim_u: int) -> None:
        super().__init__()
        if config.dim_a > config.dim_z:
            raise ValueError(f"dim_a ({config.dim_a}) must not exceed dim_z ({config.dim_z})")
        self.config, self.obs_shape, self.dim_u = config, tuple(obs_shape), dim_u
        dz, da, m = config.dim_z, config.dim_a, config.num_bases
        # (θ, φ): observation networks.
        self.encoder = Encoder(config.obs_kind, self.obs_shape, da, config.hidden, config.conv_width)
        self.decoder = Decoder(config.obs_kind, self.obs_shape, da, config.hidden, config.conv_width)
        # Here, before the base matrices: the order in which parameters are drawn fixes what a seed gives.
        self.build_mixing_network(config)
        # ψ: base matrices, auxiliary-variable model and the filter's initial belief.
        self.F_bases = nn.Parameter(torch.eye(dz).repeat(m, 1, 1) + 0.01 * torch.randn(m, dz, dz))
        self.B_bases = nn.Parameter(0.01 * torch.randn(m, dz, dim_u))
        self.Q_logvar_bases = nn.Parameter(torch.full((m, dz), config.init_process_logvar))
        self.R_logvar = nn.Parameter(torch.full((da,), config.init_obs_logvar))
        eye = torch.eye(da, dz)
        self.H_param = nn.Parameter(eye.clone()) if config.learn_h else None
        self.register_buffer("H_identity", eye)
        self.init_mean = nn.Parameter(torch.zeros(dz))
        self.init_logvar = nn.Parameter(torch.zeros(dz))
        # (ψ0, φ0): the prior of z_1.
        self.prior = make_prior(config.prior, dz)

    # ----- what a member supplies
    @abstractmethod
    def build_mixing_network(self, config: KalmanVAEConfig) -> None:
        """Create the modules that produce the mixing weights (called once by ``__init__``)."""

    @abstractmethod
    def mixing_weights(self, z: Tensor, v: Tensor) -> Tensor:
        """α ``(N, M)`` (rows sum to 1) of the transition from z ``(N, Dz)`` with inputs v ``(N, Dv)``."""

    def transition_inputs(self, a: Tensor, u: Tensor) -> Tensor:
        """What the transition reads beside z at every step, ``(B, T, Dv)``, from the pseudo-observations
        a ``(B, T, Da)`` and actions u ``(B, T, Du)``: the actions themselves unless overridden."""
        return u

    # ----- parameter groups (REWO trains only the observation networks in its initial phase)
    def observation_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    # ----- sizes
    @property
    def position_dims(self) -> int | None:
        """Da when H is the rectangular identity (z = (position a, velocity)), else None."""
        return self.config.dim_a if self.disentangled else None

    # ----- model pieces
    @property
    def H(self) -> Tensor:
        """``(Da, Dz)``."""
        return self.H_identity if self.H_param is None else self.H_param

    @property
    def R(self) -> Tensor:
        """``(Da, Da)`` diagonal."""
        return torch.diag(self.R_logvar.exp())

    @property
    def disentangled(self) -> bool:
        """True when the first Da dims of z are the position (H is the rectangular identity)."""
        return self.H_param is None

    def initial_belief(self, batch: int) -> tuple[Tensor, Tensor]:
        """The filter's Gaussian belief of z_1: mean ``(B, Dz)``, cov ``(B, Dz, Dz)``."""
        mean = self.init_mean.expand(batch, -1)
        cov = torch.diag(self.init_logvar.exp()).expand(batch, -1, -1)
        return mean, cov

    def _mixture(self, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """F ``(N, Dz, Dz)``, B ``(N, Dz, Du)`` and the diagonal of Q ``(N, Dz)`` at (z, v)."""
        return mix_bases(self.mixing_weights(z, v), self.F_bases, self.B_bases, self.Q_logvar_bases.exp())

    def smoother_transition(self) -> Transition:
        """The transition as :meth:`infer` hands it to the Kalman smoother: :meth:`transition`, unless a
        member declares its structure (the EKVAE's mixture, whose whole filter the fused kernels run)."""
        return self.transition

    def transition(self, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The transition at (z, v), the Kalman core's ``transition`` callable.

        Args: z ``(N, Dz)``, v ``(N, Dv)``.
        Returns: F ``(N, Dz, Dz)``, B ``(N, Dz, Dv)`` (zero beyond the action columns), Q ``(N, Dz, Dz)``
        (diagonal).
        """
        return as_transition(*self._mixture(z, v), v.shape[-1])

    def next_mean(self, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``(N, Dz)`` and diagonal variance ``(N, Dz)`` of p(z_{t+1} | z_t, v_t).

        Args: z ``(N, Dz)``, v ``(N, Dv)``.
        """
        F_mix, B_mix, q_var = self._mixture(z, v)
        mean = (F_mix @ z.unsqueeze(-1) + B_mix @ v[:, :self.dim_u].unsqueeze(-1)).squeeze(-1)
        return mean, q_var

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples of the prior p(z_1) ``(n, Dz)``."""
        return self.prior.sample(n, generator)

    def decode_mean(self, z: Tensor) -> Tensor:
        """Mean observation from z via a = H z. Args: z ``(..., Dz)``. Returns ``(..., *obs_shape)``."""
        return self.decoder.mean(z @ self.H.T)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(a|x). Args: x ``(B, T, *obs_shape)``. Returns mean, logvar ``(B, T, Da)``."""
        mean, logvar = self.encoder(x.reshape(-1, *self.obs_shape))
        return mean.reshape(*x.shape[:2], -1), logvar.reshape(*x.shape[:2], -1)

    def encode_position(self, x: Tensor) -> Tensor:
        """Mean of q(a|x) for frames ``(N, *obs_shape)``: ``(N, Da)``."""
        return self.encoder(x)[0]

    def infer(self, a: Tensor, v: Tensor) -> KalmanResult:
        """Kalman filter + RTS smoother over pseudo-observations a ``(B, T, Da)`` with transition inputs
        v ``(B, T, Dv)``.

        A member whose transition ignores z (``linear_given_inputs``) runs the parallel-in-time smoother
        on a GPU, where it measured 4-17x faster than the sequential one at T >= 60; on a CPU batched
        products of tiny matrices make it slower, so the sequential one runs there, its whole filter in
        one call of the fused kernels (``docs/results/kalman_timing*.md``).
        """
        mean0, cov0 = self.initial_belief(a.shape[0])
        return kalman_smoother(a, v, self.smoother_transition(), self.H, self.R, mean0, cov0,
                               linear_given_inputs=self.linear_given_inputs,
                               parallel=self.linear_given_inputs and a.is_cuda)

    def posterior(self, x: Tensor, u: Tensor, sample_a: bool = False) -> KalmanResult:
        """Filtered and smoothed beliefs of z given images x ``(B, T, ...)``, actions u ``(B, T, Du)``.

        Uses the mean of q(a|x) as pseudo-observations unless ``sample_a``.
        """
        mean_a, logvar_a = self.encode(x)
        a = mean_a + batch_noise(mean_a) * (0.5 * logvar_a).exp() if sample_a else mean_a
        return self.infer(a, self.transition_inputs(a, u))

    def posterior_means(self, x: Tensor, u: Tensor) -> Tensor:
        """Smoothed means ``(B, T, Dz)`` with the encoder means as pseudo-observations."""
        return self.posterior(x, u).smoothed_mean

    def posterior_initial(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """Smoothed mean ``(B, Dz)`` and covariance ``(B, Dz, Dz)`` of z_1."""
        result = self.posterior(x, u)
        return result.smoothed_mean[:, 0], result.smoothed_cov[:, 0]

    # ----- objective (paper Eq. 15, 17, 18)
    def loss_terms(self, x: Tensor, u: Tensor) -> dict[str, Tensor]:
        """Distortion and rate per sequence, one reparameterised sample.

        Args: x ``(B, T, *obs_shape)``, u ``(B, T, Du)``.
        Returns: ``distortion`` and ``rate`` ``(B,)`` in nats, and ``distortion_per_dim`` (scalar,
        the batch mean per time step and observed dimension, what REWO's D0 bounds).
        """
        batch, steps = x.shape[:2]
        with record_function("encoder"):  # the named ranges show in a profile (scripts/bench_training_speed.py)
            mean_a, logvar_a = self.encode(x)
        a = mean_a + batch_noise(mean_a) * (0.5 * logvar_a).exp()
        with record_function("decoder"):
            log_px = self.decoder.log_prob(x.reshape(batch * steps, *self.obs_shape), a.reshape(batch * steps, -1))
        distortion = -log_px.reshape(batch, steps).sum(1)

        v = self.transition_inputs(a, u)
        with record_function("kalman smoother"):
            result = self.infer(a, v)
        smoothing = self.config.inference == "smoother"
        post_mean = result.smoothed_mean if smoothing else result.filtered_mean
        post_cov = result.smoothed_cov if smoothing else result.filtered_cov
        H, R = self.H, self.R
        entropy_q = 0.5 * (logvar_a + 1.0 + LOG_2PI).sum(-1)  # H[q(a_t|x_t)], (B, T)

        # Initial term (Eq. 18): E_s(z1)[-log N(a_1; H z_1, R)] in closed form, -H[s(z1)], -F_VHP(z_1).
        m1, P1 = post_mean[:, 0], post_cov[:, 0]
        nll_a1 = expected_observation_nll(a[:, 0], m1, P1, H, R)
        z1 = mvn_sample(m1, P1)
        rate = -entropy_q[:, 0] + nll_a1 - mvn_entropy(P1) - self.prior.log_prob_bound(z1)

        if steps > 1:
            # Transition terms (Eq. 17): F, B, Q at a *sample* of z_{t-1}, so a state-dependent mixture
            # learns the whole state range, not only the filtered means (§4.3 (i)).
            z_prev = mvn_sample(post_mean[:, :-1], post_cov[:, :-1]).reshape(-1, post_mean.shape[-1])
            z_mean, q_var = self.next_mean(z_prev, v[:, :-1].reshape(-1, v.shape[-1]))
            a_cov = (H * q_var.unsqueeze(-2)) @ H.T + R  # H diag(q) H^T + R
            nll_a = -mvn_log_prob(a[:, 1:].reshape(-1, a.shape[-1]), z_mean @ H.T, a_cov).reshape(batch, -1)
            rate = rate + (nll_a - entropy_q[:, 1:]).sum(1)
            if smoothing:
                kl = mvn_kl(post_mean[:, :-1], post_cov[:, :-1], result.filtered_mean[:, :-1],
                            result.filtered_cov[:, :-1])
                rate = rate + kl.sum(1)
        return {
            "distortion": distortion,
            "rate": rate,
            "distortion_per_dim": distortion.mean() / (steps * x[0, 0].numel()),
        }

    # ----- prediction
    def conditioned_start(self, x: Tensor, u: Tensor, n_condition: int, mode: str) -> tuple[Tensor, int]:
        """Where an open-loop prediction starts: z ``(B, Dz)`` sampled from the smoothed z_1
        (``"smoothed"``) or the filtered z_n (``"filtered"``) given x_{1:n}, u_{1:n-1}, and the index of
        the frame that z belongs to."""
        result = self.posterior(x[:, :n_condition], u[:, :n_condition])
        if mode == "smoothed":
            return mvn_sample(result.smoothed_mean[:, 0], result.smoothed_cov[:, 0]), 0
        if mode == "filtered":
            return mvn_sample(result.filtered_mean[:, -1], result.filtered_cov[:, -1]), n_condition - 1
        raise ValueError(f"unknown prediction mode {mode!r}")
