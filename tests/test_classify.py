"""Classifier: features, source level, model file, inference, calibration, fallbacks."""
import json
import math

import numpy as np
import pytest

from classify_helpers import synthetic_examples
from shotline import classify_features as cf
from shotline import train
from shotline.acoustics import absorption_db_per_m
from shotline.classify import (Classification, ModelError, classify_event, classify_events,
                               classify_feature_dict, load_model)
from shotline.classify_model import predict_proba, save_model


@pytest.fixture(scope="module")
def fitted():
    return train.fit(synthetic_examples(120, seed=1))


# -- physics ---------------------------------------------------------------------------------

def test_propagation_loss_is_spherical_spreading_plus_iso9613_absorption():
    alpha = absorption_db_per_m(1000.0, 10.0, 60.0)
    loss = cf.propagation_loss_db([1.0, 100.0, 1000.0], 1000.0, 10.0, 60.0)
    assert loss == pytest.approx([0.0, 40.0 + 99 * alpha, 60.0 + 999 * alpha])
    assert cf.propagation_loss_db(0.2, 1000.0, 10.0, 60.0) == 0.0  # inside 1 m: no gain


def test_source_level_inverts_the_forward_model_at_every_distance():
    rng = np.random.default_rng(4)
    r = rng.uniform(20, 2000, 12)
    received = 155.0 - cf.propagation_loss_db(r, cf.LEVEL_REFERENCE_HZ, 0.0, 80.0)
    level, spread = cf.robust_source_level_db(received, r, temperature_c=0.0,
                                              relative_humidity_pct=80.0)
    assert level == pytest.approx(155.0, abs=1e-9) and spread == pytest.approx(0.0, abs=1e-9)


def test_source_level_median_resists_a_shadowed_and_a_clipped_sensor():
    r = np.array([150.0, 300.0, 420.0, 600.0, 800.0])
    received = 150.0 - cf.propagation_loss_db(r, cf.LEVEL_REFERENCE_HZ)
    received[1] -= 18.0   # behind a building
    received[0] -= 6.0    # clipped
    level, _ = cf.robust_source_level_db(received, r)
    assert level == pytest.approx(150.0, abs=0.01)
    assert np.mean(cf.source_levels_db(received, r)) < 146.0  # what a mean would say


def _free_field_scene(distances_m, level_db, seed=3):
    from shotline.geo import LocalFrame
    from shotline.simulate import parse_scenario, render

    origin = (40.44, -79.99, 250.0)
    frame = LocalFrame(*origin)
    sensors = []
    for i, d in enumerate(distances_m):
        a = 2 * math.pi * i / len(distances_m)
        lat, lon, _ = frame.to_llh([d * math.cos(a), d * math.sin(a), 1.5])
        sensors.append({"id": f"S{i}", "lat_deg": float(lat), "lon_deg": float(lon),
                        "height_m": 1.5, "gain_db": 0.0})
    doc = {"start_utc": "2026-07-04T22:00:00Z", "duration_s": 3.0, "sample_rate_hz": 12000,
           "seed": seed, "weather": {"temperature_c": 10, "relative_humidity_pct": 60},
           "propagation": {"echoes": 0, "excess_attenuation_db": 0, "ground_reflection": 0},
           "origin": {"lat_deg": origin[0], "lon_deg": origin[1], "alt_m": origin[2]},
           "sensors": sensors,
           "sources": [{"kind": "handgun", "t_s": 1.0, "lat_deg": origin[0], "lon_deg": origin[1],
                        "height_m": 1.5, "level_db_spl": level_db}]}
    return render(parse_scenario(doc))


