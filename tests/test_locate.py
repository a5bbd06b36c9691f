"""TDOA location: exact recovery, statuses, echo rejection, uncertainty, invariances."""
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shotline.geo import LocalFrame
from shotline.locate import (Fix, cramer_rao_bound, ellipse95, locate, locate_batch, locate_llh,
                             minimal_solutions)

C = 343.0
# A street grid: 9 roof-top sensors about 300 m apart (heights 8-20 m).
GRID = np.array([[0, 0, 10], [300, 20, 15], [620, -10, 8], [10, 330, 20], [310, 300, 12],
                 [600, 320, 9], [0, 640, 14], [320, 610, 11], [640, 650, 10]], dtype=float)
SOURCE = np.array([250.0, 180.0, 1.5])
T0 = 1545180567.25  # an absolute emission time (POSIX s)


def arrivals(sensors, source, t0=0.0, c=C):
    return t0 + np.linalg.norm(np.asarray(sensors) - source, axis=1) / c


def test_exact_recovery_2d():
    s = GRID[:, :2]
    fix = locate(s, arrivals(s, SOURCE[:2], 0.5), speed_of_sound_m_s=C)
    assert fix.status == "ok" and fix.mode == "2d"
    np.testing.assert_allclose(fix.position_m, [250.0, 180.0, 0.0], atol=1e-6)
    assert fix.t_emit_s == pytest.approx(0.5, abs=1e-9)
    assert fix.used.all() and np.abs(fix.residuals_s).max() < 1e-9


def test_exact_recovery_2_5d_is_the_default_for_3d_sensors():
    fix = locate(GRID, arrivals(GRID, SOURCE), speed_of_sound_m_s=C, source_up_m=1.5)
    assert fix.status == "ok" and fix.mode == "2.5d"
    np.testing.assert_allclose(fix.position_m, SOURCE, atol=1e-6)
    assert fix.covariance_m2[2, 2] == 0.0  # the height was given, not estimated


def test_exact_recovery_3d():
    fix = locate(GRID, arrivals(GRID, SOURCE), speed_of_sound_m_s=C, mode="3d")
    assert fix.status == "ok" and fix.mode == "3d"
    np.testing.assert_allclose(fix.position_m, SOURCE, atol=1e-5)
    assert fix.covariance_m2[2, 2] > fix.covariance_m2[0, 0]  # roofs: height is the weak axis


def test_absolute_times_keep_their_precision():
    fix = locate(GRID, arrivals(GRID, SOURCE, T0), speed_of_sound_m_s=C, source_up_m=1.5)
    assert fix.t_emit_s == pytest.approx(T0, abs=2e-6)
    # float64 POSIX seconds resolve 0.24 us, i.e. 0.08 m of range.
    np.testing.assert_allclose(fix.position_m, SOURCE, atol=0.05)


def test_minimal_sensors_recover_the_source_exactly():
    s = GRID[[0, 2, 7], :2]
    fix = locate(s, arrivals(s, SOURCE[:2]), speed_of_sound_m_s=C)
    candidates = [fix] + list(fix.alternatives)
    assert fix.status in ("ok", "ambiguous")
    assert min(np.linalg.norm(f.position_m[:2] - SOURCE[:2]) for f in candidates) < 1e-6
    assert "no redundancy" in fix.message or fix.status == "ambiguous"


def test_ambiguous_returns_both_solutions():
    # Three sensors and a source well outside them: two hyperbola intersections.
    s = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    src = np.array([-400.0, -300.0])
    fix = locate(s, arrivals(s, src), speed_of_sound_m_s=C)
    assert fix.status == "ambiguous" and len(fix.alternatives) == 1
    positions = [fix.position_m[:2], fix.alternatives[0].position_m[:2]]
    assert min(np.linalg.norm(p - src) for p in positions) < 1e-6
    assert np.linalg.norm(positions[0] - positions[1]) > 50.0
    for f in (fix, fix.alternatives[0]):  # both explain the arrivals exactly
        assert np.abs(f.residuals_s).max() < 1e-9 and f.status == "ambiguous"


