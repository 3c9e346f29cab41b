"""Deep state-space models, one file each, all implementing
:class:`latentworld.models.base.StateSpaceModel`; the trainer, evaluation, goals, latent envs and
the observer reach them only through ``MODELS`` and that interface. ``check_model``
(``latentworld.models.check``) tests a model class against it."""

from latentworld.models.base import StateSpaceModel
from latentworld.models.dks import DKS
from latentworld.models.dvbs import DVBS
from latentworld.models.ekvae import EKVAE

MODELS: dict[str, type[StateSpaceModel]] = {model.kind: model for model in (EKVAE, DKS, DVBS)}

__all__ = ["DKS", "DVBS", "EKVAE", "MODELS", "StateSpaceModel"]