def test_source_level_recovers_the_simulators_level_from_25_m_to_1_2_km():
    """Independent physics: the simulator's received peak (its own absorption
    filter on the band-limited blast) back-propagated by ours.  Stated error:
    within 7 dB of the 1 m level (band-limiting a 0.3-0.6 ms blast to 12 kHz
    lowers its peak), and varying less than 3 dB over distance."""
    distances = [25, 50, 100, 200, 400, 800, 1200]
    rendering = _free_field_scene(distances, 155.0)
    imp = rendering.truth["sources"][0]["impulses"][0]
    est = [cf.source_levels_db([a["peak_db_spl"]], [a["distance_m"]], 10.0, 60.0)[0]
           for a in imp["arrivals"]]
    assert np.all(np.abs(np.array(est) - imp["level_db_spl_1m"]) < 7.0), est
    assert np.ptp(est) < 3.0, est


# -- features ---------------------------------------------------------------------------------

def _trigger(**kw):
    base = {"peak_dbfs": -30.0, "rise_time_s": 3e-4, "width_s": 1e-3, "decay_s": 5e-3,
            "band_low_db": -40.0, "band_mid_db": -35.0, "band_high_db": -45.0}
    base.update(kw)
    return base


def _event(position=(0.0, 0.0, 0.0), t=100.0, n=5, peak_dbfs=-30.0):
    sensors = [(300.0 * math.cos(a), 300.0 * math.sin(a), 5.0)
               for a in np.linspace(0, 2 * math.pi, n, endpoint=False)]
    return {"time_utc_s": t, "position_m": None if position is None else list(position),
            "location_error_m": 8.0, "temperature_c": 5.0,
            "triggers": [dict(_trigger(peak_dbfs=peak_dbfs), sensor_position_m=list(s))
                         for s in sensors]}


def test_event_features_use_location_and_mark_it_missing_without():
    from shotline.classify import features_of

    f = features_of(_event())
    expected = -30.0 + cf.FULL_SCALE_PEAK_DB_SPL + float(
        cf.propagation_loss_db(math.dist((300, 0, 5), (0, 0, 0)), cf.LEVEL_REFERENCE_HZ, 5.0))
    assert f["source_level_db"] == pytest.approx(expected)
    assert f["n_sensors"] == 5 and f["log10_location_error_m"] == pytest.approx(math.log10(8.0))
    assert f["spectral_tilt_at_source_db"] > f["spectral_tilt_db"] == pytest.approx(-5.0)
    g = features_of(_event(position=None))
    assert all(math.isnan(g[name]) for name in cf.LOCATION_FEATURES)
    assert math.isfinite(features_of(dict(_event(), status="ambiguous"))["source_level_db"])
    assert math.isnan(features_of(dict(_event(), status="degenerate"))["source_level_db"])
    assert g["log10_rise_time_s"] == pytest.approx(math.log10(3e-4))


def test_event_without_triggers_is_refused_with_a_reason():
    from shotline.classify import features_of

    with pytest.raises(cf.FeatureError, match="no triggers"):
        features_of({"position_m": [0, 0, 0], "triggers": []})


def test_burst_pattern_tells_metronome_from_crackle():
    n, spacing, cv = cf.burst_pattern(np.arange(20) * 0.05)
    assert n == 20 and spacing == pytest.approx(0.05) and cv < 1e-9
    rng = np.random.default_rng(0)
    _, _, cv_random = cf.burst_pattern(np.sort(rng.uniform(0, 2, 30)))
    assert cv_random > 0.5
    assert math.isnan(cf.burst_pattern([1.0])[1]) and math.isnan(cf.burst_pattern([1.0, 2.0])[2])


def test_bursts_group_by_place_and_gap():
    times = [0.0, 0.3, 0.6, 0.35, 5.0, 0.5]
    pos = [(0, 0, 0), (5, 0, 0), (0, 5, 0), (500, 0, 0), (0, 0, 0), None]
    labels = cf.group_bursts(times, pos)
    assert labels[0] == labels[1] == labels[2]
    assert len({labels[0], labels[3], labels[4], labels[5]}) == 4


# -- model file --------------------------------------------------------------------------------