def test_collinear_sensors_are_degenerate():
    s = np.array([[0.0, 0.0], [200.0, 0.0], [400.0, 0.0], [600.0, 0.0]])
    fix = locate(s, arrivals(s, [250.0, 150.0]), speed_of_sound_m_s=C)
    assert fix.status == "degenerate" and "collinear" in fix.message
    assert np.isnan(fix.position_m).all() and not fix.used.any()


def test_coplanar_sensors_are_degenerate_in_3d_but_fine_in_2_5d():
    flat = GRID.copy()
    flat[:, 2] = 10.0
    t = arrivals(flat, SOURCE)
    assert locate(flat, t, speed_of_sound_m_s=C, mode="3d").status == "degenerate"
    fix = locate(flat, t, speed_of_sound_m_s=C, source_up_m=1.5)
    assert fix.status == "ok"
    np.testing.assert_allclose(fix.position_m, SOURCE, atol=1e-6)


@pytest.mark.parametrize("mode,n", [("2d", 2), ("2.5d", 2), ("3d", 3)])
def test_too_few_sensors_is_insufficient(mode, n):
    s = GRID[:n] if mode != "2d" else GRID[:n, :2]
    fix = locate(s, arrivals(s, SOURCE if mode != "2d" else SOURCE[:2]), speed_of_sound_m_s=C, mode=mode)
    assert fix.status == "insufficient" and np.isnan(fix.position_m).all()


def test_missing_arrivals_count_against_sufficiency():
    t = arrivals(GRID[:4], SOURCE)
    t[1:3] = np.nan
    fix = locate(GRID[:4], t, speed_of_sound_m_s=C)
    assert fix.status == "insufficient"
    assert fix.reasons[1] == "missing"


def test_missing_arrival_is_ignored():
    t = arrivals(GRID, SOURCE)
    t[4] = np.nan
    fix = locate(GRID, t, speed_of_sound_m_s=C, source_up_m=1.5)
    assert fix.status == "ok" and not fix.used[4] and fix.reasons[4] == "missing"
    assert np.isnan(fix.residuals_s[4])
    np.testing.assert_allclose(fix.position_m, SOURCE, atol=1e-6)


@pytest.mark.parametrize("echo_m", [5.0, 20.0, 80.0])
@pytest.mark.parametrize("which", [0, 4, 8])
def test_echo_is_rejected_and_said_so(echo_m, which):
    rng = np.random.default_rng(which)
    t = arrivals(GRID, SOURCE) + rng.normal(0, 50e-6, len(GRID))
    t[which] += echo_m / C
    fix = locate(GRID, t, speed_of_sound_m_s=C, timing_sigma_s=50e-6, source_up_m=1.5)
    assert fix.status == "ok"
    assert not fix.used[which] and fix.used.sum() == len(GRID) - 1
    assert fix.reasons[which].startswith("late by")
    assert fix.residuals_s[which] == pytest.approx(echo_m / C, abs=1e-3)
    assert np.linalg.norm(fix.position_m - SOURCE) < 0.2


def test_echo_is_never_averaged_into_a_clean_fix():
    """Every arrival used (robust=False), the echo pulls the fix; the default
    batch mode notices the inconsistency and re-solves that event robustly."""
    t = arrivals(GRID, SOURCE)
    t_echo = t.copy()
    t_echo[3] += 30.0 / C
    times = np.stack([t, t_echo])
    plain = locate_batch(GRID, times, speed_of_sound_m_s=C, source_up_m=1.5, robust=False)
    auto = locate_batch(GRID, times, speed_of_sound_m_s=C, source_up_m=1.5)
    assert np.linalg.norm(plain.position_m[1] - SOURCE) > 2.0 and plain.used[1].all()
    np.testing.assert_allclose(auto.position_m, [SOURCE, SOURCE], atol=1e-6)
    assert not auto.used[1, 3] and auto[1].reasons[3].startswith("late")
    assert auto[0].message == "batch solution from all arrivals"  # the clean one stayed vectorised
    robust = locate(GRID, t_echo, speed_of_sound_m_s=C, source_up_m=1.5)
    assert np.linalg.norm(robust.position_m - SOURCE) < 1e-6


