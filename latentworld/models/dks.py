"""Deep Kalman Smoother (DKS; Krishnan, Shalit and Sontag, "Structured Inference Networks for
Nonlinear State Space Models", 2017), the paper's first baseline.

Generative model: z_1 ~ p(z_1) (VHP or N(0, I)); z_{t+1} ~ N(z_t + f(z_t, u_t), diag σ²(z_t, u_t))
with f, σ MLPs; x_t ~ p_θ(x_t | z_t) (the decoders of ``networks.py``, fed z itself).

Recognition (the structured "ST-R" form): a backward GRU over encoded frames summarises the
future, h_t = GRU(e(x_t), h_{t+1}); a combiner gives q(z_t | z_{t-1}, x_{t:T}) =
N(μ(c_t), diag σ²(c_t)) with c_t = (tanh(W z_{t-1} + b) + h_t) / 2, sampled forward in time.
Nothing ties z to positions and velocities, so the model is not disentangled (``position_dims``
is None: no goals). Online, a frame's belief conditions on that frame alone (the GRU run over a
sequence of one), the nearest this future-looking recognition comes to a filter.
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
class DKSConfig:
    """The DKS's sizes and options (``model.kind: dks``)."""

    kind: str = setting("dks", choices=("dks",))
    """The model (the registry name in ``latentworld.models.MODELS``)."""
    dim_z: int = setting(3, low=1)
    """Size of the latent state z."""
    obs_kind: str = setting("image", choices=("image", "image_conv", "vector"))
    """Observation networks, as the EKVAE's."""
    hidden: int = setting(256, low=1)
    """Width of the encoder/decoder hidden layers."""
    feature_dim: int = setting(64, low=1)
    """Size of the encoded frame e(x_t) the recognition GRU reads."""
    rnn_hidden: int = setting(64, low=1)
    """Width of the recognition GRU's state h_t."""
    transition_hidden: int = setting(64, low=1)
    """Width of the transition MLPs f and σ."""
    prior: str = setting("vhp", choices=("vhp", "normal"))
    """Initial-state prior: "vhp" or "normal"."""

    def __post_init__(self) -> None:
        check_settings(self)