def test_model_file_round_trips(tmp_path, fitted):
    path = tmp_path / "m.json"
    save_model(fitted, path)
    loaded = load_model(path)
    assert loaded == json.loads(json.dumps(fitted))
    X = np.array([[e.features[n] for n in cf.FEATURE_NAMES] for e in synthetic_examples(5, seed=9)])
    np.testing.assert_allclose(predict_proba(loaded, X), predict_proba(fitted, X), rtol=1e-12)
    np.testing.assert_allclose(predict_proba(loaded, X).sum(axis=1), 1.0)


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.replace('"temperature": ', '"temperature": 1', 1), "checksum"),
    (lambda t: t[: len(t) // 2], "not valid JSON"),
    (lambda t: t.replace('"format_version": 1', '"format_version": 99'), "format_version"),
    (lambda t: "[]", "not a JSON object"),
])
def test_damaged_model_file_gives_a_clear_error(tmp_path, fitted, damage, message):
    path = tmp_path / "m.json"
    save_model(fitted, path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_missing_model_file_gives_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="cannot read classifier model"):
        load_model(tmp_path / "absent.json")


def test_events_keep_flowing_as_unknown_when_the_model_is_broken(tmp_path, monkeypatch):
    import shotline.classify as c

    bad = tmp_path / "bad.json"
    bad.write_text("{")
    monkeypatch.setattr(c, "DEFAULT_MODEL_PATH", bad)
    monkeypatch.setattr(c, "_DEFAULT", {})
    events = [_event(t=1.0), _event(t=50.0), {"triggers": []}]
    out = classify_events(events)
    assert [r.class_ for r in out] == ["unknown"] * 3
    assert "not valid JSON" in out[0].reasons[0]["error"]
    assert out[0].to_dict()["class"] == "unknown"
    with pytest.raises(ModelError):
        classify_event(events[0])


def test_shipped_model_loads_and_classifies():
    model = load_model()
    assert [f["name"] for f in model["features"]] == list(cf.FEATURE_NAMES)  # retrain if not
    assert model["classes"] == list(train.CLASSES)
    result = classify_event(_event(), model)
    assert result.class_ in model["classes"]
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.model_version == model["model_version"]


# -- inference and calibration -----------------------------------------------------------------

def test_classification_dict_and_reasons(fitted):
    f = dict.fromkeys(cf.FEATURE_NAMES, math.nan)
    f.update(source_level_db=165.0, log10_rise_time_s=-3.5, log10_width_s=-3.0,
             n_sensors=5.0, log2_burst_n=1.0)
    result = classify_feature_dict(f, fitted)
    d = result.to_dict()
    assert set(d) == {"class", "probabilities", "reasons", "model_version"}
    assert d["class"] == "gunshot" and result.probability == d["probabilities"]["gunshot"]
    assert d["reasons"][0]["feature"] == "source_level_db"
    assert d["reasons"][0]["contribution"] > 0 and d["reasons"][0]["value"] == 165.0
    quiet = classify_feature_dict(dict(f, source_level_db=105.0), fitted)
    assert quiet.class_ == "other_impulsive"


def test_bad_event_in_a_batch_is_unknown_and_the_rest_classified(fitted):
    garbled = dict(_event(), time_utc="yesterday", position_m="here", temperature_c="warm")
    out = classify_events([_event(t=1.0), {"triggers": []}, _event(t=9.0), garbled, 7], fitted)
    assert out[0].class_ != "unknown" and out[2].class_ != "unknown"
    assert out[1].class_ == "unknown" and "no triggers" in out[1].reasons[0]["error"]
    assert [r.class_ for r in out[3:]] == ["unknown", "unknown"]


def test_probabilities_are_calibrated_on_held_out_groups():
    """Overlapping classes: held-out confidence matches held-out accuracy."""
    ex = synthetic_examples(300, n_groups=6, seed=2, noise_db=9.0, level_only=True)
    probs = train.out_of_group_predictions(ex, [e.group for e in ex])
    _, y, _ = train._matrix(ex)
    s = train.scores(probs, y)
    assert 0.6 < s["accuracy"] < 0.99   # the task is genuinely uncertain
    assert s["ece"] < 0.05