def test_one_redundant_arrival_is_kept_on_the_gate_when_sigma_is_a_guess():
    """Four roof-top sensors in 2.5-D, arrivals spread by diffraction (tens of ms, all
    within a 30 ms gate) along the one direction the fit cannot absorb.  With only the
    gate (sigma guessed as gate/4) all four are used: dropping one would leave three
    arrivals that fit exactly and nothing to check them.  With the timing sigma given
    the chi-square test still rejects the set's spread."""
    sensors = GRID[[0, 2, 6, 8]]
    t = arrivals(sensors, SOURCE)
    # The residual direction a 4-arrival fit leaves alone: the left null space of its Jacobian.
    diff = SOURCE[:2] - sensors[:, :2]
    jac = np.c_[diff / np.linalg.norm(sensors - SOURCE, axis=1)[:, None] / C, np.ones(4)]
    spread = np.linalg.svd(jac.T)[2][-1]
    t = t + 0.025 * spread / np.abs(spread).max()        # largest deviation 25 ms
    guessed = locate(sensors, t, speed_of_sound_m_s=C, source_up_m=1.5, gate_s=0.03)
    assert guessed.status == "ok" and guessed.used.all()
    assert np.abs(guessed.residuals_s).max() == pytest.approx(0.025, rel=0.05)
    assert np.linalg.norm(guessed.position_m - SOURCE) < 1.0
    known = locate(sensors, t, speed_of_sound_m_s=C, source_up_m=1.5, gate_s=0.03, timing_sigma_s=0.0075)
    assert known.n_used == 3


def test_a_second_pulse_at_one_sensor_uses_the_direct_one():
    sensors = np.vstack([GRID, GRID[2]])
    t = np.append(arrivals(GRID, SOURCE), arrivals(GRID[2:3], SOURCE)[0] + 0.025)
    fix = locate(sensors, t, speed_of_sound_m_s=C, source_up_m=1.5)
    assert fix.used[2] and not fix.used[-1]
    assert fix.reasons[-1].startswith("late")
    # Same, with the sensor named explicitly and its position jittered by a metre.
    sensors[-1] += [0.8, -0.5, 0.0]
    ids = [f"s{i}" for i in range(len(GRID))] + ["s2"]
    fix = locate(sensors, t, speed_of_sound_m_s=C, source_up_m=1.5, sensor_ids=ids)
    assert fix.used[2] and not fix.used[-1]


def test_pool_of_two_impulses_locates_the_larger_consistent_set():
    other = np.array([500.0, 500.0, 1.5])
    sensors = np.vstack([GRID, GRID[:6]])
    t = np.append(arrivals(GRID, SOURCE, 10.0), arrivals(GRID[:6], other, 10.4))
    ids = list(range(len(GRID))) + list(range(6))
    fix = locate(sensors, t, speed_of_sound_m_s=C, source_up_m=1.5, sensor_ids=ids)
    np.testing.assert_allclose(fix.position_m, SOURCE, atol=1e-6)
    assert fix.used[:len(GRID)].all() and not fix.used[len(GRID):].any()


def test_large_pool_uses_guided_sampling():
    """12 sensors, each with 12 pulses over 10 s (one of them from the impulse):
    far more minimal subsets than are tried; the guided sample still finds it."""
    rng = np.random.default_rng(4)
    sensors12 = np.c_[rng.uniform(0, 900, (12, 2)), rng.uniform(3, 30, 12)]
    rows = np.repeat(sensors12, 12, axis=0)
    ids = np.repeat(np.arange(12), 12)
    t = rng.uniform(0.0, 10.0, len(rows))
    direct = np.arange(12) * 12 + rng.integers(12, size=12)
    t[direct] = arrivals(sensors12, SOURCE, 4.0)
    fix = locate(rows, t, speed_of_sound_m_s=C, source_up_m=1.5, gate_s=1e-3, sensor_ids=ids)
    assert fix.status == "ok"
    np.testing.assert_allclose(fix.position_m, SOURCE, atol=1e-6)
    assert set(np.flatnonzero(fix.used)) == set(direct)


