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
- ``ols_z_by_<angle>``, one per joint: OLS from z_t, the true (cos, sin) of that joint's angle and
  their products with z_t: which joint's angle do the velocity coordinates turn with?

For the reacher, also:

- ``ols_z_to_momentum`` and ``ols_z_to_sqrt_mass_velocity``: OLS R² from z_t of the generalised
  momentum M(q) q̇ and of M(q)^½ q̇ (the coordinates in which the kinetic energy is ½|v|²), per
  component, in place of the velocity: does z hold one of these linearly instead?
- how much the physics' inverse mass matrix varies over the data's wrist angles: the larger, the
  more the dynamics of (ω_shoulder, ω_wrist) depend on the state.
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

from agents.tasks import REACH_ENVS
from envs.real_env import RealEnv, feature_angles, wrap_angle
from envs.specs import get_spec
from latentworld.common.data import SequenceDataset
from latentworld.common.errors import LatentworldError
from latentworld.common.fileio import atomic_write_bytes, refuse_package_dir
from latentworld.evaluation.metrics import ols_r2, pooled_r2, smoothed_means
from latentworld.experiment.checkpoint import load_model, load_model_data


def with_products(z: Tensor, factors: Tensor) -> Tensor:
    """OLS features of z in coordinates that change with ``factors``: ``[z, factors, z ⊗ factors]``.
    Args: z ``(N, Dz)``, factors ``(N, K)``. Returns ``(N, Dz + K + Dz K)``."""
    return torch.cat([z, factors, (z[:, :, None] * factors[:, None, :]).flatten(1)], 1)


def mass_matrices(data: SequenceDataset) -> Tensor | None:
    """The physics' joint-space mass matrix M(q) at each of the data's states, ``(N, T, J, J)`` float64
    (None unless the data come from the reacher)."""
    if data.metadata["name"] not in REACH_ENVS:
        return None
    env = RealEnv(data.metadata["name"])
    try:
        model, state = env.physics.model.ptr, env.physics.data.ptr
        states = data.states.flatten(0, 1).double().numpy()
        masses = np.zeros((len(states), model.nv, model.nv))
        for true_state, mass in zip(states, masses):
            env.set_state(true_state)
            mujoco.mj_fullM(model, state, mass)
    finally:
        env.close()
    return torch.from_numpy(masses).reshape(*data.states.shape[:2], model.nv, model.nv)


def mass_coordinates(masses: Tensor, velocities: Tensor) -> dict[str, Tensor]:
    """The velocities ``(..., J)`` in the mass matrices' ``(..., J, J)`` coordinates:
    ``{"momentum": M q̇, "sqrt_mass_velocity": M^½ q̇}``, each ``(..., J)``."""
    eigenvalues, eigenvectors = torch.linalg.eigh(masses)  # M is symmetric positive definite
    root = eigenvectors @ torch.diag_embed(eigenvalues.sqrt()) @ eigenvectors.transpose(-1, -2)
    return {"momentum": (masses @ velocities[..., None])[..., 0],
            "sqrt_mass_velocity": (root @ velocities[..., None])[..., 0]}


@torch.no_grad()
def probe(model: torch.nn.Module, train: SequenceDataset, test: SequenceDataset,
          masses: dict[str, Tensor] | None = None) -> dict[str, dict[str, float]]:
    """The read-outs of the module docstring, ``{velocity name: {probe: R²}}``; ``masses``: the mass
    matrices of each split's states (:func:`mass_matrices`), for the reacher's mass-coordinate rows."""
    meta = train.metadata
    names, angle_dims = meta["state_names"], meta["angle_state_dims"]
    velocity_dims = [i for i in range(len(names)) if i not in angle_dims]
    split = {"train": train, "test": test}
    z = {k: smoothed_means(model, d) for k, d in split.items()}  # (N, T, Dz)
    zt = {k: z[k][:, 1:].flatten(0, 1) for k in split}  # (N (T - 1), Dz)
    # Each read-out's features per split, (N (T - 1), F).
    features = {"ols_z": zt,
                "ols_z_pair": {k: torch.cat([z[k][:, 1:], z[k][:, :-1]], -1).flatten(0, 1) for k in split}}
    if hasattr(model, "mixing_weights"):
        features["ols_z_by_mixing"] = {
            k: with_products(zt[k], model.mixing_weights(zt[k], split[k].actions[:, 1:].flatten(0, 1))) for k in split}
    for column in angle_dims:
        angle = {k: split[k].states[:, 1:, column].flatten(0, 1).double() for k in split}
        features[f"ols_z_by_{names[column]}"] = {
            k: with_products(zt[k].double(), torch.stack([angle[k].cos(), angle[k].sin()], -1)) for k in split}
    decoded_angles = None
    if meta.get("obs_type") == "angles":
        decoded_angles = torch.from_numpy(feature_angles(model.decode_mean(z["test"]).numpy()))  # (N, T, J)
    coordinates = None if masses is None else {  # {split: {name: (N, T - 1, J)}}
        k: mass_coordinates(masses[k][:, 1:], split[k].states[:, 1:, velocity_dims].double()) for k in split}
    results = {}
    for column in velocity_dims:
        target = {k: split[k].states[:, 1:, column:column + 1] for k in split}
        row = {name: ols_r2(f["train"], target["train"].flatten(0, 1), f["test"], target["test"].flatten(0, 1))
               for name, f in features.items()}
        joint = velocity_dims.index(column)  # velocities are listed in the joints' order
        if decoded_angles is not None:
            rate = wrap_angle(decoded_angles[:, 1:, joint] - decoded_angles[:, :-1, joint]) / meta["dt"]
            row["finite_difference"] = pooled_r2(rate.reshape(-1, 1), target["test"].reshape(-1, 1))
        if coordinates is not None:
            for name in coordinates["test"]:
                row[f"ols_z_to_{name}"] = ols_r2(zt["train"], coordinates["train"][name][..., joint].reshape(-1, 1),
                                                 zt["test"], coordinates["test"][name][..., joint].reshape(-1, 1))
        results[names[column]] = row
    return results


def inverse_mass_range(masses: Tensor, joints: tuple[str, ...]) -> dict[str, list[float]]:
    """Range of each diagonal entry of the inverse mass matrix over ``masses`` ``(..., J, J)``, per joint."""
    diagonals = torch.linalg.inv(masses).diagonal(dim1=-2, dim2=-1).reshape(-1, len(joints))
    return {joint: [float(diagonals[:, i].min()), float(diagonals[:, i].max())] for i, joint in enumerate(joints)}


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
    masses = {"train": mass_matrices(train), "test": mass_matrices(test)}
    if masses["test"] is None:  # not the reacher
        masses = None
    velocities = probe(model, train, test, masses)
    results = {"checkpoint": str(args.checkpoint), "data": str(data_path), "velocities": velocities,
               "inverse_mass_diagonal_range": None if masses is None else
               inverse_mass_range(masses["test"], get_spec(test.metadata["name"]).joints)}
    probes = list(next(iter(velocities.values())))
    print(f"{'read-out':<30}" + "".join(f"{name:>20}" for name in velocities))
    for probe_name in probes:
        print(f"{probe_name:<30}" + "".join(f"{row[probe_name]:>20.4f}" for row in velocities.values()))
    if masses is not None:
        print("inverse mass matrix, diagonal over the data's states: "
              + ", ".join(f"{j} {lo:.0f} to {hi:.0f}" for j, (lo, hi) in results["inverse_mass_diagonal_range"].items()))
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(results, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
