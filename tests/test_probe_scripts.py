"""The probe scripts' own arithmetic (scripts/probe_wrist_fold.py, scripts/probe_velocity.py), checked
against references on small synthetic inputs; their end-to-end runs on shipped models are in
test_pretrained.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from probe_velocity import mass_coordinates, with_products
from probe_wrist_fold import RidgeFit, pixel_features

from latentworld.common.data import SequenceDataset


def test_ridge_fit_equals_least_squares_on_the_augmented_system():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 7, generator=g, dtype=torch.float64), torch.randn(200, 2, generator=g, dtype=torch.float64)
    y = y + x[:, :2] * 3
    x_test, y_test = x[150:], y[150:]
    x, y, ridge = x[:150], y[:150], 2.5

    def reference_r2(y_fit: torch.Tensor, y_true: torch.Tensor) -> float:
        # Centre, then ordinary least squares on [x; √λ I] against [y; 0]: the ridge solution.
        xc, yc = x - x.mean(0), y_fit - y_fit.mean(0)
        augmented_x = torch.cat([xc, ridge ** 0.5 * torch.eye(7, dtype=x.dtype)])
        augmented_y = torch.cat([yc, torch.zeros(7, y_fit.shape[1], dtype=x.dtype)])
        coef = torch.linalg.lstsq(augmented_x, augmented_y).solution
        predicted = (x_test - x.mean(0)) @ coef + y_fit.mean(0)
        return float(1 - (y_true - predicted).pow(2).sum() / (y_true - y_true.mean(0)).pow(2).sum())

    fit = RidgeFit(x, ridge)  # one factorisation serves every target
    assert fit.r2(y, x_test, y_test) == pytest.approx(reference_r2(y, y_test), abs=1e-12)
    assert fit.r2(y[:, 1:], x_test, y_test[:, 1:]) == pytest.approx(reference_r2(y[:, 1:], y_test[:, 1:]), abs=1e-12)
    assert RidgeFit(x, 1e6).r2(y, x_test, y_test) < fit.r2(y, x_test, y_test)  # shrinks toward the mean


def test_pixel_features_average_2x2_blocks_of_every_frame_in_chunks():
    obs = torch.randint(0, 256, (3, 5, 3, 8, 8), dtype=torch.uint8)
    data = SequenceDataset(obs, torch.zeros(3, 5, 2), torch.zeros(3, 5, 4), {"obs_type": "image"})
    features = pixel_features(data, chunk=4)  # chunks that do not divide the 15 frames
    assert features.shape == (15, 3 * 4 * 4) and features.dtype == torch.float64
    frame = obs[1, 2].double() / 255  # (C, H, W): frame 7 of the flattened 15
    expected = frame.reshape(3, 4, 2, 4, 2).mean((2, 4)).flatten()
    torch.testing.assert_close(features[7], expected, rtol=1e-6, atol=1e-7)


def test_mass_coordinates_give_the_momentum_and_the_root_of_the_kinetic_energy():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 2, 2, generator=g, dtype=torch.float64)
    masses = a @ a.transpose(-1, -2) + 0.5 * torch.eye(2, dtype=torch.float64)  # symmetric positive definite
    velocities = torch.randn(6, 2, generator=g, dtype=torch.float64)
    coordinates = mass_coordinates(masses, velocities)
    torch.testing.assert_close(coordinates["momentum"], (masses @ velocities[..., None])[..., 0])
    root = coordinates["sqrt_mass_velocity"]
    # ½|M^½ q̇|² is the kinetic energy ½ q̇ᵀ M q̇.
    torch.testing.assert_close(root.pow(2).sum(-1), (velocities[:, None, :] @ masses @ velocities[..., None])[:, 0, 0])


def test_with_products_holds_z_the_factors_and_every_product():
    z, factors = torch.tensor([[2.0, 3.0]]), torch.tensor([[5.0, 7.0, 11.0]])
    assert with_products(z, factors).tolist() == [[2.0, 3.0, 5.0, 7.0, 11.0, 10.0, 14.0, 22.0, 15.0, 21.0, 33.0]]
