"""Policy optimisers that act in latent environments and are evaluated in the real ones
(DESIGN §1 steps 5–6). The package is installed with latentworld so that the name ``agents``
resolves to this project's package (see README, "Package names")."""
