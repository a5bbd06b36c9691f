"""Association: bursts, simultaneous shooters, echoes, clock faults, stream order."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from associate_helpers import (reference_best_sources, reference_heard_in_order, reference_one_per_sensor,
                                reference_window)
from hypothesis import strategies as st

from shotline.acoustics import speed_of_sound_m_s
from shotline.associate import Associator, Trigger, associate
from shotline.associate_fit import consistent_fix
from shotline.associate_search import best_sources
from shotline.associate_synth import grid_sensors, make_scene, score
from shotline.locate import locate

T0 = 1_545_180_567.0
TEMPERATURE_C = 10.0
C = speed_of_sound_m_s(TEMPERATURE_C)

# A ring of 8 rooftop sensors about 350 m around the origin, plus 4 farther out.
SENSORS = {f"R{k}": (350 * math.cos(k * math.pi / 4) + 17 * k, 350 * math.sin(k * math.pi / 4) - 9 * k, 8.0 + k)
           for k in range(8)}
SENSORS.update({f"F{k}": (900 * math.cos(k * math.pi / 2 + 0.4), 900 * math.sin(k * math.pi / 2 + 0.4), 12.0)
                for k in range(4)})


def arrivals(source, t_emit, sensors=SENSORS, level_db=90.0, noise_s=0.0, rng=None, offset_s=None):
    """Direct-path triggers from ``source`` at ``t_emit`` on ``sensors``."""
    out = []
    for name, pos in sensors.items():
        d = math.dist(pos, source)
        t = t_emit + d / C + (rng.normal(0.0, noise_s) if rng is not None else 0.0)
        t += (offset_s or {}).get(name, 0.0)
        out.append(Trigger(name, pos, t, snr_db=30.0, level_db=level_db - 20 * math.log10(max(d, 1.0) / 100)))
    return out


def options(**extra):
    return {"temperature_c": TEMPERATURE_C, "tolerance_s": 0.003, "min_sensors": 5,
            "max_range_m": 1200.0, "source_up_m": 0.0, "sensors": SENSORS, **extra}


def horizontal_error(event, source):
    return math.hypot(event.position_m[0] - source[0], event.position_m[1] - source[1])


def test_one_shot_gives_one_located_event():
    rng = np.random.default_rng(1)
    source = (40.0, -60.0, 0.0)
    result = associate(arrivals(source, T0, noise_s=100e-6, rng=rng), **options())
    assert len(result.events) == 1
    event = result.events[0]
    assert event.n_sensors == len(SENSORS)
    assert horizontal_error(event, source) < 1.0
    assert abs(event.t_emit_s - T0) < 1e-3
    assert event.status == "ok"
    assert result.unexplained == ()


def test_burst_of_three_shots_150_ms_apart_gives_three_events():
    source = (-80.0, 120.0, 0.0)
    triggers = [t for k in range(3) for t in arrivals(source, T0 + 0.15 * k)]
    result = associate(triggers, **options())
    assert len(result.events) == 3
    assert [round(e.t_emit_s - T0, 3) for e in result.events] == [0.0, 0.15, 0.3]
    for event in result.events:
        assert event.n_sensors == len(SENSORS)
        assert horizontal_error(event, source) < 0.5
        # every trigger of an event comes from the same shot
        k = round((event.t_emit_s - T0) / 0.15)
        expected = {t.time_utc_s for t in arrivals(source, T0 + 0.15 * k)}
        assert {t.time_utc_s for t in event.triggers} == expected


def test_two_simultaneous_shooters_300_m_apart_are_not_mixed():
    a, b = (-150.0, 0.0, 0.0), (150.0, 0.0, 0.0)
    triggers = arrivals(a, T0) + arrivals(b, T0)
    result = associate(triggers, **options())
    assert len(result.events) == 2
    for event in result.events:
        near = a if horizontal_error(event, a) < horizontal_error(event, b) else b
        assert horizontal_error(event, near) < 0.5
        expected = {t.time_utc_s for t in arrivals(near, T0)}
        assert {t.time_utc_s for t in event.triggers} <= expected
        assert event.n_sensors >= len(SENSORS) - 2


@pytest.mark.parametrize("with_levels", [True, False])
def test_echo_storm_makes_no_phantom_events(with_levels):
    rng = np.random.default_rng(7)
    source = (60.0, 30.0, 0.0)
    direct = arrivals(source, T0)
    echoes = []
    for trig in direct:               # five echoes per sensor, 20..600 ms late, 8..20 dB weaker
        for delay in np.sort(rng.uniform(0.02, 0.6, 5)):
            echoes.append(Trigger(trig.sensor, trig.position_m, trig.time_utc_s + delay,
                                  level_db=trig.level_db - rng.uniform(8, 20) if with_levels else None))
    if not with_levels:
        direct = [Trigger(t.sensor, t.position_m, t.time_utc_s) for t in direct]
    result = associate(direct + echoes, **options())
    assert len(result.events) == 1
    assert horizontal_error(result.events[0], source) < 0.5
    assert {t.time_utc_s for t in result.events[0].triggers} == {t.time_utc_s for t in direct}
    assert len(result.unexplained) == len(echoes)


def test_clock_fault_is_outvoted_and_flagged():
    assoc = Associator(**options())
    events = []
    for k, source in enumerate([(0.0, 0.0, 0.0), (100.0, -50.0, 0.0), (-120.0, 80.0, 0.0), (30.0, 160.0, 0.0)]):
        triggers = arrivals(source, T0 + 5.0 * k, offset_s={"R2": 0.050})
        events += assoc.push_many(triggers)
    events += assoc.flush()
    assert len(events) == 4
    for event in events:
        assert "R2" not in event.sensors
        flagged = {t.sensor: r for t, r in event.outliers}
        assert flagged["R2"] == pytest.approx(0.050, abs=0.002)
    assert set(assoc.clock_suspects()) == {"R2"}
    assert assoc.clock_suspects()["R2"] == pytest.approx(0.050, abs=0.002)


def test_out_of_order_and_duplicate_triggers():
    rng = np.random.default_rng(3)
    sources = [(-100.0, 50.0, 0.0), (120.0, -40.0, 0.0)]
    triggers = arrivals(sources[0], T0) + arrivals(sources[1], T0 + 0.4)
    in_order = associate(triggers, **options())
    shuffled = list(triggers) + list(triggers[:5])          # five duplicates
    rng.shuffle(shuffled)
    assoc = Associator(max_delay_s=2.0, **options())
    latest = {}
    for trig in shuffled:
        for event in assoc.push(trig):
            latest[event.event_id] = event
    for event in assoc.flush():
        latest[event.event_id] = event
    got = sorted(latest.values(), key=lambda e: e.t_emit_s)
    assert assoc.stats["duplicates"] == 5
    assert [e.sensors for e in got] == [e.sensors for e in in_order.events]
    assert np.allclose([e.position_m for e in got], [e.position_m for e in in_order.events], atol=1e-6)


def test_late_trigger_revises_its_event():
    source = (10.0, 20.0, 0.0)
    triggers = sorted(arrivals(source, T0), key=lambda t: t.time_utc_s)
    late = triggers.pop(3)
    assoc = Associator(**options())
    first = assoc.push_many(triggers) + assoc.advance(T0 + 20.0)
    assert len(first) == 1 and late.sensor not in first[0].sensors
    revised = assoc.push(late)
    assert len(revised) == 1
    assert revised[0].event_id == first[0].event_id and revised[0].revision == 1
    assert late.sensor in revised[0].sensors
    assert assoc.stats["late_attached"] == 1


def test_decision_waits_for_the_neighbourhood_then_decides():
    source = (0.0, 0.0, 0.0)
    triggers = sorted(arrivals(source, T0), key=lambda t: t.time_utc_s)
    assoc = Associator(**options())
    assert assoc.push_many(triggers) == []                     # farthest sensors may still report
    last = triggers[-1].time_utc_s
    assert assoc.advance(last + 0.1) == []
    decided = assoc.advance(last + 2 * 1200.0 / C + 0.1)     # past every anchor's physical wait
    assert len(decided) == 1
    assert decided[0].decided_s >= decided[0].deadline_s


def test_trigger_and_associator_validation():
    with pytest.raises(ValueError, match="position_m"):
        Trigger("S", (0.0, float("nan"), 0.0), T0)
    with pytest.raises(ValueError, match="sensor"):
        Trigger("", (0.0, 0.0), T0)
    with pytest.raises(ValueError, match="time_utc_s"):
        Trigger("S", (0.0, 0.0), float("inf"))
    assert Trigger("S", (1, 2), T0).position_m == (1.0, 2.0, 0.0)
    with pytest.raises(ValueError, match="min_sensors"):
        Associator(min_sensors=2)
    with pytest.raises(TypeError):
        Associator().push({"sensor": "S"})


def test_event_to_dict_round_trips_through_json():
    import json

    from shotline.geo import LocalFrame

    result = associate(arrivals((5.0, 5.0, 0.0), T0), **options())
    d = result.events[0].to_dict(LocalFrame(40.44, -79.99, 250.0))
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back["time_utc"].startswith("2018-12-19T00:49:27")
    assert len(back["sensors"]) == len(SENSORS) and back["status"] == "ok"
    assert back["position_llh"][0] == pytest.approx(40.44, abs=0.001)
    assert set(back["ellipse95_m"]) == {"major", "minor", "azimuth_deg"}


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_permuting_input_within_the_decision_window_does_not_change_events(seed):
    rng = np.random.default_rng(seed)
    sources = [(rng.uniform(-250, 250), rng.uniform(-250, 250), 0.0) for _ in range(3)]
    times = T0 + np.sort(rng.uniform(0.0, 0.6, 3))
    triggers = [t for s, te in zip(sources, times) for t in arrivals(s, te, noise_s=1e-4, rng=rng)]
    reference = associate(triggers, **options())
    order = rng.permutation(len(triggers))
    assoc = Associator(max_delay_s=5.0, **options())
    events = {}
    for k in order:
        for event in assoc.push(triggers[k]):
            events[event.event_id] = event
    for event in assoc.flush():
        events[event.event_id] = event
    got = sorted(events.values(), key=lambda e: e.t_emit_s)
    assert [set(e.sensors) for e in got] == [set(e.sensors) for e in reference.events]
    assert np.allclose([e.position_m for e in got], [e.position_m for e in reference.events], atol=1e-6)
    assert len(reference.events) == 3


def test_small_surge_recall_and_false_events():
    rng = np.random.default_rng(11)
    sensors = grid_sensors(144, 3000.0, rng)       # same density as 1,500 over 100 km^2
    scene = make_scene(sensors, n_impulses=45, duration_s=10.0, rng=rng)
    result = associate(scene.triggers, temperature_c=scene.temperature_c, sensors=sensors,
                       tolerance_s=0.002, min_sensors=5, max_range_m=800.0, source_up_m=0.0)
    s = score(scene, result.events)
    assert s.recall >= 0.95
    assert s.false_rate <= 0.03
    assert np.median(s.errors_m) < 1.0


def test_wait_is_bounded_by_the_range_not_the_neighbourhood():
    # The farthest neighbour may be 2 * max_range_m away, but a trigger sharing a
    # source with the anchor comes at most max_range_m / c after it.
    source = (0.0, 0.0, 0.0)
    triggers = sorted(arrivals(source, T0), key=lambda t: t.time_utc_s)
    assoc = Associator(**options())
    assert assoc.push_many(triggers) == []
    decided = assoc.advance(triggers[-1].time_utc_s + 1200.0 / C + 0.003 + 1e-6)
    assert len(decided) == 1 and decided[0].n_sensors == len(SENSORS)


def test_echoes_without_level_do_not_anchor_searches_but_bursts_still_split():
    # Level-less echoes just after a located shot wait for a fresh anchor instead of
    # costing a search each; the burst (every trigger just after an event) still splits.
    rng = np.random.default_rng(5)
    source = (60.0, -40.0, 0.0)
    shots = [arrivals(source, T0 + 0.15 * k) for k in range(3)]
    echoes = [Trigger(t.sensor, t.position_m, t.time_utc_s + rng.uniform(0.02, 0.4))
              for t in shots[0] + shots[2]]
    other = arrivals((-300.0, 250.0, 0.0), T0 + 0.2)      # a second source whose anchors are fresh
    plain = [Trigger(t.sensor, t.position_m, t.time_utc_s) for t in sum(shots, []) + echoes + other]
    assoc = Associator(**options())
    events = {}
    for t in sorted(plain, key=lambda t: t.time_utc_s):
        events.update((e.event_id, e) for e in assoc.push(t))
    events.update((e.event_id, e) for e in assoc.flush())
    got = sorted(events.values(), key=lambda e: e.t_emit_s)
    assert [round(e.t_emit_s - T0, 3) for e in got] == [0.0, 0.15, 0.2, 0.3]
    direct = [{t.time_utc_s for t in ts} for ts in (shots[0], shots[1], other, shots[2])]
    for event, truth in zip(got, direct):       # nothing mixed in; at most one sensor short
        assert {t.time_utc_s for t in event.triggers} <= truth
        assert event.n_sensors >= len(SENSORS) - 1
    assert assoc.stats["anchors_waived"] > 0


class _FullScanAssociator(Associator):
    """Checks every echo-train decision against a scan of all recent events."""

    calls = trains = 0

    def _echo_train(self, members):
        fast = super()._echo_train(members)
        n = len(members)
        times = dict(zip(self._s[members].tolist(), self._t[members].tolist()))
        full = any(n <= self.echo_ratio * event.n_sensors
                   and sum(0.0 < times.get(self._sensor_ids[trig.sensor], -math.inf) - trig.time_utc_s
                           <= self.reverb_s for trig in event.triggers) >= max(n - 1, 1)
                   for event in self._recent)
        assert fast == full
        type(self).calls += 1
        type(self).trains += fast
        return fast


def test_echo_train_prescreen_agrees_with_a_full_scan():
    # Level-less echoes (20 %) of a dense surge, plus late triggers that revise events.
    rng = np.random.default_rng(23)
    sensors = grid_sensors(144, 3000.0, rng)
    scene = make_scene(sensors, n_impulses=60, duration_s=6.0, rng=rng, echo_fraction=0.5)
    held = set(range(5, len(scene.triggers), 17))       # reported 4 s late
    stream = [t for k, t in enumerate(scene.triggers) if k not in held]
    late = [scene.triggers[k] for k in sorted(held)]
    assoc = _FullScanAssociator(temperature_c=scene.temperature_c, sensors=sensors, tolerance_s=0.002,
                                min_sensors=5, max_range_m=800.0, source_up_m=0.0, reverb_s=1.0)
    for t in stream:
        assoc.push(t)
        while late and late[0].time_utc_s + 4.0 <= t.time_utc_s:
            assoc.push(late.pop(0))
    assoc.flush()
    assert _FullScanAssociator.calls >= 30
    assert assoc.stats["late_attached"] > 0
    # Level-less echo storms after shots from three places: some sets are echo trains.
    triggers = []
    for k, source in enumerate([(60.0, 30.0, 0.0), (-200.0, 100.0, 0.0), (150.0, -220.0, 0.0)]):
        for trig in arrivals(source, T0 + 0.4 * k):
            triggers.append(Trigger(trig.sensor, trig.position_m, trig.time_utc_s))
            triggers += [Trigger(trig.sensor, trig.position_m, trig.time_utc_s + delay)
                         for delay in rng.uniform(0.02, 0.6, 8)]
    assoc = _FullScanAssociator(**options(tolerance_s=0.01))
    for t in sorted(triggers, key=lambda t: t.time_utc_s):
        assoc.push(t)
    assoc.flush()
    assert _FullScanAssociator.trains > 0


class _CheckedAssociator(Associator):
    """Checks every call of the associator's C kernels against their NumPy references."""

    calls = {"window": 0, "one_per_sensor": 0, "heard_in_order": 0, "refused": 0}

    def _window(self, i):
        want = reference_window(self, i)           # before: the kernel's output buffers are reused
        window, others, counts = super()._window(i)
        assert np.array_equal(window, want[0]) and np.array_equal(others, want[1])
        assert counts.tolist() == want[2]
        type(self).calls["window"] += 1
        return window, others, counts

    def _one_per_sensor(self, idx, abs_resid, limit):
        got = super()._one_per_sensor(idx, abs_resid, limit)
        assert np.array_equal(got, reference_one_per_sensor(self, idx, abs_resid, limit))
        type(self).calls["one_per_sensor"] += 1
        return got

    def _heard_in_order(self, source_m, members):
        got = super()._heard_in_order(source_m, members)
        want = reference_heard_in_order(self, source_m, members)
        assert (got is None) == (want is None) and (got is None or np.array_equal(got, want))
        type(self).calls["heard_in_order"] += 1
        type(self).calls["refused"] += got is None
        return got


