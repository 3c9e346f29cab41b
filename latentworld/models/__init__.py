"""Deep state-space models. Each model is one file; the trainer, evaluation and LatentEnv reach
them only through ``MODELS`` and the small interface they share (``loss_terms``, ``posterior``,
``predict``, ``transition``, ``decode_mean``, ``filter_step``)."""

from latentworld.models.ekvae import EKVAE

MODELS = {EKVAE.kind: EKVAE}

__all__ = ["EKVAE", "MODELS"]
