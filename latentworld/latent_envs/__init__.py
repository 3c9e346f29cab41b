"""The learned model as a world: the Gymnasium latent envs, goals, the real-env observer, imagination."""
