import itertools
import math

import pytest

from latentworld.training.rewo import KLAnnealing, Rewo


def scripted_run(distortions, **kwargs):
    rewo = Rewo(d0=1.0, **kwargs)
    lambdas, phases = [], []
    for d in distortions:
        lambdas.append(rewo.update(d).distortion)
        phases.append(rewo.initial_phase)
    return rewo, lambdas, phases


def test_lambda_rises_while_violated_then_returns_into_unit_interval():
    distortions = [2.0] * 200 + [0.5] * 3000  # constraint violated, then satisfied
    _, lambdas, phases = scripted_run(distortions, alpha=0.9, nu=1.0, tau1=1.0, tau2=1.0)
    assert lambdas[0] > 1.0 and all(b >= a for a, b in itertools.pairwise(lambdas[:200]))
    peak = max(lambdas)
    assert peak > 10.0
    tail = lambdas[200:]
    # once the EMA drops below D0 lambda only decreases ...
    first_satisfied = next(i for i, phase in enumerate(phases) if not phase)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(lambdas[first_satisfied:]))
    # ... and ends in [0, 1], where the Lagrangian is a lower bound on the ELBO.
    assert 0.0 <= tail[-1] <= 1.0


def test_initial_phase_ends_first_time_ema_below_d0_and_stays_ended():
    distortions = [3.0] * 10 + [0.1] * 50 + [5.0] * 20
    _, _, phases = scripted_run(distortions, alpha=0.5)
    end = phases.index(False)
    assert 10 <= end < 20 and not any(phases[end:])


def test_single_update_matches_equation_8():
    rewo = Rewo(d0=1.0, alpha=0.0, nu=0.3, tau1=2.0, tau2=0.7)
    lam = rewo.update(1.5).distortion  # violated: exponent = nu * tau2 * delta
    assert lam == pytest.approx(math.exp(0.3 * 0.7 * 0.5))
    lam2 = rewo.update(0.4).distortion  # satisfied: f = tanh(tau1 (1/lam - 1))
    assert lam2 == pytest.approx(lam * math.exp(-0.3 * math.tanh(2.0 * (1 / lam - 1)) * (0.4 - 1.0)))


def test_calibration_sets_d0_from_ema_with_margin_and_state_round_trips():
    rewo = Rewo(d0=None, alpha=0.0)
    for d in (4.0, 2.0):
        weights = rewo.update(d)
        assert weights.distortion == 1.0 and rewo.initial_phase
    assert rewo.calibrate(0.25) == pytest.approx(2.5)
    clone = Rewo(d0=None)
    clone.load_state_dict(rewo.state_dict())
    assert clone.update(2.0) == rewo.update(2.0)


def test_annealing_beta_rises_linearly_to_one():
    schedule = KLAnnealing(beta0=0.1, steps=10)
    betas = [schedule.update(0.0).rate for _ in range(15)]
    assert betas[0] == pytest.approx(0.1) and betas[5] == pytest.approx(0.55) and betas[-1] == 1.0
    assert not schedule.initial_phase


def test_lambda_is_bounded_when_d0_is_far_below_the_distortion():
    rewo = Rewo(d0=0.01, alpha=0.99, lambda_max=1e4)
    lambdas = [rewo.update(0.7).distortion for _ in range(2000)]
    assert max(lambdas) == 1e4 and all(math.isfinite(v) for v in lambdas)


def test_calibration_bound_is_looser_than_the_reached_distortion_also_when_negative():
    for reached in (0.05, -1.5):
        rewo = Rewo(d0=None, alpha=0.9)
        for _ in range(200):
            rewo.update(5.0 if rewo.ema is None else reached)  # a stale first batch must not leak in
        d0 = rewo.calibrate(0.1)
        assert d0 == pytest.approx(reached + 0.1 * abs(reached)) and d0 > reached
        rewo.update(reached)
        assert not rewo.initial_phase  # the main phase starts right after calibration
