"""The error types of latentworld: one per domain, all under :class:`LatentworldError`.

Each is raised for an input or a state the user can fix, with a message that names the file or
option and says what to do. The command lines print that message on one line and exit with
status 2 (``--debug`` shows the traceback); any other exception is a bug and keeps its traceback.
They also derive from ``ValueError`` so that callers catching bad values keep working.
"""

from __future__ import annotations


class LatentworldError(ValueError):
    """Base of every error a user can fix by changing an input."""


class ConfigError(LatentworldError):
    """A configuration value has the wrong type, lies outside its range, or is not a known option."""


class DatasetError(LatentworldError):
    """A data-set file is missing, corrupt, holds non-finite values, or does not fit the model."""


class CheckpointError(LatentworldError):
    """A checkpoint is missing, incomplete, corrupt (its hash disagrees) or of another model kind."""


class GoalError(LatentworldError):
    """A goal (image, image sequence or latent vector) cannot be turned into a latent target."""


class RunDirError(LatentworldError):
    """An output directory exists and is not one this command may write into."""


class ModelCapabilityError(LatentworldError):
    """A model cannot do what is asked: e.g. a model whose transition carries a recurrent state beyond z
    (KVAE, RSSM) cannot be imagined or filtered one z at a time."""