@pytest.mark.parametrize("with_levels", [False, True])
def test_association_kernels_match_their_numpy_references(with_levels):
    # A dense surge with echoes, some triggers 4 s late, duplicates; levels make some triggers masked.
    rng = np.random.default_rng(41)
    sensors = grid_sensors(144, 3000.0, rng)
    scene = make_scene(sensors, n_impulses=50, duration_s=6.0, rng=rng, echo_fraction=0.4)
    triggers = [Trigger(t.sensor, t.position_m, t.time_utc_s, level_db=float(rng.uniform(70.0, 100.0)))
                for t in scene.triggers] if with_levels else list(scene.triggers)
    held = set(range(7, len(triggers), 19))
    stream = [t for k, t in enumerate(triggers) if k not in held] + triggers[::50]
    late = [triggers[k] for k in sorted(held)]
    _CheckedAssociator.calls = dict.fromkeys(_CheckedAssociator.calls, 0)
    assoc = _CheckedAssociator(temperature_c=scene.temperature_c, sensors=sensors, tolerance_s=0.002,
                               min_sensors=5, max_range_m=800.0, source_up_m=0.0)
    for t in sorted(stream, key=lambda t: t.time_utc_s):
        assoc.push(t)
        while late and late[0].time_utc_s + 4.0 <= t.time_utc_s:
            assoc.push(late.pop(0))
    assoc.flush()
    calls = _CheckedAssociator.calls
    assert calls["window"] >= 100 and calls["one_per_sensor"] >= 50 and calls["refused"] > 0
    assert calls["heard_in_order"] - calls["refused"] >= 30
    assert assoc.stats["events"] >= 30 and assoc.stats["duplicates"] > 0
    assert (assoc.stats["masked"] > 0) == with_levels


