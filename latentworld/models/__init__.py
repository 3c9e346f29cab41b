"""Deep state-space models, one file each, all implementing
:class:`latentworld.models.base.StateSpaceModel`; the trainer, evaluation, goals, latent envs and
the observer reach them only through ``MODELS`` and that interface. ``check_model``
(``latentworld.models.check``) tests a model class against it."""

from latentworld.models.base import StateSpaceModel
from latentworld.models.dks import DKS
from latentworld.models.dvbs import DVBS
from latentworld.models.ekvae import EKVAE
from latentworld.models.kvae import KVAE
from latentworld.models.rssm import RSSM

MODELS: dict[str, type[StateSpaceModel]] = {model.kind: model for model in (EKVAE, DKS, DVBS, KVAE, RSSM)}

__all__ = ["DKS", "DVBS", "EKVAE", "KVAE", "MODELS", "RSSM", "StateSpaceModel"]