def test_temperature_scaling_undoes_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (4000, 3))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=pi) for pi in p])
    assert train.fit_temperature(logits * 3.0, y, np.ones(len(y))) == pytest.approx(3.0, rel=0.1)


def test_splits_hold_out_whole_groups():
    ex = synthetic_examples(30, n_groups=6)
    ex += [type(ex[0])(e.features, e.label, f"pittsburgh/FP{i % 3}", "pittsburgh", e.view)
           for i, e in enumerate(ex[:30])]
    groups = train.split_groups(ex, sim_folds=3)
    for g in set(groups):
        test_members = {e.group for e, s in zip(ex, groups) if s == g}
        train_members = {e.group for e, s in zip(ex, groups) if s != g}
        assert not test_members & train_members
    assert {s for e, s in zip(ex, groups) if e.source == "pittsburgh"} == {
        "pittsburgh/FP0", "pittsburgh/FP1", "pittsburgh/FP2"}


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ANY = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none())


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({name: _ANY for name in cf.FEATURE_NAMES}))
def test_any_feature_values_give_valid_probabilities(values):
    model = load_model()
    result = classify_feature_dict(values, model)
    p = np.array(list(result.probabilities.values()))
    assert np.all(np.isfinite(p)) and np.all(p >= 0) and p.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.class_ in model["classes"]
    assert all(math.isfinite(r["contribution"]) for r in result.reasons)


def test_out_of_group_predictions_never_train_on_the_scored_group(monkeypatch):
    ex = synthetic_examples(20, n_groups=4, seed=3)
    split = train.split_groups(ex)
    seen = []
    real_fit = train.fit

    def spy(examples, **kw):
        seen.append({e.group for e in examples})
        return real_fit(examples, **kw)

    monkeypatch.setattr(train, "fit", spy)
    probs = train.out_of_group_predictions(ex, split)
    assert np.all(np.isfinite(probs))
    folds = sorted(set(split))
    assert len(seen) == len(folds)
    for fold, trained_on in zip(folds, seen):
        scored = {e.group for e, s in zip(ex, split) if s == fold}
        assert scored and not scored & trained_on


def test_feature_cache_is_reused_and_stale_entries_dropped(tmp_path):
    ex = synthetic_examples(3)
    calls = []

    def compute():
        calls.append(1)
        return ex

    (tmp_path / "synthetic-0000000000000000-deadbeef.json").write_text("{}")  # older code's
    first = train._cached(tmp_path, "synthetic", {"n": 3}, compute)
    again = train._cached(tmp_path, "synthetic", {"n": 3}, compute)
    assert len(calls) == 1 and [e.to_dict() for e in again] == [e.to_dict() for e in first]
    assert [p.name.split("-")[1] for p in tmp_path.glob("synthetic-*.json")] == \
        [train._code_fingerprint()]


def test_priors_reweight_by_bayes_rule(fitted):
    from shotline.classify import with_priors
    from shotline.classify_model import feature_vector

    f = dict.fromkeys(cf.FEATURE_NAMES, math.nan)
    f.update(source_level_db=140.0, log10_rise_time_s=-3.4, n_sensors=5.0, log2_burst_n=1.0)
    p = predict_proba(fitted, feature_vector(fitted, f)[None, :])[0]
    priors = {"gunshot": 0.02, "firework": 0.49, "other_impulsive": 0.49}
    q = with_priors(p, fitted["classes"], priors)
    assert (q[0] / q[1]) / (p[0] / p[1]) == pytest.approx(0.02 / 0.49)
    assert q.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(with_priors(p, fitted["classes"], {c: 5.0 for c in train.CLASSES}),
                               p)
    rare = classify_feature_dict(f, fitted, priors=priors)
    assert list(rare.probabilities.values()) == pytest.approx(q.tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="positive"):
        with_priors([0.5, 0.5], ["a", "b"], {"a": -1})
