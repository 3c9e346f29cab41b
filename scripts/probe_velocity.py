"""Where does a model keep the joint velocities? Read-outs of the smoothed latent beside the paper's OLS R².

    python scripts/probe_velocity.py CHECKPOINT [--data PATH] [--out FILE.json]

The paper's metric asks for each velocity as a *linear* function of the smoothed mean z_t. A model
can hold a velocity and still fail it, if its velocity coordinates change from place to place.
Per velocity state variable, fitted on the data set's training split and scored on its test split
(t ≥ 2, so that z_{t-1} exists):

- ``ols_z``: OLS from z_t, the metric;
- ``ols_z_pair``: OLS from (z_t, z_{t-1}): is the velocity in the latent trajectory?
- ``ols_z_by_mixing`` (EKVAE): OLS from z_t, the mixing weights α_t = softmax(g(z_t, u_t)) of the
  neural linearisation and their products z_t ⊗ α_t: is the velocity in z in coordinates that
  change with α?
- ``finite_difference`` (joint-angle data, no fit): the wrapped difference of the angles decoded
  from z_{t-1} and z_t, over the time step; the true velocity is exactly this difference of the
  true angles (MuJoCo's semi-implicit Euler).

For the reacher it also prints how much the physics' inverse mass matrix varies over the data's
wrist angles: the larger, the more the dynamics of (ω_shoulder, ω_wrist) depend on the state.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mujoco
import numpy as np
import torch
from torch import Tensor

from envs.real_env import RealEnv, feature_angles, wrap_angle
from latentworld.common.data import SequenceDataset
from latentworld.common.errors import LatentworldError
from latentworld.common.fileio import atomic_write_bytes, refuse_package_dir
from latentworld.evaluation.metrics import ols_r2, pooled_r2, smoothed_means
from latentworld.experiment.checkpoint import load_model, load_model_data


@torch.no_grad()
def probe(model: torch.nn.Module, train: SequenceDataset, test: SequenceDataset) -> dict[str, dict[str, float]]:
    """The read-outs of the module docstring, ``{velocity name: {probe: R²}}``."""
    meta = train.metadata
    names, angle_dims = meta["state_names"], meta["angle_state_dims"]
    velocity_dims = [i for i in range(len(names)) if i not in angle_dims]
    split = {"train": train, "test": test}
    z = {k: smoothed_means(model, d) for k, d in split.items()}  # (N, T, Dz)
    # Each read-out's features per split, (N (T - 1), F).
    features = {"ols_z": {k: z[k][:, 1:].flatten(0, 1) for k in split},
                "ols_z_pair": {k: torch.cat([z[k][:, 1:], z[k][:, :-1]], -1).flatten(0, 1) for k in split}}
    if hasattr(model, "mixing_weights"):
        def by_mixing(k: str) -> Tensor:
            alpha = model.mixing_weights(z[k][:, 1:].flatten(0, 1), split[k].actions[:, 1:].flatten(0, 1))
            zt = z[k][:, 1:].flatten(0, 1)
            return torch.cat([zt, alpha, (zt[:, :, None] * alpha[:, None, :]).flatten(1)], 1)
        features["ols_z_by_mixing"] = {k: by_mixing(k) for k in split}
    decoded_angles = None
    if meta.get("obs_type") == "angles":
        decoded_angles = torch.from_numpy(feature_angles(model.decode_mean(z["test"]).numpy()))  # (N, T, J)
    results = {}
    for column in velocity_dims:
        target = {k: split[k].states[:, 1:, column:column + 1] for k in split}
        row = {name: ols_r2(f["train"], target["train"].flatten(0, 1), f["test"], target["test"].flatten(0, 1))
               for name, f in features.items()}
        if decoded_angles is not None:
            joint = velocity_dims.index(column)  # velocities are listed in the joints' order
            rate = wrap_angle(decoded_angles[:, 1:, joint] - decoded_angles[:, :-1, joint]) / meta["dt"]
            row["finite_difference"] = pooled_r2(rate.reshape(-1, 1), target["test"].reshape(-1, 1))
        results[names[column]] = row
    return results


def inverse_mass_range(data: SequenceDataset) -> dict[str, list[float]] | None:
    """Range over the data's states of each diagonal entry of the inverse mass matrix, per joint
    (None unless the data come from the reacher)."""
    if data.metadata["name"] not in ("reacher_angles", "reacher_rgb"):
        return None
    env = RealEnv(data.metadata["name"])
    try:
        model, state = env.physics.model.ptr, env.physics.data.ptr
        mass = np.zeros((model.nv, model.nv))
        diagonals = []
        for true_state in data.states.flatten(0, 1)[::50].double().numpy():  # every 50th: plenty for a range
            env.set_state(true_state)
            mujoco.mj_fullM(model, state, mass)
            diagonals.append(np.diag(np.linalg.inv(mass)))
    finally:
        env.close()
    diagonals = np.array(diagonals)
    return {joint: [float(diagonals[:, i].min()), float(diagonals[:, i].max())]
            for i, joint in enumerate(env.env_spec.joints)}


def probe_inputs(description: str, argv: list[str] | None, datasets: tuple[str, ...] | None = None
                 ) -> tuple[argparse.Namespace, torch.nn.Module, SequenceDataset, SequenceDataset, str]:
    """The command line a probe takes (``CHECKPOINT [--data PATH] [--out FILE]``) and what it names: the
    arguments, the model, the data set's train and test splits and its path. ``datasets``: the data
    sets the model must have been trained on (a usage error otherwise)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("checkpoint", help="a run folder, its checkpoint folder, or a shipped model's")
    parser.add_argument("--data", help="data set (default: the one the model was trained on)")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    try:  # a missing or corrupt checkpoint or data set is a usage error: one line, no traceback
        if args.out:
            refuse_package_dir(args.out.parent, "--out")
        model, config, meta = load_model(args.checkpoint)
        if datasets is not None and meta.get("dataset_name") not in datasets:
            parser.error(f"{args.checkpoint} is not a {' or '.join(datasets)} model (its data set: "
                         f"{meta.get('dataset_name')!r})")
        data_path = args.data or config.data
        train, test = (load_model_data(meta, data_path, split) for split in ("train", "test"))
    except LatentworldError as err:
        parser.error(" ".join(str(err).split()))
    return args, model, train, test, data_path


def main(argv: list[str] | None = None) -> int:
    args, model, train, test, data_path = probe_inputs(__doc__.splitlines()[0], argv)
    results = {"checkpoint": str(args.checkpoint), "data": str(data_path),
               "velocities": probe(model, train, test), "inverse_mass_diagonal_range": inverse_mass_range(test)}
    probes = list(next(iter(results["velocities"].values())))
    print(f"{'velocity':<20}" + "".join(f"{name:>20}" for name in probes))
    for name, row in results["velocities"].items():
        print(f"{name:<20}" + "".join(f"{row[p]:>20.4f}" for p in probes))
    if results["inverse_mass_diagonal_range"]:
        print("inverse mass matrix, diagonal over the data's states: "
              + ", ".join(f"{j} {lo:.0f} to {hi:.0f}" for j, (lo, hi) in results["inverse_mass_diagonal_range"].items()))
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(results, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