def _search_inputs(rng, n_sources, levels):
    """An anchor and the candidates physics allows it, from sources heard by 6-12 sensors, with echoes."""
    sensors = rng.uniform(-900.0, 900.0, (40, 3))
    sensors[:, 2] = rng.uniform(3.0, 20.0, 40)
    rows = []
    for k in range(n_sources):
        src = np.array([rng.uniform(-400, 400), rng.uniform(-400, 400), 0.0])
        dist = np.linalg.norm(sensors - src, axis=1)
        for j in np.argsort(dist)[:rng.integers(6, 13)]:
            t = 0.3 * k + dist[j] / C + rng.normal(0.0, 1e-4)
            rows.append((j, t, 80.0 - 20 * math.log10(dist[j] / 100) if levels else math.nan))
            if rng.random() < 0.3:
                rows.append((j, t + rng.uniform(0.01, 0.3), rows[-1][2] - 10.0))
    anchor = rows[0]
    p0 = sensors[anchor[0]]
    cand = [r for r in rows if r[0] != anchor[0]
            and abs(r[1] - anchor[1]) <= np.linalg.norm(sensors[r[0]] - p0) / C + 0.002]
    s = np.array([r[0] for r in cand])
    return (p0, np.array([r[1] for r in cand]) - anchor[1], sensors[s], s,
            np.array([r[2] for r in cand]))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_sources=st.integers(1, 3), levels=st.booleans())
