"""``check_model``: does a model class keep the :class:`~latentworld.models.base.StateSpaceModel`
contract? Like gymnasium's ``check_env`` for envs: run it on every registered model (the test suite
does) and on your own before you register it."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latentworld.common.errors import ModelCapabilityError
from latentworld.models.base import StateSpaceModel


class ModelContractError(AssertionError):
    """A model breaks the interface: the message names the method and what is wrong."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ModelContractError(message)


def _shape(name: str, tensor: Tensor, shape: tuple[int, ...]) -> None:
    _expect(isinstance(tensor, Tensor) and tuple(tensor.shape) == shape,
            f"{name} must have shape {shape}, got {getattr(tensor, 'shape', type(tensor).__name__)}")
    _expect(bool(torch.isfinite(tensor).all()), f"{name} holds NaN or infinite values")


def _refuses(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ModelCapabilityError:
        return True
    return False


def _check_step_by_step(model: StateSpaceModel, x: Tensor, u: Tensor, z: Tensor) -> None:
    """Imagination and online filtering, which a Markov model (z alone is the state) must provide."""
    batch, dz, obs_shape = x.shape[0], model.dim_z, tuple(x.shape[2:])
    following = model.sample_next(z, u[0, :1].expand(5, -1), torch.Generator().manual_seed(2))
    _shape("sample_next()", following, (5, dz))
    mean_a = model.sample_next(z, u[0, :1].expand(5, -1), noise_scale=0.0)
    mean_b = model.sample_next(z, u[0, :1].expand(5, -1), torch.Generator().manual_seed(3), noise_scale=0.0)
    _expect(torch.equal(mean_a, mean_b), "sample_next(noise_scale=0) must be the deterministic mean")
    _shape("decode_mean()", model.decode_mean(z), (5, *obs_shape))
    belief = model.filter_step(None, None, x[:, 0])
    _shape("filter_step() first mean", belief[0], (batch, dz))
    belief = model.filter_step(belief, u[:, 0], x[:, 1])
    _shape("filter_step() mean", belief[0], (batch, dz))
    _shape("filter_step() cov", belief[1], (batch, dz, dz))


def check_model(model_class: type[StateSpaceModel], config: Any, obs_shape: tuple[int, ...], dim_u: int,
                batch: int = 3, steps: int = 6, seed: int = 0) -> None:
    """Build ``model_class(config, obs_shape, dim_u)`` and check every interface method on random
    inputs: shapes, finite values, the parameter groups, gradients, and a save/load round trip.

    Raises:
        ModelContractError: the first broken promise.
    """
    torch.manual_seed(seed)
    model = model_class(config, obs_shape, dim_u)
    _expect(isinstance(model, StateSpaceModel), f"{model_class.__name__} must subclass StateSpaceModel")
    _expect(isinstance(model_class.kind, str) and model_class.kind, "kind must name the model")
    _expect(tuple(model.obs_shape) == tuple(obs_shape) and model.dim_u == dim_u, "obs_shape/dim_u not kept")
    dz, dp = model.dim_z, model.position_dims
    _expect(dp is None or 0 < dp <= dz, f"position_dims must be None or in [1, dim_z], got {dp}")
    x = torch.rand(batch, steps, *obs_shape)
    u = torch.rand(batch, steps, dim_u) * 2 - 1

    terms = model.loss_terms(x, u)
    for name in ("distortion", "rate"):
        _shape(f"loss_terms()[{name!r}]", terms.get(name), (batch,))
    _shape("loss_terms()['distortion_per_dim']", terms.get("distortion_per_dim"), ())
    (terms["distortion"].mean() + terms["rate"].mean()).backward()
    observation, dynamics = model.observation_parameters(), model.dynamics_parameters()
    ids = [id(p) for p in observation] + [id(p) for p in dynamics]
    _expect(len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()},
            "observation_parameters() and dynamics_parameters() must partition parameters()")
    no_gradient = [name for name, p in model.named_parameters() if p.grad is None]
    _expect(not no_gradient, f"the loss does not reach {no_gradient}")

    model.eval()
    with torch.no_grad():
        _shape("posterior_means()", model.posterior_means(x, u), (batch, steps, dz))
        mean, cov = model.posterior_initial(x, u)
        _shape("posterior_initial() mean", mean, (batch, dz))
        _shape("posterior_initial() cov", cov, (batch, dz, dz))
        n = min(3, steps)
        _shape("predict(mode='smoothed')", model.predict(x, u, n_condition=n, mode="smoothed"), (batch, steps, *obs_shape))
        _shape("predict(mode='filtered')", model.predict(x, u, n_condition=n, mode="filtered"),
               (batch, steps - n + 1, *obs_shape))
        z = model.sample_initial(5, torch.Generator().manual_seed(1))
        _shape("sample_initial(5)", z, (5, dz))
        if model.markovian:
            _check_step_by_step(model, x, u, z)
        else:
            for name, call in (("sample_next", lambda: model.sample_next(z, u[0, :1].expand(5, -1))),
                               ("filter_step", lambda: model.filter_step(None, None, x[:, 0]))):
                _expect(_refuses(call), f"{name}() of a model with markovian = False must raise ModelCapabilityError")
        if dp is not None:
            _shape("encode_position()", model.encode_position(x[:, 0]), (batch, dp))

        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        reloaded = model_class(config, obs_shape, dim_u)
        reloaded.load_state_dict(torch.load(buffer, weights_only=True))
        reloaded.eval()
        _expect(torch.equal(reloaded.posterior_means(x, u), model.posterior_means(x, u)),
                "a save/load round trip must give the same posterior")
