"""Pictures of a data set: sample sequences, and the distribution of the true states.

``NAME.png``: rows are sequences, columns time steps (images, or stick figures of the arm for
angle data). ``NAME_states.png``: histograms of every state column (angles, angular velocities)
and, per joint, the angle-velocity plane, to show which states the data cover.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend

# Reacher link lengths (reacher.xml: hand at 0.12 along the arm, finger at 0.12 along the hand).
_LINKS = (0.12, 0.12)


def save_pictures(out: Path, obs: np.ndarray, states: np.ndarray, metadata: dict[str, Any],
                  n_rows: int = 8) -> list[Path]:
    """Write ``out.png`` (sample sequences) and ``out_states.png`` (state histograms).

    Args:
        out: the data-set path; the pictures go beside it with a ``.png`` suffix.
        obs: ``(N, T, H, W, C)`` uint8 images or ``(N, T, D)`` angle features.
        states: ``(N, T, S)`` true states.
        metadata: the data set's metadata (name, state names, angle columns, action repeat, dt).
        n_rows: sequences shown.

    Returns:
        The two paths written.
    """
    sequences_path = out.with_suffix(".png")
    states_path = out.with_name(out.stem + "_states.png")
    rows = min(n_rows, obs.shape[0])
    title = (f"{metadata['name']}: {rows} of {metadata['n_sequences']} sequences, rows = sequences, "
             f"columns = steps of {metadata['dt']:.2f} s (action repeat {metadata['action_repeat']})")
    if metadata["obs_type"] == "image":
        _image_grid(sequences_path, obs[:rows], title)
    else:
        _stick_figures(sequences_path, states[:rows], metadata["angle_state_dims"], title)
    _state_histograms(states_path, states, metadata)
    return [sequences_path, states_path]


def _image_grid(path: Path, images: np.ndarray, title: str) -> None:
    n, t, h, w, c = images.shape
    scale = max(1, 64 // h)  # 16x16 frames become 64x64 cells, nearest-neighbour
    gap = 2
    cell_h, cell_w = h * scale + gap, w * scale + gap
    mosaic = np.full((n * cell_h + gap, t * cell_w + gap, 3), 128, np.uint8)
    for i in range(n):
        for j in range(t):
            frame = np.repeat(np.repeat(images[i, j], scale, axis=0), scale, axis=1)
            mosaic[gap + i * cell_h: (i + 1) * cell_h, gap + j * cell_w: (j + 1) * cell_w] = (
                np.broadcast_to(frame, (h * scale, w * scale, 3)) if c == 1 else frame)
    dpi = 100
    fig = Figure(figsize=(mosaic.shape[1] / dpi, mosaic.shape[0] / dpi + 0.4), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, mosaic.shape[0] / (mosaic.shape[0] + 0.4 * dpi)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=8, y=0.995, va="top")
    fig.savefig(path, dpi=dpi)


def _stick_figures(path: Path, states: np.ndarray, angle_dims: list[int], title: str) -> None:
    n, t, _ = states.shape
    spacing = 2.2 * sum(_LINKS)
    fig = Figure(figsize=(0.6 * t, 0.62 * n + 0.5))
    axes = fig.subplots(n, 1, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        for j in range(t):
            q1, q2 = states[i, j, angle_dims[0]], states[i, j, angle_dims[1]]
            elbow = np.array([np.cos(q1), np.sin(q1)]) * _LINKS[0]
            tip = elbow + np.array([np.cos(q1 + q2), np.sin(q1 + q2)]) * _LINKS[1]
            xs = np.array([0.0, elbow[0], tip[0]]) + j * spacing
            ys = np.array([0.0, elbow[1], tip[1]])
            ax.plot(xs, ys, color="tab:orange", lw=1.2)
            ax.plot(xs[:1], ys[:1], "o", color="tab:blue", ms=2)
            ax.plot(xs[2:], ys[2:], "o", color="tab:red", ms=2)
        ax.set_xlim(-spacing / 2, (t - 0.5) * spacing)
        ax.set_ylim(-spacing / 2, spacing / 2)
        ax.set_aspect("equal")
        ax.set_axis_off()
    fig.suptitle(title, fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.4 / (0.62 * n + 0.5), hspace=0.05)
    fig.savefig(path, dpi=100)


def _state_histograms(path: Path, states: np.ndarray, metadata: dict[str, Any]) -> None:
    names = metadata["state_names"]
    angle_dims = metadata["angle_state_dims"]
    flat = states.reshape(-1, states.shape[-1])
    n_joints = len(angle_dims)
    n_panels = len(names) + n_joints
    fig = Figure(figsize=(3.2 * n_panels, 3.0))
    axes = fig.subplots(1, n_panels, squeeze=False)
    for k, name in enumerate(names):
        ax = axes[0, k]
        ax.hist(flat[:, k], bins=60, color="tab:blue")
        unit = "rad" if k in angle_dims else "rad/s"
        ax.set_title(f"{name}\n[{flat[:, k].min():.2f}, {flat[:, k].max():.2f}] {unit}", fontsize=8)
        ax.tick_params(labelsize=7)
    # Angle j's velocity is column n_joints + j (angles first, then velocities).
    for j, dim in enumerate(angle_dims):
        ax = axes[0, len(names) + j]
        ax.hist2d(flat[:, dim], flat[:, n_joints + j], bins=50, cmap="viridis")
        ax.set_xlabel(names[dim], fontsize=8)
        ax.set_ylabel(names[n_joints + j], fontsize=8)
        ax.set_title("coverage of the phase plane", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{metadata['name']}: true states of all {flat.shape[0]} frames", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