def test_compiled_search_matches_the_numpy_reference(seed, n_sources, levels):
    p0, dt, pos, s, lvl = _search_inputs(np.random.default_rng(seed), n_sources, levels)
    kw = {"tolerance_s": 0.004, "max_range_m": 1200.0, "source_up_m": 0.0, "level_db": lvl, "min_count": 4}
    # Without a shortlist cut both rank every hypothesis: the same sources, in the same order.
    got = best_sources(p0, dt, pos, s, C, shortlist=10**6, **kw)
    want = reference_best_sources(p0, dt, pos, s, C, shortlist=10**6, **kw)
    assert len(got) == len(want)
    for (p_a, t_a, r_a), (p_b, t_b, r_b) in zip(got, want):
        assert np.allclose(p_a, p_b, atol=1e-6) and t_a == pytest.approx(t_b, abs=1e-9)
        assert np.allclose(r_a, r_b, atol=1e-9)
    # With the default shortlist, exact-fit ties at its edge may differ; the best source may not.
    got, want = best_sources(p0, dt, pos, s, C, **kw), reference_best_sources(p0, dt, pos, s, C, **kw)
    assert len(got) > 0 and len(want) > 0
    assert np.allclose(got[0][0], want[0][0], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(5, 14), given_height=st.booleans(),
       echo_s=st.sampled_from([0.0, 0.0, 0.004, 0.03]))
