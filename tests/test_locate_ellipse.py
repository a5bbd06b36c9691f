"""Honest 95 % error ellipses: a given timing sigma is known (chi-square); without
it a prior sigma and the residuals combine (Jordan & Sverdrup 1981) and the
ellipse takes the F quantile.  Coverage is checked on synthetic events whose
timing error is known; the real-data check is eval/locate.py part 4."""
import math

import numpy as np
import pytest
from scipy.stats import f as f_dist

from shotline.locate import (CHI2_2DOF_95, DEFAULT_PRIOR_DOF, GATE_SIGMAS, ellipse95, locate, locate_batch,
                             quantile95, timing_sigma)

C = 343.0
SIGMA_S = 100e-6
SQUARE = np.array([[0.0, 0.0, 10.0], [400.0, 30.0, 15.0], [380.0, 420.0, 8.0], [-20.0, 390.0, 20.0],
                   [200.0, 650.0, 12.0], [640.0, 250.0, 9.0]])


def covered(fix, truth_xy):
    """Whether the truth lies in the fix's 95 % ellipse (from its reported axes)."""
    ell = fix.ellipse95_m
    az = math.radians(ell.azimuth_deg)
    d = np.asarray(truth_xy) - fix.position_m[:2]
    along = d @ (math.sin(az), math.cos(az))
    across = d @ (math.cos(az), -math.sin(az))
    return along ** 2 / ell.major_m ** 2 + across ** 2 / ell.minor_m ** 2 <= 1.0


def noisy_events(n_sensors, n_events, seed):
    rng = np.random.default_rng(seed)
    sources = np.c_[rng.uniform(50, 350, (n_events, 2)), np.full(n_events, 1.5)]
    s = SQUARE[:n_sensors]
    t = 1.5e9 + np.linalg.norm(s[None] - sources[:, None], axis=2) / C + rng.normal(0, SIGMA_S,
                                                                                    (n_events, n_sensors))
    return s, sources, t


def test_quantile_is_chi_square_when_known_and_f_when_estimated():
    assert quantile95() == CHI2_2DOF_95
    assert quantile95(2) == pytest.approx(38.0)                 # 2 F(2, 2; 0.95) = 2 x 19
    for dof in (1, 3, 9, 30):
        assert quantile95(dof) == pytest.approx(2 * f_dist.ppf(0.95, 2, dof))
    assert CHI2_2DOF_95 < quantile95(1000) < quantile95(10) < quantile95(3)
    with pytest.raises(ValueError):
        quantile95(0)


def test_timing_sigma_combines_the_prior_and_the_residuals():
    assert timing_sigma(1e-6, 4, sigma_given=2e-4) == (2e-4, math.inf, "given")
    s, dof, source = timing_sigma(5e-6, 2, prior_sigma_s=1e-3, prior_dof=8)
    assert s == pytest.approx(math.sqrt((8 * 1e-6 + 5e-6) / 10)) and dof == 10 and source == "residuals"
    assert timing_sigma(0.0, 0, prior_sigma_s=1e-3, prior_dof=8) == (1e-3, 8, "default")
    assert timing_sigma(5e-6, 2, prior_sigma_s=1e-3, prior_dof=math.inf) == (1e-3, math.inf, "residuals")


def test_a_given_sigma_is_known_and_keeps_the_chi_square_ellipse():
    s, sources, t = noisy_events(5, 1, 1)
    fix = locate(s, t[0], speed_of_sound_m_s=C, timing_sigma_s=SIGMA_S, source_up_m=1.5)
    assert (fix.timing_sigma_s, fix.timing_sigma_dof, fix.timing_sigma_source) == (SIGMA_S, math.inf, "given")
    assert fix.ellipse95_m == ellipse95(fix.covariance_m2)
    assert fix.to_dict()["timing_sigma_dof"] is None             # JSON: null = known


def test_without_sigma_the_gate_gives_the_prior_and_the_ellipse_the_f_quantile():
    s, sources, t = noisy_events(5, 1, 2)
    fix = locate(s, t[0], speed_of_sound_m_s=C, source_up_m=1.5, gate_s=2e-3)
    r = fix.residuals_s[fix.used]
    s0 = 2e-3 / GATE_SIGMAS
    expected = math.sqrt((DEFAULT_PRIOR_DOF * s0 ** 2 + np.sum(r ** 2)) / (DEFAULT_PRIOR_DOF + 2))
    assert fix.timing_sigma_s == pytest.approx(expected) and fix.timing_sigma_dof == DEFAULT_PRIOR_DOF + 2
    assert fix.ellipse95_m == ellipse95(fix.covariance_m2, fix.timing_sigma_dof)
    assert fix.to_dict()["timing_sigma_dof"] == DEFAULT_PRIOR_DOF + 2
    # A configurable prior, and a prior taken as known.
    own = locate(s, t[0], speed_of_sound_m_s=C, source_up_m=1.5, gate_s=2e-3, prior_sigma_s=50e-6, prior_dof=2)
    assert own.timing_sigma_dof == 4 and own.timing_sigma_s < fix.timing_sigma_s
    known = locate(s, t[0], speed_of_sound_m_s=C, source_up_m=1.5, gate_s=2e-3, prior_dof=math.inf)
    assert known.timing_sigma_s == s0 and known.ellipse95_m == ellipse95(known.covariance_m2)


