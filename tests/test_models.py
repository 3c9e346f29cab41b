"""Every registered model keeps the StateSpaceModel contract (``check_model``), in each of its variants."""

import pytest

from latentworld.models import EKVAE, MODELS
from latentworld.models.check import ModelContractError, check_model
from latentworld.models.ekvae import EKVAEConfig

SMALL = {"num_bases": 3, "mixer_hidden": 8, "hidden": 16}
# Per registered model: (small settings, obs_shape, dim_u) covering each of its variants.
VARIANTS = {
    "ekvae": [
        (SMALL, (1, 16, 16), 1),
        ({**SMALL, "obs_kind": "vector", "dim_z": 5, "dim_a": 3}, (4,), 2),
        ({**SMALL, "prior": "normal", "inference": "filter"}, (1, 16, 16), 1),
        ({**SMALL, "learn_h": True}, (1, 16, 16), 1),
        ({**SMALL, "obs_kind": "image_conv", "dim_z": 6, "dim_a": 4}, (3, 32, 32), 2),
    ],
    "dks": [
        ({"dim_z": 3, "hidden": 16, "feature_dim": 8, "rnn_hidden": 8, "transition_hidden": 8}, (1, 16, 16), 1),
        ({"dim_z": 4, "hidden": 16, "feature_dim": 8, "rnn_hidden": 8, "transition_hidden": 8, "obs_kind": "vector",
          "prior": "normal"}, (4,), 2),
    ],
    "dvbs": [
        ({"dim_z": 3, "dim_w": 2, "num_bases": 3, "mixer_hidden": 8, "hidden": 16, "feature_dim": 8,
          "recognition_hidden": 8}, (1, 16, 16), 1),
        ({"dim_z": 4, "dim_w": 4, "num_bases": 2, "mixer_hidden": 8, "hidden": 16, "feature_dim": 8,
          "recognition_hidden": 8, "obs_kind": "vector", "prior": "normal", "init_frames": 1}, (4,), 2),
    ],
    "kvae": [
        ({"num_bases": 3, "hidden": 16, "lstm_hidden": 8}, (1, 16, 16), 1),
        ({"num_bases": 3, "hidden": 16, "lstm_hidden": 8, "obs_kind": "vector", "dim_z": 4, "dim_a": 2,
          "prior": "normal", "learn_h": False}, (4,), 2),
    ],
    "rssm": [
        ({"dim_z": 3, "deterministic": 8, "hidden": 16, "feature_dim": 8, "transition_hidden": 8}, (1, 16, 16), 1),
        ({"dim_z": 2, "deterministic": 8, "hidden": 16, "feature_dim": 8, "transition_hidden": 8, "obs_kind": "vector",
          "prior": "normal"}, (4,), 2),
    ],
}
CASES = [pytest.param(kind, *variant, id=f"{kind}-{i}") for kind, variants in VARIANTS.items()
         for i, variant in enumerate(variants)]


def test_every_registered_model_has_variants_here():
    assert set(VARIANTS) == set(MODELS)


@pytest.mark.parametrize("kind, settings, obs_shape, dim_u", CASES)
def test_every_registered_model_keeps_the_contract(kind, settings, obs_shape, dim_u):
    model_class = MODELS[kind]
    check_model(model_class, model_class.config_class(**settings), obs_shape, dim_u)