def test_consistent_fix_is_what_locate_returns(seed, n, given_height, echo_s):
    rng = np.random.default_rng(seed)
    sensors = rng.uniform(-700.0, 700.0, (n, 3))
    sensors[:, 2] = rng.uniform(3.0, 20.0, n)
    source = (rng.uniform(-300, 300), rng.uniform(-300, 300), 0.0)
    times = T0 + np.linalg.norm(sensors - source, axis=1) / C + rng.normal(0.0, 2e-4, n)
    times[0] += echo_s                  # an echo in the set: mostly not consistent, left to locate()
    up = 0.0 if given_height else None
    ref = locate(sensors, times, temperature_c=TEMPERATURE_C, gate_s=0.002, sensor_ids=list(range(n)),
                 **({"source_up_m": up} if given_height else {}))
    fast = consistent_fix(sensors, times, C, 0.002, up)
    if fast is None:                    # whenever it answers, it answers as locate() does
        assert echo_s > 0 or not ref.used.all() or ref.status != "ok"
        return
    assert ref.used.all() and ref.status == fast.status == "ok"
    assert (fast.message, fast.reasons, fast.mode, fast.timing_sigma_source) == \
        (ref.message, ref.reasons, ref.mode, ref.timing_sigma_source)
    assert np.allclose(fast.position_m, ref.position_m, atol=1e-5)     # both stop at 1 µm steps
    assert fast.t_emit_s == pytest.approx(ref.t_emit_s, abs=1e-9)
    assert np.allclose(fast.residuals_s, ref.residuals_s, atol=1e-9)
    assert np.allclose(fast.covariance_m2, ref.covariance_m2, rtol=1e-5, atol=1e-12)
    for name in ("residual_rms_s", "timing_sigma_s", "gdop", "speed_of_sound_m_s"):
        assert getattr(fast, name) == pytest.approx(getattr(ref, name), rel=1e-6)
    assert fast.ellipse95_m.major_m == pytest.approx(ref.ellipse95_m.major_m, rel=1e-5)


