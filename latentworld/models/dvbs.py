"""Deep Variational Bayes Filter (DVBS; Karl, Soelch, Bayer and van der Smagt, "Deep Variational
Bayes Filters", 2017), the paper's second baseline.

Transition, locally linear as in the EKVAE: z_{t+1} = A z_t + B u_t + C w_t with
(A, B, C) = Σ_m α_m (A^m, B^m, C^m), α = softmax(g(z_t, u_t)), and process noise w_t ~ N(0, I).
Emission x_t ~ p_θ(x_t | z_t) (the decoders of ``networks.py``, fed z itself).

Recognition infers the *noise*, not the state, so every sampled path obeys the transition (the
point of the DVBS): w_t ~ q(w_t | z_t, u_t, x_{t+1}) from the encoded next frame and the current
state, and z_1 ~ q(z_1 | x_{1:K}) from a GRU over the first K frames (K = ``init_frames``: one
frame shows no velocity). Rate: KL(q(z_1) ‖ p(z_1)) (one sample against the VHP or N(0, I)) plus
Σ_t KL(q(w_t) ‖ N(0, I)). Online, the first frame gives z_1 from the GRU after one frame, and
each next frame moves the belief through q(w_t | ·); the belief is the mean path (its covariance
is the transition's C Cᵀ at the posterior noise's variance, a one-step approximation).
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
class DVBSConfig:
    """The DVBS's sizes and options (``model.kind: dvbs``)."""

    kind: str = setting("dvbs", choices=("dvbs",))
    """The model (the registry name in ``latentworld.models.MODELS``)."""
    dim_z: int = setting(3, low=1)
    """Size of the latent state z."""
    dim_w: int = setting(3, low=1)
    """Size of the process noise w."""
    num_bases: int = setting(16, low=1)
    """M, the number of base matrices A, B, C mixed by softmax(g(z, u))."""
    mixer_hidden: int = setting(64, low=1)
    """Width of the MLP g(z, u)."""
    obs_kind: str = setting("image", choices=("image", "image_conv", "vector"))
    """Observation networks, as the EKVAE's."""
    hidden: int = setting(256, low=1)
    """Width of the encoder/decoder hidden layers."""
    feature_dim: int = setting(64, low=1)
    """Size of the encoded frame e(x_t) recognition reads."""
    recognition_hidden: int = setting(64, low=1)
    """Width of q(w_t | z_t, u_t, x_{t+1}) and of the initial-state GRU."""
    init_frames: int = setting(3, low=1)
    """K, the frames q(z_1 | x_{1:K}) sees."""
    prior: str = setting("vhp", choices=("vhp", "normal"))
    """Prior of z_1: "vhp" or "normal"."""

    def __post_init__(self) -> None:
        check_settings(self)


