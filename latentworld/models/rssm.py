"""Recurrent state-space model (RSSM; Hafner et al., "Learning Latent Dynamics for Planning from
Pixels" (PlaNet), 2019), the paper's second Table 2 baseline.

The state has a deterministic part h_t (a GRU) and a stochastic part z_t (the "z" every metric reads):

- h_1 = 0; h_{t+1} = GRU(h_t, φ(z_t, u_t));
- z_1 ~ p(z_1) (the VHP or N(0, I)); z_t ~ N(μ_p(h_t), diag σ_p²(h_t)) for t > 1;
- x_t ~ p_θ(x_t | z_t, h_t) (the decoders of ``networks.py``, fed (z, h)).

Recognition is a filter: q(z_t | h_t, e(x_t)) = N(μ_q, diag σ_q²) from the GRU state and the encoded
frame. Rate: log q(z_1) − log p(z_1) at one sample, plus Σ_{t>1} KL(q(z_t|·) ‖ p(z_t | h_t)).

Like the KVAE, the RSSM keeps part of its state (h) outside z, so it is not Markov in z: it trains,
is evaluated and predicts (carrying h), but its ``sample_next``, ``filter_step`` and ``decode_mean``
refuse, and so do the latent envs and the observer. Predictions from "the smoothed z_1" start from
q(z_1 | x_1) with h_1 = 0 (there is no smoother): the recurrent state has seen one frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from latentworld.common.settings import check_settings, setting
from latentworld.models.base import Belief, StateSpaceModel
from latentworld.models.networks import Decoder, Encoder, frame_features, mlp, split_gaussian
from latentworld.models.prior import diag_gaussian_log_prob, make_prior
from latentworld.probability.noise import batch_noise


@dataclass
class RSSMConfig:
    """The RSSM's sizes and options (``model.kind: rssm``)."""

    kind: str = setting("rssm", choices=("rssm",))
    """The model (the registry name in ``latentworld.models.MODELS``)."""
    dim_z: int = setting(3, low=1)
    """Size of the stochastic state z."""
    deterministic: int = setting(32, low=1)
    """Size of the GRU state h."""
    obs_kind: str = setting("image", choices=("image", "image_conv", "vector"))
    """Observation networks, as the EKVAE's."""
    hidden: int = setting(256, low=1)
    """Width of the encoder/decoder hidden layers."""
    feature_dim: int = setting(64, low=1)
    """Size of the encoded frame e(x_t) the posterior reads."""
    transition_hidden: int = setting(64, low=1)
    """Width of φ(z, u) and of the prior and posterior networks."""
    prior: str = setting("vhp", choices=("vhp", "normal"))
    """Prior of z_1: "vhp" or "normal"."""

    def __post_init__(self) -> None:
        check_settings(self)