def test_consistent_fix_refuses_what_locate_must_search():
    sensors = np.array([[0.0, 0.0, 5.0], [400.0, 0.0, 5.0], [0.0, 400.0, 5.0], [400.0, 400.0, 5.0]])
    times = T0 + np.linalg.norm(sensors - (100.0, 150.0, 0.0), axis=1) / C
    assert consistent_fix(sensors, times, C, 0.002) is None            # 4 arrivals: locate() searches subsets
    line = np.column_stack([np.arange(6) * 100.0, np.zeros(6), np.full(6, 5.0)])
    times = T0 + np.linalg.norm(line - (250.0, 80.0, 0.0), axis=1) / C
    assert consistent_fix(line, times, C, 0.002) is None                # collinear: a mirror image fits too
    assert locate(line, times, temperature_c=TEMPERATURE_C, gate_s=0.002).status == "degenerate"


def test_fast_fix_gives_the_events_locate_gives():
    # locate_options (here locate()'s own default) send every set through locate().
    rng = np.random.default_rng(31)
    sensors = grid_sensors(144, 3000.0, rng)
    scene = make_scene(sensors, n_impulses=40, duration_s=8.0, rng=rng)
    kw = {"temperature_c": scene.temperature_c, "sensors": sensors, "tolerance_s": 0.002, "min_sensors": 5,
          "max_range_m": 800.0, "source_up_m": 0.0}
    fast = associate(scene.triggers, **kw)
    slow = associate(scene.triggers, locate_options={"estimate_speed": False}, **kw)
    assert len(fast.events) == len(slow.events) >= 30
    for a, b in zip(fast.events, slow.events):
        assert a.triggers == b.triggers and a.status == b.status
        assert np.allclose(a.position_m, b.position_m, atol=1e-5)
        assert a.fix.ellipse95_m.major_m == pytest.approx(b.fix.ellipse95_m.major_m, rel=1e-5)
    assert fast.unexplained == slow.unexplained