def test_a_model_that_breaks_the_contract_is_caught():
    class Broken(EKVAE):
        def posterior_means(self, x, u):
            return super().posterior_means(x, u)[:, 1:]  # one step short

    with pytest.raises(ModelContractError, match=r"posterior_means\(\) must have shape"):
        check_model(Broken, EKVAEConfig(**SMALL), (1, 16, 16), 1)

    class Frozen(EKVAE):
        def loss_terms(self, x, u):
            terms = super().loss_terms(x, u)
            return {**terms, "rate": terms["rate"].detach() + 0 * self.init_mean.sum()}

    with pytest.raises(ModelContractError, match="does not reach"):
        check_model(Frozen, EKVAEConfig(**SMALL), (1, 16, 16), 1)


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_every_model_fits_a_fixed_batch(kind):
    """Distortion + rate fall on one fixed batch of random binary frames under Adam (averaged over ten
    steps: the loss is sampled; much of it is the frames' irreducible entropy)."""
    import torch

    settings, obs_shape, dim_u = VARIANTS[kind][0]
    torch.manual_seed(0)
    model = MODELS[kind](MODELS[kind].config_class(**settings), obs_shape, dim_u)
    x, u = torch.rand(4, 6, *obs_shape).round(), torch.rand(4, 6, dim_u) * 2 - 1
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        terms = model.loss_terms(x, u)
        loss = (terms["distortion"] + terms["rate"]).mean()
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.98 * sum(losses[:10]), losses[::10]


@pytest.mark.parametrize("kind", sorted(kind for kind, model in MODELS.items() if not model.markovian))
def test_models_with_a_recurrent_state_are_refused_by_the_latent_env_and_the_observer(kind):
    from latentworld.common.errors import ModelCapabilityError
    from latentworld.latent_envs.latent_env import LatentDynamics
    from latentworld.latent_envs.observer import Observer

    settings, obs_shape, dim_u = VARIANTS[kind][0]
    model = MODELS[kind](MODELS[kind].config_class(**settings), obs_shape, dim_u)
    with pytest.raises(ModelCapabilityError, match="a latent env needs a model whose state is z alone"):
        LatentDynamics(model)
    with pytest.raises(ModelCapabilityError, match="the real-env observer needs"):
        Observer(model)


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_bfloat16_observation_networks_give_nearly_the_float32_loss_and_every_gradient(kind):
    import torch

    from latentworld.models.networks import observation_precision

    settings, obs_shape, dim_u = VARIANTS[kind][0]
    torch.manual_seed(0)
    model = MODELS[kind](MODELS[kind].config_class(**settings), obs_shape, dim_u)
    x, u = torch.rand(4, 6, *obs_shape).round(), torch.rand(4, 6, dim_u) * 2 - 1
    losses = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(1)  # the same noise
        with observation_precision(precision):
            terms = model.loss_terms(x, u)
        losses[precision] = (terms["distortion"] + terms["rate"]).mean()
    assert losses["bfloat16"].dtype == torch.float32
    difference = float((losses["bfloat16"] - losses["float32"]).detach())
    assert abs(difference) < 1e-2 * abs(float(losses["float32"].detach()))
    losses["bfloat16"].backward()
    assert all(p.grad is not None and p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("kind", ["ekvae", "kvae"])
def test_the_parallel_smoother_is_used_only_where_the_transition_ignores_z(kind):
    import torch

    from latentworld.probability.kalman import kalman_smoother

    settings, obs_shape, dim_u = VARIANTS[kind][0]
    torch.manual_seed(0)
    model = MODELS[kind](MODELS[kind].config_class(**settings), obs_shape, dim_u)
    a, u = torch.randn(3, 7, model.config.dim_a), torch.rand(3, 7, dim_u) * 2 - 1
    v = model.transition_inputs(a, u).flatten(0, 1)
    z = torch.randn(len(v), model.config.dim_z)
    ignores_z = all(torch.equal(x, y) for x, y in zip(model.transition(z, v), model.transition(torch.zeros_like(z), v)))
    assert ignores_z == model.linear_given_inputs
    if model.linear_given_inputs:  # then both forms of the smoother give the same posterior
        v = model.transition_inputs(a, u)
        mean0, cov0 = model.initial_belief(3)
        with torch.no_grad():
            results = [kalman_smoother(a, v, model.transition, model.H, model.R, mean0, cov0, parallel=parallel)
                       for parallel in (False, True)]
        torch.testing.assert_close(results[1].smoothed_mean, results[0].smoothed_mean, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(results[1].log_likelihood, results[0].log_likelihood, rtol=1e-4, atol=1e-3)
