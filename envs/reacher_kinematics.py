"""The reacher's planar two-link geometry: where the finger is, and which joint angles put it on a point.

The arm turns about the world z axis at the origin: the upper arm (shoulder joint) reaches to the
hand body, the forearm (wrist joint) to the finger body; both lengths are read from the MuJoCo model
(0.12 m each in dm_control's reacher). With angles measured from the world x axis,

    finger(q) = L1 · (cos q1, sin q1) + L2 · (cos(q1 + q2), sin(q1 + q2)).

Inverse kinematics has two solutions for a point strictly inside the reach (elbow one way or the
other, q2 of opposite signs) and none beyond it; the wrist's joint limit (±160°) removes solutions
for points very close to the shoulder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.real_env import RealEnv, wrap_angle


@dataclass(frozen=True)
class TwoLinkArm:
    """Link lengths (m) and the wrist's joint range (rad) of a planar two-link arm."""

    upper: float
    fore: float
    wrist_range: tuple[float, float]

    @classmethod
    def of(cls, env: RealEnv) -> TwoLinkArm:
        """The arm of a reacher env, read from its MuJoCo model."""
        model = env.physics.named.model
        return cls(float(np.linalg.norm(model.body_pos["hand", :2])), float(np.linalg.norm(model.body_pos["finger", :2])),
                   tuple(float(x) for x in model.jnt_range["wrist"]))

    def finger(self, angles: np.ndarray) -> np.ndarray:
        """Forward kinematics. Args: ``(..., 2)`` joint angles (shoulder, wrist). Returns ``(..., 2)`` x, y in m."""
        q1, q12 = angles[..., 0], angles[..., 0] + angles[..., 1]
        return np.stack([self.upper * np.cos(q1) + self.fore * np.cos(q12),
                         self.upper * np.sin(q1) + self.fore * np.sin(q12)], axis=-1)

    def solutions(self, point: np.ndarray) -> np.ndarray:
        """Inverse kinematics: the joint angles that put the finger on ``point`` (x, y).

        Returns:
            ``(K, 2)`` (shoulder, wrist) in radians, K = 0, 1 or 2, only those within the wrist's range.
        """
        x, y = float(point[0]), float(point[1])
        cos_wrist = (x * x + y * y - self.upper**2 - self.fore**2) / (2 * self.upper * self.fore)
        if abs(cos_wrist) > 1:
            return np.zeros((0, 2))
        found = []
        for wrist in {np.arccos(cos_wrist), -np.arccos(cos_wrist)}:
            if not self.wrist_range[0] <= wrist <= self.wrist_range[1]:
                continue
            shoulder = np.arctan2(y, x) - np.arctan2(self.fore * np.sin(wrist), self.upper + self.fore * np.cos(wrist))
            found.append((wrap_angle(shoulder), wrist))
        return np.array(found, dtype=np.float64).reshape(-1, 2)

    def nearest_solution(self, point: np.ndarray, current: np.ndarray) -> np.ndarray:
        """The IK solution closest to the ``current`` angles (least joint travel: the wrist cannot pass
        ±180°, so its travel is the plain difference; the shoulder's is wrapped). Returns ``(2,)``.

        Raises:
            ValueError: the point is out of the arm's reach.
        """
        candidates = self.solutions(point)
        if len(candidates) == 0:
            raise ValueError(f"point {np.round(point, 3).tolist()} is out of the arm's reach "
                             f"({self.upper + self.fore:.3f} m, wrist range ±{np.degrees(self.wrist_range[1]):.0f}°)")
        travel = np.abs(wrap_angle(candidates[:, 0] - current[0])) + np.abs(candidates[:, 1] - current[1])
        return candidates[int(np.argmin(travel))]


def target_position(env: RealEnv) -> np.ndarray:
    """The reacher task's target (x, y) in m, as the episode's reset placed it. Returns ``(2,)``."""
    return np.array(env.physics.named.model.geom_pos["target", :2], dtype=np.float64)