@pytest.mark.parametrize("source", ["search.c", "fit.c"])
def test_association_kernels_compile_warning_free(source):
    import shutil
    import subprocess
    from pathlib import Path

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    path = Path(__file__).resolve().parent.parent / "native" / "assoc" / source
    done = subprocess.run([gcc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Wconversion", "-Wdouble-promotion",
                           "-Werror", "-fsyntax-only", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_window_lets_only_pending_deferred_and_masked_triggers_join():
    # One shot on every sensor; the anchor's others get each trigger state in turn.
    assoc = Associator(**options())
    for t in sorted(arrivals((40.0, -30.0, 0.0), T0), key=lambda t: t.time_utc_s):
        assoc.push(t)
    used = assoc._n - assoc._base
    assert used == len(SENSORS)
    assoc._state[:used] = [0, 0, 1, 2, 3, 4, 0, 2, 3, 4, 1, 0]        # pending, in event, unexplained, ...
    for i in (0, 3):
        want = reference_window(assoc, i)
        window, others, counts = assoc._window(i)
        assert np.array_equal(window, want[0]) and np.array_equal(others, want[1])
        assert counts.tolist() == want[2]
        assert set(assoc._state[others].tolist()) <= {0, 3, 4}          # never in an event nor reported
        assert {2, 3, 4} <= set(assoc._state[window].tolist())