class DVBS(StateSpaceModel):
    """Deep Variational Bayes Filter.

    Args:
        config: sizes and options.
        obs_shape: ``(C, H, W)`` for images, ``(Dobs,)`` for vectors.
        dim_u: action size.
    """

    kind = "dvbs"
    config_class = DVBSConfig

    def __init__(self, config: DVBSConfig, obs_shape: tuple[int, ...], dim_u: int) -> None:
        super().__init__()
        self.config, self.obs_shape, self.dim_u = config, tuple(obs_shape), dim_u
        dz, dw, m = config.dim_z, config.dim_w, config.num_bases
        # (θ, φ): frame features and decoder. The encoder's "mean" output is the feature e(x_t).
        self.encoder = Encoder(config.obs_kind, self.obs_shape, config.feature_dim, config.hidden)
        self.decoder = Decoder(config.obs_kind, self.obs_shape, dz, config.hidden)
        # Transition.
        self.mixer = mlp(dz + dim_u, config.mixer_hidden, m)
        self.A_bases = nn.Parameter(torch.eye(dz).repeat(m, 1, 1) + 0.01 * torch.randn(m, dz, dz))
        self.B_bases = nn.Parameter(0.01 * torch.randn(m, dz, dim_u))
        self.C_bases = nn.Parameter(0.1 * torch.randn(m, dz, dw))
        # Recognition of the noise and of the initial state.
        self.noise_net = mlp(dz + dim_u + config.feature_dim, config.recognition_hidden, 2 * dw)
        self.initial_rnn = nn.GRU(config.feature_dim, config.recognition_hidden, batch_first=True)
        self.initial_out = nn.Linear(config.recognition_hidden, 2 * dz)
        self.prior = make_prior(config.prior, dz)

    # ----- sizes and parameter groups
    def observation_parameters(self) -> list[nn.Parameter]:
        """Decoder (θ) and the whole recognition (φ: frame encoder, initial-state GRU, noise posterior):
        REWO's initial phase trains them before the transition."""
        recognition = (self.encoder, self.initial_rnn, self.initial_out, self.noise_net)
        return [*self.decoder.parameters(), *(p for net in recognition for p in net.parameters())]

    # ----- pieces
    def _features(self, x: Tensor) -> Tensor:
        """e(x_t) ``(B, T, F)`` for x ``(B, T, *obs_shape)``."""
        return frame_features(self.encoder, x, self.obs_shape)

    def _matrices(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """A ``(N, Dz, Dz)``, B ``(N, Dz, Du)``, C ``(N, Dz, Dw)`` at (z, u)."""
        alpha = torch.softmax(self.mixer(torch.cat([z, u], dim=-1)), dim=-1)
        n, dz = z.shape
        mix = [(alpha @ bases.flatten(1)).view(n, dz, -1) for bases in (self.A_bases, self.B_bases, self.C_bases)]
        return mix[0], mix[1], mix[2]

    def _step(self, z: Tensor, u: Tensor, w: Tensor) -> Tensor:
        """z_{t+1} = A z + B u + C w. Args ``(N, Dz)``, ``(N, Du)``, ``(N, Dw)``."""
        A, B, C = self._matrices(z, u)
        return (A @ z.unsqueeze(-1) + B @ u.unsqueeze(-1) + C @ w.unsqueeze(-1)).squeeze(-1)

    def _initial(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """q(z_1 | x_{1:K}): mean and log-variance ``(B, Dz)`` from features ``(B, K, F)``."""
        _, last = self.initial_rnn(features)
        return split_gaussian(self.initial_out(last[-1]))

    def _noise_posterior(self, z: Tensor, u: Tensor, next_features: Tensor) -> tuple[Tensor, Tensor]:
        """q(w_t | z_t, u_t, x_{t+1}): mean and log-variance ``(N, Dw)``."""
        return split_gaussian(self.noise_net(torch.cat([z, u, next_features], dim=-1)))

    def _recognise(self, x: Tensor, u: Tensor, sample: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The posterior path. Returns z ``(B, T, Dz)``, the noise KL ``(B,)``, and q(z_1)'s mean and
        log-variance ``(B, Dz)``."""
        features = self._features(x)
        mean1, logvar1 = self._initial(features[:, :self.config.init_frames])
        z = mean1 + batch_noise(mean1) * (0.5 * logvar1).exp() if sample else mean1
        path, kl = [z], torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for t in range(x.shape[1] - 1):
            mean_w, logvar_w = self._noise_posterior(z, u[:, t], features[:, t + 1])
            w = mean_w + batch_noise(mean_w) * (0.5 * logvar_w).exp() if sample else mean_w
            kl = kl + 0.5 * (mean_w.square() + logvar_w.exp() - 1.0 - logvar_w).sum(-1)
            z = self._step(z, u[:, t], w)
            path.append(z)
        return torch.stack(path, 1), kl, mean1, logvar1

    # ----- the interface
    def loss_terms(self, x: Tensor, u: Tensor) -> dict[str, Tensor]:
        """Distortion −Σ log p(x_t|z_t); rate: q(z_1) against the prior (one sample) plus the noise KLs;
        ``(B,)`` each."""
        batch, steps = x.shape[:2]
        z, kl_noise, mean1, logvar1 = self._recognise(x, u, sample=True)
        log_px = self.decoder.log_prob(x.reshape(batch * steps, *self.obs_shape), z.reshape(batch * steps, -1))
        distortion = -log_px.reshape(batch, steps).sum(1)
        rate = diag_gaussian_log_prob(z[:, 0], mean1, logvar1) - self.prior.log_prob_bound(z[:, 0]) + kl_noise
        return {"distortion": distortion, "rate": rate,
                "distortion_per_dim": distortion.mean() / (steps * x[0, 0].numel())}

    def posterior_means(self, x: Tensor, u: Tensor) -> Tensor:
        """The path of posterior means ``(B, T, Dz)`` (each noise at its posterior mean)."""
        return self._recognise(x, u, sample=False)[0]

    def posterior_initial(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        mean, logvar = self._initial(self._features(x[:, :self.config.init_frames]))
        return mean, torch.diag_embed(logvar.exp())

    def predict(self, x: Tensor, u: Tensor, n_condition: int = 5, mode: str = "smoothed") -> Tensor:
        """As the EKVAE's: z_1 ~ q(z_1 | x_{1:K}) ("smoothed"), or z_n at the end of the posterior path over
        x_{1:n} ("filtered"), then the transition at zero noise with the true actions."""
        if mode not in ("smoothed", "filtered"):
            raise ValueError(f"unknown prediction mode {mode!r}")
        if mode == "smoothed":
            mean, logvar = self._initial(self._features(x[:, :min(self.config.init_frames, n_condition)]))
            z, t0 = mean + batch_noise(mean) * (0.5 * logvar).exp(), 0
        else:
            z, t0 = self._recognise(x[:, :n_condition], u[:, :n_condition], sample=True)[0][:, -1], n_condition - 1
        zs = [z]
        for t in range(t0, x.shape[1] - 1):
            z = self.sample_next(z, u[:, t], noise_scale=0.0)
            zs.append(z)
        return self.decode_mean(torch.stack(zs, dim=1))

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.prior.sample(n, generator)

    def sample_next(self, z: Tensor, u: Tensor, generator: torch.Generator | None = None,
                    noise_scale: float = 1.0) -> Tensor:
        w = torch.randn(z.shape[0], self.config.dim_w, generator=generator, dtype=z.dtype, device=z.device)
        return self._step(z, u, noise_scale * w)

    def decode_mean(self, z: Tensor) -> Tensor:
        return self.decoder.mean(z)

    @torch.no_grad()
    def filter_step(self, belief: Belief | None, u_prev: Tensor | None, x: Tensor) -> Belief:
        """The first frame: q(z_1 | x_1). Then the transition from the belief's mean with the noise at its
        posterior mean given the new frame; the covariance is C diag(σ_w²) Cᵀ of that step."""
        features = self._features(x[:, None])
        if belief is None:
            mean, logvar = self._initial(features)
            return mean, torch.diag_embed(logvar.exp())
        z = belief[0]
        mean_w, logvar_w = self._noise_posterior(z, u_prev, features[:, 0])
        _, _, C = self._matrices(z, u_prev)
        cov = (C * logvar_w.exp().unsqueeze(-2)) @ C.mT + 1e-6 * torch.eye(self.dim_z, dtype=z.dtype, device=z.device)
        return self._step(z, u_prev, mean_w), cov

    def encode_position(self, x: Tensor) -> Tensor:
        raise NotImplementedError("the DVBS's z is not split into position and velocity: it has no position goals")