def test_speed_of_sound_from_temperature_and_estimated():
    from shotline.acoustics import speed_of_sound_m_s

    c0 = speed_of_sound_m_s(0.0)
    t = arrivals(GRID, SOURCE, c=c0)
    fix = locate(GRID, t, temperature_c=0.0, source_up_m=1.5)
    assert fix.speed_of_sound_m_s == pytest.approx(c0)
    np.testing.assert_allclose(fix.position_m, SOURCE, atol=1e-6)
    wrong = locate(GRID, t, temperature_c=30.0, source_up_m=1.5)
    fitted = locate(GRID, t, temperature_c=30.0, source_up_m=1.5, estimate_speed=True)
    assert fitted.speed_of_sound_m_s == pytest.approx(c0, abs=1e-3)
    assert np.linalg.norm(fitted.position_m - SOURCE) < 1e-3 < np.linalg.norm(wrong.position_m - SOURCE)


def test_covariance_matches_the_scatter_and_the_bound():
    """The reported covariance is the Cramér–Rao bound at the fix, and the actual
    scatter of noisy fixes matches it; the 95 % ellipse covers about 95 %."""
    sigma = 100e-6
    rng = np.random.default_rng(1)
    n = 600
    t = arrivals(GRID, SOURCE)[None] + rng.normal(0, sigma, (n, len(GRID)))
    batch = locate_batch(GRID, t, speed_of_sound_m_s=C, timing_sigma_s=sigma, source_up_m=1.5)
    err = batch.position_m[:, :2] - SOURCE[:2]
    crb = cramer_rao_bound(GRID, SOURCE, sigma, speed_of_sound_m_s=C)[:2, :2]
    np.testing.assert_allclose(np.cov(err.T), crb, rtol=0.2, atol=0.1 * np.trace(crb))
    np.testing.assert_allclose(batch.covariance_m2[0, :2, :2], crb, rtol=0.02)
    inside = [e @ np.linalg.solve(crb, e) <= 5.991 for e in err]
    assert 0.92 <= np.mean(inside) <= 0.98
    fix = locate(GRID, t[0], speed_of_sound_m_s=C, timing_sigma_s=sigma, source_up_m=1.5)
    ell = fix.ellipse95_m
    assert ell == ellipse95(fix.covariance_m2)
    vals = np.linalg.eigvalsh(fix.covariance_m2[:2, :2])
    assert ell.major_m == pytest.approx(math.sqrt(5.991 * vals[1]), rel=1e-3)
    assert 0.0 <= ell.azimuth_deg < 180.0


def test_timing_sigma_estimated_from_residuals():
    rng = np.random.default_rng(2)
    many = np.array([[x, y, 10.0] for x in range(0, 1000, 200) for y in range(0, 1000, 200)])
    t = arrivals(many, SOURCE) + rng.normal(0, 300e-6, len(many))
    fix = locate(many, t, speed_of_sound_m_s=C, source_up_m=1.5, gate_s=3e-3, prior_sigma_s=200e-6)
    assert fix.timing_sigma_source == "residuals"
    assert fix.timing_sigma_dof == 8 + len(many) - 3      # the prior's 8 and the spare arrivals
    assert fix.timing_sigma_s == pytest.approx(300e-6, rel=0.35)
    assert fix.residual_rms_s == pytest.approx(300e-6, rel=0.35)


def test_ellipse_orientation():
    ell = ellipse95(np.diag([1.0, 9.0, 0.0]))  # long north-south
    assert ell.azimuth_deg == pytest.approx(0.0, abs=1e-6) or ell.azimuth_deg == pytest.approx(180.0)
    assert ell.major_m == pytest.approx(3.0 * math.sqrt(5.991), rel=1e-3)
    assert ellipse95(np.diag([9.0, 1.0])).azimuth_deg == pytest.approx(90.0)


