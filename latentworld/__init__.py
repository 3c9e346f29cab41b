"""latentworld: deep state-space models (EKVAE, REWO, VHP) learned from MuJoCo sequences,
exposed as Gymnasium environments. Importing the package registers ``LatentPendulum-v0`` and
``LatentReacher-v0``."""

from latentworld.latent_envs.registration import register_envs

register_envs()

__version__ = "0.1.0"
