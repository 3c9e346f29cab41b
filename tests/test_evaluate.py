"""The identification verdict that `latentworld evaluate` prints."""

from latentworld.evaluation.evaluate import IDENTIFIED_R2, identification


def test_identified_when_every_linear_r2_reaches_the_bar():
    line = identification({"r2_hinge_angle": 0.99, "r2_hinge_velocity": IDENTIFIED_R2, "r2_knn_hinge_angle": 0.2,
                           "r2_raw_wrist": 0.1})
    assert line.startswith("identified") and "lowest 0.950" in line


def test_a_short_variable_is_named_with_what_the_nonlinear_probe_says():
    line = identification({"r2_hinge_angle": 0.86, "r2_hinge_velocity": 0.002, "r2_knn_hinge_angle": 0.995,
                           "r2_knn_hinge_velocity": 0.43})
    assert line.startswith("NOT identified")
    assert "hinge_angle R² 0.860, though a kNN probe finds it in z (R² 0.995): entangled" in line
    assert "hinge_velocity R² 0.002, and a kNN probe gives 0.430: missing from z" in line