def test_gdop_is_worse_outside_the_array():
    inside = locate(GRID, arrivals(GRID, SOURCE), speed_of_sound_m_s=C, source_up_m=1.5,
                    timing_sigma_s=1e-4)
    far = np.array([1500.0, 1400.0, 1.5])
    outside = locate(GRID, arrivals(GRID, far), speed_of_sound_m_s=C, source_up_m=1.5,
                     timing_sigma_s=1e-4)
    assert outside.gdop > 3 * inside.gdop
    assert outside.ellipse95_m.major_m > 5 * inside.ellipse95_m.major_m


def test_cramer_rao_bound_shrinks_with_sensors_and_scales_with_sigma():
    b6 = cramer_rao_bound(GRID[:6], SOURCE, 1e-4, speed_of_sound_m_s=C)
    b9 = cramer_rao_bound(GRID, SOURCE, 1e-4, speed_of_sound_m_s=C)
    b9x10 = cramer_rao_bound(GRID, SOURCE, 1e-3, speed_of_sound_m_s=C)
    assert np.trace(b9) < np.trace(b6)
    np.testing.assert_allclose(b9x10, 100 * b9)
    with pytest.raises(ValueError):
        cramer_rao_bound(GRID[:2], SOURCE, 1e-4)


def test_locate_llh_round_trip():
    frame = LocalFrame(40.4406, -79.9959, 250.0)
    sensors_llh = frame.to_llh(GRID)
    src_llh = frame.to_llh(SOURCE)
    t = arrivals(GRID, SOURCE, T0)
    fix = locate_llh(sensors_llh, t, speed_of_sound_m_s=C, source_up_m=float(src_llh[2]))
    assert fix.status == "ok"
    np.testing.assert_allclose(fix.position_llh[:2], src_llh[:2], atol=1e-6)  # ~0.1 m
    assert fix.position_llh[2] == pytest.approx(src_llh[2], abs=0.05)
    d = fix.to_dict()
    assert len(d["position_llh"]) == 3
    # Given the same frame, ENU metres come back in it.
    fix2 = locate_llh(sensors_llh, t, frame=frame, speed_of_sound_m_s=C, source_up_m=float(src_llh[2]))
    np.testing.assert_allclose(fix2.position_m, SOURCE, atol=0.1)


def test_to_dict_is_strict_json():
    fix = locate(GRID[:2], [0.0, 0.1], speed_of_sound_m_s=C)  # insufficient: NaNs inside
    text = json.dumps(fix.to_dict(), allow_nan=False)
    d = json.loads(text)
    assert d["status"] == "insufficient" and d["position_m"] == [None, None, None]
    good = locate(GRID, arrivals(GRID, SOURCE), speed_of_sound_m_s=C).to_dict()
    assert set(good["ellipse95_m"]) == {"major", "minor", "azimuth_deg"}
    assert good["used"] == [True] * len(GRID) and len(good["residuals_s"]) == len(GRID)


def test_fix_is_frozen():
    fix = locate(GRID, arrivals(GRID, SOURCE), speed_of_sound_m_s=C)
    assert isinstance(fix, Fix)
    with pytest.raises(Exception):
        fix.status = "x"
    with pytest.raises(ValueError):
        fix.position_m[0] = 1.0


@pytest.mark.parametrize("call", [
    lambda: locate(GRID[:, :1], np.zeros(9)),
    lambda: locate(GRID, np.zeros(8)),
    lambda: locate(GRID, np.full(9, np.inf)),
    lambda: locate(GRID, np.zeros(9), mode="4d"),
    lambda: locate(GRID[:, :2], np.zeros(9), mode="3d"),
    lambda: locate(GRID, np.zeros(9), timing_sigma_s=-1.0),
    lambda: locate(GRID, np.zeros(9), speed_of_sound_m_s=30.0),
    lambda: locate(GRID, np.zeros(9), sensor_ids=[1, 2]),
    lambda: locate_batch(GRID, np.zeros(9)),
    lambda: locate_batch(GRID, np.zeros((1, 9)), robust="sometimes"),
    lambda: locate_llh(GRID[:, :2], np.zeros(9)),
])
def test_bad_input_is_refused_with_a_clear_error(call):
    with pytest.raises(ValueError):
        call()


