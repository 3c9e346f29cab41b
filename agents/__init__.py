"""Policy optimisers that act in latent environments and are evaluated in the real ones
(README, "Policies"; docs/control.md). The package is installed with latentworld so that the name ``agents``
resolves to this project's package (see README, "Package names")."""