def test_three_arrivals_do_not_claim_a_made_up_precision():
    """No spare arrival: the prior alone (with its F quantile), not a 100 µs guess."""
    s, sources, t = noisy_events(3, 1, 3)
    fix = locate(s, t[0], speed_of_sound_m_s=C, source_up_m=1.5, gate_s=40e-3)
    assert fix.n_used == 3 and fix.timing_sigma_source == "default"
    assert fix.timing_sigma_s == 10e-3 and fix.timing_sigma_dof == DEFAULT_PRIOR_DOF
    assert fix.ellipse95_m.major_m > 5.0      # 10 ms at ~400 m spacing: metres, not 0.1 m


@pytest.mark.parametrize("n_sensors", [3, 4, 6])
def test_ellipses_cover_95_percent_when_the_prior_is_right(n_sensors):
    """Gate 4 sigma: the prior is the true timing error.  With 4 sensors the
    residual-only sigma (one spare arrival) covered about 66 %."""
    s, sources, t = noisy_events(n_sensors, 300, 10 + n_sensors)
    batch = locate_batch(s, t, speed_of_sound_m_s=C, source_up_m=1.5, gate_s=GATE_SIGMAS * SIGMA_S)
    share = np.mean([covered(f, src[:2]) for f, src in zip(batch, sources)])
    assert share >= 0.93
    # ... and not by being absurd: within 1.5 x the ellipses of the known sigma.
    known = locate_batch(s, t, speed_of_sound_m_s=C, source_up_m=1.5, timing_sigma_s=SIGMA_S)
    ratio = [f.ellipse95_m.major_m / k.ellipse95_m.major_m for f, k in zip(batch, known)]
    assert np.median(ratio) <= 1.5


def test_the_f_region_is_exact_for_a_residual_only_sigma():
    """A vanishing prior weight leaves sigma from the residuals alone; the F
    quantile then makes the region exact (the chi-square one covered ~75 %)."""
    s, sources, t = noisy_events(5, 600, 21)
    batch = locate_batch(s, t, speed_of_sound_m_s=C, source_up_m=1.5, gate_s=2e-3, prior_dof=1e-9,
                         robust=False)
    fixes = list(batch)
    assert all(f.timing_sigma_dof == pytest.approx(2.0) for f in fixes)
    share = np.mean([covered(f, src[:2]) for f, src in zip(fixes, sources)])
    assert 0.93 <= share <= 0.97
    chi2 = np.mean([covered(f, src[:2]) for f, src in
                    zip([_with_chi2(f) for f in fixes], sources)])
    assert chi2 < 0.85


def _with_chi2(fix):
    from dataclasses import replace

    return replace(fix, ellipse95_m=ellipse95(fix.covariance_m2))


def test_batch_reports_the_ellipses_locate_reports():
    s, sources, t = noisy_events(6, 5, 4)
    batch = locate_batch(s, t, speed_of_sound_m_s=C, source_up_m=1.5, gate_s=2e-3)
    for i in range(5):
        single = locate(s, t[i], speed_of_sound_m_s=C, source_up_m=1.5, gate_s=2e-3)
        assert batch[i].timing_sigma_dof == single.timing_sigma_dof
        assert batch[i].timing_sigma_s == pytest.approx(single.timing_sigma_s, rel=1e-6)
        assert batch[i].ellipse95_m.major_m == pytest.approx(single.ellipse95_m.major_m, rel=1e-4)


@pytest.mark.parametrize("kwargs", [{"prior_dof": 0}, {"prior_dof": -1.0}, {"prior_sigma_s": 0.0},
                                    {"prior_sigma_s": math.nan}])
def test_a_bad_prior_is_refused(kwargs):
    s, sources, t = noisy_events(4, 1, 5)
    with pytest.raises(ValueError, match="prior"):
        locate(s, t[0], speed_of_sound_m_s=C, **kwargs)
    with pytest.raises(ValueError, match="prior"):
        locate_batch(s, t, speed_of_sound_m_s=C, **kwargs)
