"""Gaussian algebra: the batched Kalman filter and RTS smoother, Gaussian densities and divergences, and the batch noise that keeps data-parallel training equal to one process."""