class DKS(StateSpaceModel):
    """Deep Kalman Smoother.

    Args:
        config: sizes and options.
        obs_shape: ``(C, H, W)`` for images, ``(Dobs,)`` for vectors.
        dim_u: action size.
    """

    kind = "dks"
    config_class = DKSConfig

    def __init__(self, config: DKSConfig, obs_shape: tuple[int, ...], dim_u: int) -> None:
        super().__init__()
        self.config, self.obs_shape, self.dim_u = config, tuple(obs_shape), dim_u
        dz = config.dim_z
        # (θ, φ): frame features and decoder. The encoder's "mean" output is the feature e(x_t).
        self.encoder = Encoder(config.obs_kind, self.obs_shape, config.feature_dim, config.hidden)
        self.decoder = Decoder(config.obs_kind, self.obs_shape, dz, config.hidden)
        # Recognition: backward GRU and combiner.
        self.rnn = nn.GRU(config.feature_dim, config.rnn_hidden, batch_first=True)
        self.combine_z = nn.Linear(dz, config.rnn_hidden)
        self.combine_out = nn.Linear(config.rnn_hidden, 2 * dz)
        self.z0 = nn.Parameter(torch.zeros(dz))  # the "z_0" the combiner sees at t = 1
        # Transition.
        self.transition_net = mlp(dz + dim_u, config.transition_hidden, 2 * dz)
        self.prior = make_prior(config.prior, dz)

    # ----- sizes and parameter groups
    def observation_parameters(self) -> list[nn.Parameter]:
        """Decoder (θ) and the whole recognition (φ: frame encoder, GRU, combiner): together a VAE
        of the frames, which REWO's initial phase trains before the transition."""
        recognition = (self.encoder, self.rnn, self.combine_z, self.combine_out)
        return [*self.decoder.parameters(), *(p for net in recognition for p in net.parameters()), self.z0]

    # ----- pieces
    def _future_summaries(self, x: Tensor) -> Tensor:
        """h_t ``(B, T, H)`` from x_{t:T}: the GRU run backwards in time."""
        features = frame_features(self.encoder, x, self.obs_shape)
        backward, _ = self.rnn(features.flip(1))
        return backward.flip(1)

    def _combine(self, z_prev: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """q(z_t | z_{t-1}, h_t): mean and log-variance ``(B, Dz)``."""
        c = 0.5 * (torch.tanh(self.combine_z(z_prev)) + h)
        return split_gaussian(self.combine_out(c))

    def _transition(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """p(z_{t+1} | z_t, u_t): mean and log-variance ``(N, Dz)``."""
        delta, logvar = split_gaussian(self.transition_net(torch.cat([z, u], dim=-1)))
        return z + delta, logvar

    def _recognise(self, x: Tensor, sample: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Run q forward in time. Returns z ``(B, T, Dz)`` (samples, or means if not ``sample``) and
        the means and log-variances of q ``(B, T, Dz)``."""
        h = self._future_summaries(x)
        z_prev = self.z0.expand(x.shape[0], -1)
        zs, means, logvars = [], [], []
        for t in range(x.shape[1]):
            mean, logvar = self._combine(z_prev, h[:, t])
            z_prev = mean + batch_noise(mean) * (0.5 * logvar).exp() if sample else mean
            zs.append(z_prev)
            means.append(mean)
            logvars.append(logvar)
        return torch.stack(zs, 1), torch.stack(means, 1), torch.stack(logvars, 1)

    # ----- the interface
    def loss_terms(self, x: Tensor, u: Tensor) -> dict[str, Tensor]:
        """Distortion −Σ log p(x_t|z_t) and rate Σ log q(z_t|·) − log p(z_t|z_{t−1}, u_{t−1}) (z_1
        under the prior), one sample; ``(B,)`` each."""
        batch, steps = x.shape[:2]
        z, mean_q, logvar_q = self._recognise(x, sample=True)
        log_px = self.decoder.log_prob(x.reshape(batch * steps, *self.obs_shape), z.reshape(batch * steps, -1))
        distortion = -log_px.reshape(batch, steps).sum(1)
        log_q = diag_gaussian_log_prob(z, mean_q, logvar_q).sum(1)  # (B,)
        rate = log_q - self.prior.log_prob_bound(z[:, 0])
        if steps > 1:
            mean_p, logvar_p = self._transition(z[:, :-1].reshape(-1, self.dim_z), u[:, :-1].reshape(-1, self.dim_u))
            log_p = diag_gaussian_log_prob(z[:, 1:].reshape(-1, self.dim_z), mean_p, logvar_p)
            rate = rate - log_p.reshape(batch, steps - 1).sum(1)
        return {"distortion": distortion, "rate": rate,
                "distortion_per_dim": distortion.mean() / (steps * x[0, 0].numel())}

    def posterior_means(self, x: Tensor, u: Tensor) -> Tensor:
        """Means of q along its mean path ``(B, T, Dz)``."""
        return self._recognise(x, sample=False)[0]

    def posterior_initial(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        _, mean, logvar = self._recognise(x, sample=False)
        return mean[:, 0], torch.diag_embed(logvar[:, 0].exp())

    def predict(self, x: Tensor, u: Tensor, n_condition: int = 5, mode: str = "smoothed") -> Tensor:
        """As the EKVAE's: z_1 from q(· | x_{1:n}) ("smoothed") or z_n ("filtered", the last step of q
        over x_{1:n}), then the transition mean with the true actions."""
        if mode not in ("smoothed", "filtered"):
            raise ValueError(f"unknown prediction mode {mode!r}")
        _, mean, logvar = self._recognise(x[:, :n_condition], sample=False)
        t0 = 0 if mode == "smoothed" else n_condition - 1
        z = mean[:, t0] + batch_noise(mean[:, t0]) * (0.5 * logvar[:, t0]).exp()
        zs = [z]
        for t in range(t0, x.shape[1] - 1):
            z = self._transition(z, u[:, t])[0]
            zs.append(z)
        return self.decode_mean(torch.stack(zs, dim=1))

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.prior.sample(n, generator)

    def sample_next(self, z: Tensor, u: Tensor, generator: torch.Generator | None = None,
                    noise_scale: float = 1.0) -> Tensor:
        mean, logvar = self._transition(z, u)
        if noise_scale == 0:
            return mean
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + noise_scale * noise * (0.5 * logvar).exp()

    def decode_mean(self, z: Tensor) -> Tensor:
        return self.decoder.mean(z)

    @torch.no_grad()
    def filter_step(self, belief: Belief | None, u_prev: Tensor | None, x: Tensor) -> Belief:
        """q(z_t | z_{t−1}, x_t): the combiner with the summary of this frame alone; the previous
        belief enters through its mean, moved by the transition under the action since."""
        h = self._future_summaries(x[:, None])[:, 0]
        z_prev = self.z0.expand(x.shape[0], -1) if belief is None else self._transition(belief[0], u_prev)[0]
        mean, logvar = self._combine(z_prev, h)
        return mean, torch.diag_embed(logvar.exp())

    def encode_position(self, x: Tensor) -> Tensor:
        raise NotImplementedError("the DKS's z is not split into position and velocity: it has no position goals")

