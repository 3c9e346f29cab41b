"""Every registered model keeps the StateSpaceModel contract (``check_model``), in each of its variants."""

import pytest

from latentworld.config import ModelConfig
from latentworld.models import EKVAE, MODELS
from latentworld.models.check import ModelContractError, check_model

SMALL = {"num_bases": 3, "mixer_hidden": 8, "hidden": 16}
VARIANTS = [
    pytest.param({}, (1, 16, 16), 1, id="image"),
    pytest.param({"obs_kind": "vector", "dim_z": 5, "dim_a": 3}, (4,), 2, id="vector"),
    pytest.param({"prior": "normal", "inference": "filter"}, (1, 16, 16), 1, id="normal-prior-filter"),
    pytest.param({"learn_h": True}, (1, 16, 16), 1, id="learned-h"),
    pytest.param({"obs_kind": "image_conv", "dim_z": 6, "dim_a": 4}, (3, 32, 32), 2, id="image-conv"),
]


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("overrides, obs_shape, dim_u", VARIANTS)
def test_every_registered_model_keeps_the_contract(kind, overrides, obs_shape, dim_u):
    check_model(MODELS[kind], ModelConfig(**SMALL, **overrides), obs_shape, dim_u)


def test_a_model_that_breaks_the_contract_is_caught():
    class Broken(EKVAE):
        def posterior_means(self, x, u):
            return super().posterior_means(x, u)[:, 1:]  # one step short

    with pytest.raises(ModelContractError, match=r"posterior_means\(\) must have shape"):
        check_model(Broken, ModelConfig(**SMALL), (1, 16, 16), 1)

    class Frozen(EKVAE):
        def loss_terms(self, x, u):
            terms = super().loss_terms(x, u)
            return {**terms, "rate": terms["rate"].detach() + 0 * self.init_mean.sum()}

    with pytest.raises(ModelContractError, match="does not reach"):
        check_model(Frozen, ModelConfig(**SMALL), (1, 16, 16), 1)