class RSSM(StateSpaceModel):
    """Recurrent state-space model.

    Args:
        config: sizes and options.
        obs_shape: ``(C, H, W)`` for images, ``(Dobs,)`` for vectors.
        dim_u: action size.
    """

    kind = "rssm"
    config_class = RSSMConfig
    markovian = False

    def __init__(self, config: RSSMConfig, obs_shape: tuple[int, ...], dim_u: int) -> None:
        super().__init__()
        self.config, self.obs_shape, self.dim_u = config, tuple(obs_shape), dim_u
        dz, dh, width = config.dim_z, config.deterministic, config.transition_hidden
        # (θ, φ): frame features, decoder of (z, h), posterior q(z_t | h_t, e(x_t)).
        self.encoder = Encoder(config.obs_kind, self.obs_shape, config.feature_dim, config.hidden)
        self.decoder = Decoder(config.obs_kind, self.obs_shape, dz + dh, config.hidden)
        self.posterior_net = mlp(dh + config.feature_dim, width, 2 * dz, n_layers=1)
        # Transition: the GRU and the prior p(z_t | h_t).
        self.input_net = nn.Sequential(nn.Linear(dz + dim_u, width), nn.ELU())
        self.gru = nn.GRUCell(width, dh)
        self.prior_net = mlp(dh, width, 2 * dz, n_layers=1)
        self.prior = make_prior(config.prior, dz)

    # ----- sizes and parameter groups
    def observation_parameters(self) -> list[nn.Parameter]:
        """Decoder (θ) and recognition (φ: frame encoder and posterior network)."""
        return [*(p for net in (self.decoder, self.encoder, self.posterior_net) for p in net.parameters())]

    # ----- pieces
    def _features(self, x: Tensor) -> Tensor:
        """e(x_t) ``(B, T, F)`` for x ``(B, T, *obs_shape)``."""
        return frame_features(self.encoder, x, self.obs_shape)

    def _next_hidden(self, h: Tensor, z: Tensor, u: Tensor) -> Tensor:
        """h_{t+1} ``(N, Dh)`` from h_t, z_t ``(N, Dz)`` and u_t ``(N, Du)``."""
        return self.gru(self.input_net(torch.cat([z, u], dim=-1)), h)

    def _filter(self, x: Tensor, u: Tensor, sample: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Run the posterior over x ``(B, T, ...)``. Returns z ``(B, T, Dz)`` (samples, or the means if not
        ``sample``), h ``(B, T, Dh)``, q's means and log-variances ``(B, T, Dz)``, and the KL of q against
        the transition's prior for t > 1 ``(B,)``."""
        features = self._features(x)
        h = features.new_zeros(x.shape[0], self.config.deterministic)
        zs, hs, means, logvars = [], [], [], []
        kl = features.new_zeros(x.shape[0])
        for t in range(x.shape[1]):
            if t > 0:
                h = self._next_hidden(h, zs[-1], u[:, t - 1])
            mean, logvar = split_gaussian(self.posterior_net(torch.cat([h, features[:, t]], dim=-1)))
            if t > 0:
                mean_p, logvar_p = split_gaussian(self.prior_net(h))
                kl = kl + 0.5 * (logvar_p - logvar + (logvar.exp() + (mean - mean_p) ** 2) / logvar_p.exp() - 1).sum(-1)
            zs.append(mean + batch_noise(mean) * (0.5 * logvar).exp() if sample else mean)
            hs.append(h)
            means.append(mean)
            logvars.append(logvar)
        return torch.stack(zs, 1), torch.stack(hs, 1), torch.stack(means, 1), torch.stack(logvars, 1), kl

    def _decode(self, z: Tensor, h: Tensor) -> Tensor:
        """Mean observations ``(..., *obs_shape)`` of (z, h) ``(..., Dz)``, ``(..., Dh)``."""
        return self.decoder.mean(torch.cat([z, h], dim=-1))

    # ----- the interface
    def loss_terms(self, x: Tensor, u: Tensor) -> dict[str, Tensor]:
        """Distortion −Σ log p(x_t | z_t, h_t); rate log q(z_1) − log p(z_1) (one sample) + Σ KL; ``(B,)``."""
        batch, steps = x.shape[:2]
        z, h, mean, logvar, kl = self._filter(x, u, sample=True)
        log_px = self.decoder.log_prob(x.reshape(batch * steps, *self.obs_shape),
                                       torch.cat([z, h], dim=-1).reshape(batch * steps, -1))
        distortion = -log_px.reshape(batch, steps).sum(1)
        rate = diag_gaussian_log_prob(z[:, 0], mean[:, 0], logvar[:, 0]) - self.prior.log_prob_bound(z[:, 0]) + kl
        return {"distortion": distortion, "rate": rate,
                "distortion_per_dim": distortion.mean() / (steps * x[0, 0].numel())}

    def posterior_means(self, x: Tensor, u: Tensor) -> Tensor:
        """The filtered means of z ``(B, T, Dz)`` along the mean path."""
        return self._filter(x, u, sample=False)[0]

    def posterior_initial(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        _, _, mean, logvar, _ = self._filter(x[:, :1], u[:, :1], sample=False)
        return mean[:, 0], torch.diag_embed(logvar[:, 0].exp())

    @torch.no_grad()
    def predict(self, x: Tensor, u: Tensor, n_condition: int = 5, mode: str = "smoothed") -> Tensor:
        """Open-loop prediction: from z_1 ~ q(z_1 | x_1), h_1 = 0 (``"smoothed"``) or from z_n ~ q and h_n after
        x_{1:n} (``"filtered"``), then the GRU with the prior's mean z and the true actions."""
        if mode not in ("smoothed", "filtered"):
            raise ValueError(f"unknown prediction mode {mode!r}")
        start = 0 if mode == "smoothed" else n_condition - 1
        _, hs, means, logvars, _ = self._filter(x[:, :start + 1], u[:, :start + 1], sample=False)
        h = hs[:, -1]
        z = means[:, -1] + batch_noise(means[:, -1]) * (0.5 * logvars[:, -1]).exp()
        zs, hs_out = [z], [h]
        for t in range(start, x.shape[1] - 1):
            h = self._next_hidden(h, z, u[:, t])
            z = split_gaussian(self.prior_net(h))[0]
            zs.append(z)
            hs_out.append(h)
        return self._decode(torch.stack(zs, 1), torch.stack(hs_out, 1))

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.prior.sample(n, generator)

    def sample_next(self, z: Tensor, u: Tensor, generator: torch.Generator | None = None,
                    noise_scale: float = 1.0) -> Tensor:
        self.refuse_step_by_step("sample_next (imagination)")

    def decode_mean(self, z: Tensor) -> Tensor:
        self.refuse_step_by_step("decode_mean (decoding reads h as well)")

    def filter_step(self, belief: Belief | None, u_prev: Tensor | None, x: Tensor) -> Belief:
        self.refuse_step_by_step("filter_step (online filtering)")

    def encode_position(self, x: Tensor) -> Tensor:
        raise NotImplementedError("the RSSM's z is not split into position and velocity: it has no position goals")