def test_batch_matches_single_and_handles_missing_and_minimal_events():
    rng = np.random.default_rng(3)
    sources = np.c_[rng.uniform(0, 640, (50, 2)), np.full(50, 1.5)]
    t = np.array([arrivals(GRID, s, T0 + i) for i, s in enumerate(sources)])
    t[5, [1, 2]] = np.nan
    t[6, 3:] = np.nan   # three arrivals left: the minimal case goes through locate()
    t[7, 2:] = np.nan   # two: insufficient
    batch = locate_batch(GRID, t, speed_of_sound_m_s=C, source_up_m=1.5)
    assert len(batch) == 50
    for i in (0, 5, 6, 30):
        single = locate(GRID, t[i], speed_of_sound_m_s=C, source_up_m=1.5)
        cands = [batch[i]] + list(batch[i].alternatives)
        assert min(np.linalg.norm(f.position_m - single.position_m) for f in cands) < 1e-4
        assert batch.t_emit_s[i] == pytest.approx(single.t_emit_s, abs=1e-6)
    assert batch.status[7] == "insufficient"
    assert not batch.used[5, 1] and batch.used[5, 0]
    ok = batch.status == "ok"
    assert ok.sum() >= 47
    np.testing.assert_allclose(batch.position_m[ok], sources[ok], atol=0.05)
    assert [f.status for f in batch][:3] == list(batch.status[:3])
    assert batch[0].gdop == pytest.approx(locate(GRID, t[0], speed_of_sound_m_s=C, source_up_m=1.5).gdop)


def test_batch_per_event_sensors_and_robust_option():
    t = arrivals(GRID, SOURCE)
    t_echo = t.copy()
    t_echo[0] += 0.05
    sensors = np.stack([GRID, GRID + [100.0, 0.0, 0.0]])
    times = np.stack([t_echo, arrivals(sensors[1], SOURCE)])
    robust = locate_batch(sensors, times, speed_of_sound_m_s=C, source_up_m=1.5, robust=True)
    np.testing.assert_allclose(robust.position_m, [SOURCE, SOURCE], atol=1e-6)
    assert not robust.used[0, 0] and robust[0].reasons[0].startswith("late")


def test_minimal_solutions_vectorised():
    s = GRID[[[0, 2, 7], [1, 3, 8]], :].copy()
    s[:, :, 2] -= 1.5  # the source plane at z = 0
    dt = np.linalg.norm(s - (SOURCE - [0, 0, 1.5]), axis=2) / C
    P, t0, valid = minimal_solutions(s, dt, 2, C)
    assert P.shape == (2, 2, 3) and t0.shape == valid.shape == (2, 2)
    for i in range(2):
        best = np.min(np.where(valid[i], np.linalg.norm(P[i] - (SOURCE - [0, 0, 1.5]), axis=1), np.inf))
        assert best < 1e-6


# ----------------------------------------------------------------------------
# Properties: the fix moves with the geometry; a time shift moves only t_emit.

coords = st.floats(-300.0, 300.0)


@st.composite
def scenes(draw):
    n = draw(st.integers(5, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31)))
    sensors = np.c_[rng.uniform(-400, 400, (n, 2)), rng.uniform(3, 30, n)]
    src = np.array([draw(coords), draw(coords), 1.5])
    return sensors, src


def _well_posed(sensors, src):
    cov = cramer_rao_bound(sensors, src, 1e-4, speed_of_sound_m_s=C)
    return np.sqrt(np.trace(cov)) < 2.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(scenes(), st.floats(-5000, 5000), st.floats(-5000, 5000), st.floats(0, 2 * math.pi))
