"""Figures of a trained model: the latent space, predicted sequences and training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from latentworld.common.data import SequenceDataset


def plot_latent_space(z: torch.Tensor, data: SequenceDataset, path: Path, position_dims: int | None = None) -> Path:
    """Scatter the smoothed means coloured by each true state variable (the paper's Fig. 3 barrel).

    Angles are shown over the first three dims of z; with a position/velocity split
    (``position_dims`` = Da), velocities over the velocity dims z[Da:] (the first two of them), where
    an identified model shows a smooth gradient.

    Args: z ``(N, T, Dz)`` smoothed means of ``data``.
    """
    points = z.flatten(0, 1).numpy()
    states = data.states.flatten(0, 1).numpy()
    names = data.metadata["state_names"]
    angles = data.metadata["angle_state_dims"]
    fig = plt.figure(figsize=(5 * len(names), 4.5))
    for i, name in enumerate(names):
        dims = list(range(min(3, points.shape[1])))
        if position_dims is not None and i not in angles and points.shape[1] > position_dims:
            dims = list(range(position_dims, min(position_dims + 2, points.shape[1])))
        cmap = "twilight" if i in angles else "coolwarm"
        if len(dims) == 3:
            ax = fig.add_subplot(1, len(names), i + 1, projection="3d")
            im = ax.scatter(*(points[:, d] for d in dims), c=states[:, i], s=2, cmap=cmap)
            ax.set_zlabel(f"z{dims[2] + 1}")
        else:
            ax = fig.add_subplot(1, len(names), i + 1)
            shown = dims if len(dims) == 2 else [dims[0], points.shape[1] - 1]
            im = ax.scatter(points[:, shown[0]], points[:, shown[1]], c=states[:, i], s=2, cmap=cmap)
            dims = shown
        ax.set_xlabel(f"z{dims[0] + 1}")
        ax.set_ylabel(f"z{dims[1] + 1}")
        ax.set_title(f"latent space coloured by true {name}")
        fig.colorbar(im, ax=ax, shrink=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_predictions(true: torch.Tensor, predicted: dict[str, torch.Tensor], path: Path, rows: int = 4) -> Path:
    """Rows of true frames above each prediction mode's frames.

    Args: true ``(N, T, C, H, W)``; predicted ``{mode: (N, T', C, H, W)}`` aligned to the end of T.
    """
    steps, rows = true.shape[1], min(rows, true.shape[0])
    labels = ["true", *predicted]
    fig, axes = plt.subplots(rows * len(labels), steps, figsize=(steps * 0.7, rows * len(labels) * 0.75))
    for r in range(rows):
        for k, label in enumerate(labels):
            seq = true[r] if label == "true" else predicted[label][r]
            offset = steps - seq.shape[0]
            for t in range(steps):
                ax = axes[r * len(labels) + k, t]
                ax.axis("off")
                if t >= offset:
                    img = seq[t - offset].permute(1, 2, 0).clamp(0, 1).numpy()
                    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            axes[r * len(labels) + k, 0].set_title(label, fontsize=6, loc="left")
    fig.suptitle("open-loop predictions: true / smoothed (z1 | x1:5) / filtered (z5 | x1:5)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_angle_predictions(true: torch.Tensor, predicted: dict[str, torch.Tensor], path: Path, rows: int = 4
                           ) -> Path:
    """Angle-feature traces: true vs predicted. Args: true ``(N, T, D)``, predicted ``{mode: (N, T', D)}``."""
    steps, rows = true.shape[1], min(rows, true.shape[0])
    fig, axes = plt.subplots(rows, 1, figsize=(8, 2 * rows), squeeze=False)
    for r in range(rows):
        ax = axes[r, 0]
        ax.plot(true[r].numpy(), "k-", lw=1)
        for style, (label, seq) in zip(("--", ":"), predicted.items()):
            ax.plot(np.arange(steps - seq.shape[1], steps), seq[r].numpy(), style, lw=1)
        ax.set_ylabel(f"seq {r}")
    axes[-1, 0].set_xlabel("time step (solid: true, dashed: smoothed, dotted: filtered)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_training_curves(history: list[dict[str, float]], path: Path) -> Path:
    """λ, distortion, rate and validation R² against step."""
    keys = [("rewo/lambda", "λ"), ("train/distortion_per_dim", "distortion / dim"), ("train/rate", "rate"),
            ("eval/", "validation R²")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2))
    for ax, (key, title) in zip(axes, keys):
        if key == "eval/":
            for name in sorted({k for row in history for k in row if k.startswith("eval/")}):
                rows = [row for row in history if name in row]
                ax.plot([r["step"] for r in rows], [r[name] for r in rows], marker=".", label=name[5:])
            ax.set_ylim(-0.1, 1.05)
            ax.legend(fontsize=7)
        else:
            rows = [row for row in history if key in row]
            ax.plot([r["step"] for r in rows], [r[key] for r in rows])
            if key == "rewo/lambda":
                ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_frame_grid(frames: np.ndarray, path: Path, title: str = "") -> Path:
    """Rows of uint8 frames. Args: frames ``(rows, T, H, W, 3)``."""
    rows, steps = frames.shape[:2]
    fig, axes = plt.subplots(rows, steps, figsize=(steps * 0.55, rows * 0.6), squeeze=False)
    for r in range(rows):
        for t in range(steps):
            axes[r, t].imshow(frames[r, t])
            axes[r, t].axis("off")
    fig.suptitle(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