def test_translation_and_rotation_move_the_fix_with_the_geometry(scene, dx, dy, angle):
    sensors, src = scene
    assume(_well_posed(sensors, src))
    rng = np.random.default_rng(0)
    t = arrivals(sensors, src) + rng.normal(0, 50e-6, len(sensors))
    base = locate(sensors, t, speed_of_sound_m_s=C, source_up_m=1.5, timing_sigma_s=50e-6)
    rot = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    shift = np.array([dx, dy, 0.0])
    moved = locate(sensors @ rot.T + shift, t, speed_of_sound_m_s=C, source_up_m=1.5, timing_sigma_s=50e-6)
    assert moved.status == base.status
    np.testing.assert_allclose(moved.position_m, base.position_m @ rot.T + shift, atol=1e-5)
    assert moved.t_emit_s == pytest.approx(base.t_emit_s, abs=1e-9)
    np.testing.assert_array_equal(moved.used, base.used)
    assert moved.ellipse95_m.major_m == pytest.approx(base.ellipse95_m.major_m, rel=1e-4)


@settings(max_examples=40, deadline=None)
@given(scenes(), st.floats(-1e4, 1.7e9))
def test_shifting_all_times_shifts_only_the_emission_time(scene, shift_s):
    sensors, src = scene
    t = arrivals(sensors, src)
    base = locate(sensors, t, speed_of_sound_m_s=C, source_up_m=1.5)
    moved = locate(sensors, t + shift_s, speed_of_sound_m_s=C, source_up_m=1.5)
    assert moved.status == base.status
    # Absolute POSIX times resolve 0.24 us (0.08 m of range).
    np.testing.assert_allclose(moved.position_m, base.position_m, atol=0.2)
    assert moved.t_emit_s - shift_s == pytest.approx(base.t_emit_s, abs=2e-6)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 9), st.sampled_from(["2d", "2.5d", "3d"]), st.integers(0, 2 ** 31),
       st.booleans(), st.booleans())
def test_any_geometry_gives_a_fix_or_a_clear_error(n, mode, seed, repeat_sensor, with_nan):
    """Random, repeated, collinear or missing input never crashes: a Fix with a
    known status and strict-JSON output, or a ValueError."""
    rng = np.random.default_rng(seed)
    sensors = np.round(rng.uniform(-500, 500, (n, 3)), int(rng.integers(0, 3)))
    if repeat_sensor and n > 1:
        sensors[-1] = sensors[0]
    if rng.random() < 0.2:
        sensors[:, 1] = 2.0 * sensors[:, 0]  # collinear
    t = rng.uniform(0, 3, n)
    if with_nan and n:
        t[rng.integers(n)] = np.nan
    try:
        fix = locate(sensors if mode != "2d" else sensors[:, :2], t, mode=mode,
                     timing_sigma_s=float(rng.choice([1e-4, 1e-3])))
    except ValueError:
        assert n == 0
        return
    assert fix.status in ("ok", "ambiguous", "degenerate", "insufficient")
    assert len(fix.used) == n and len(fix.reasons) == n
    json.dumps(fix.to_dict(), allow_nan=False)
    if fix.status in ("ok", "ambiguous"):
        assert np.all(np.isfinite(fix.position_m)) and fix.used.sum() >= (4 if mode == "3d" else 3)


def test_package_level_locate_is_the_solver():
    """The issue's API: ``shotline.locate(sensors_m, arrival_times_s, ...) -> Fix``."""
    import shotline
    from shotline.locate import Fix

    sensors = np.array([[0.0, 0.0, 0.0], [400.0, 0.0, 0.0], [0.0, 400.0, 0.0], [400.0, 400.0, 0.0]])
    source = np.array([130.0, 250.0, 0.0])
    c = 340.0
    times = 5.0 + np.linalg.norm(sensors - source, axis=1) / c
    fix = shotline.locate(sensors, times, speed_of_sound_m_s=c, mode="2d")
    assert isinstance(fix, Fix) and fix.status == "ok"
    np.testing.assert_allclose(fix.position_m[:2], source[:2], atol=1e-3)
    assert abs(fix.t_emit_s - 5.0) < 1e-6
