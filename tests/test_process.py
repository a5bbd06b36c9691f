"""`shotline associate` and `shotline process`: JSON lines in, events out; manifests; real audio."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shotline.acoustics import speed_of_sound_m_s
from shotline.cli import main
from shotline.geo import LocalFrame
from shotline.process import ManifestError, load_manifest, parse_manifest
from shotline.timeutil import format_utc

REPO = Path(__file__).resolve().parents[1]
T0 = 1_545_180_567.0
C = speed_of_sound_m_s(5.0)
SENSORS = {f"S{k}": (400 * math.cos(k * math.pi / 3), 400 * math.sin(k * math.pi / 3), 10.0) for k in range(6)}


def trigger_lines(source=(50.0, -30.0, 0.0), t_emit=T0, llh_frame=None):
    lines = []
    for name, pos in SENSORS.items():
        t = t_emit + math.dist(pos, source) / C
        rec = {"sensor": name, "time_utc": format_utc(t), "snr_db": 25.0, "level_db": 90.0}
        if llh_frame is None:
            rec["position_m"] = list(pos)
        else:
            rec["position_llh"] = llh_frame.to_llh(pos).tolist()
        lines.append(json.dumps(rec))
    return sorted(lines, key=lambda line: json.loads(line)["time_utc"])


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_associate_command_prints_events_then_unexplained(tmp_path, capsys):
    path = tmp_path / "triggers.jsonl"
    echo = json.dumps({"sensor": "S0", "position_m": list(SENSORS["S0"]), "time_utc": format_utc(T0 + 5.0)})
    path.write_text("\n".join(trigger_lines() + [echo]) + "\n")
    code, records, err = run_cli(["associate", "--json", "--temperature-c", "5", "--tolerance-s", "0.005",
                                  "--source-up-m", "0", str(path)], capsys)
    assert code == 0, err
    events, last = records[:-1], records[-1]
    assert len(events) == 1
    event = events[0]
    assert math.hypot(event["position_m"][0] - 50.0, event["position_m"][1] + 30.0) < 0.5
    assert event["time_utc"].startswith(format_utc(T0)[:22])
    assert event["status"] == "ok" and len(event["sensors"]) == 6
    assert {"sensor", "time_utc", "residual_s"} <= set(event["sensors"][0])
    assert set(event["ellipse95_m"]) == {"major", "minor", "azimuth_deg"}
    assert [u["sensor"] for u in last["unexplained"]] == ["S0"]


def test_associate_command_reports_bad_lines_and_exits_1(tmp_path, capsys):
    lines = trigger_lines()
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"sensor": "S9", "time_utc": "2018-12-19T00:49:27Z"}))   # no position
    lines.insert(5, json.dumps({"sensor": "S9", "position_m": [0, 0, 0], "time_utc": "yesterday"}))
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, records, err = run_cli(["associate", "--json", "--temperature-c", "5", "--source-up-m", "0",
                                  str(path)], capsys)
    assert code == 1
    assert "line 3" in err and "line 5" in err and "line 6" in err
    assert len(records) == 2 and len(records[0]["sensors"]) == 6      # the good lines still make the event


def test_associate_command_speaks_wgs84_when_given_wgs84(tmp_path, capsys):
    frame = LocalFrame(40.4406, -79.9959, 300.0)
    path = tmp_path / "llh.jsonl"
    path.write_text("\n".join(trigger_lines(llh_frame=frame)) + "\n")
    code, records, err = run_cli(["associate", "--json", "--temperature-c", "5", str(path)], capsys)
    assert code == 0, err
    lat, lon, _ = records[0]["position_llh"]
    expected = frame.to_llh((50.0, -30.0, 0.0))
    assert lat == pytest.approx(expected[0], abs=2e-5) and lon == pytest.approx(expected[1], abs=2e-5)


def test_associate_command_text_output_and_missing_file(tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(trigger_lines()) + "\n")
    assert main(["associate", "--temperature-c", "5", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("event 1.0 ") and "6 sensors" in out and "unexplained: 0 trigger(s)" in out
    assert main(["associate", str(tmp_path / "absent.jsonl")]) == 2


def test_manifest_errors_name_the_entry(tmp_path):
    audio = tmp_path / "a.flac"
    audio.write_bytes(b"")
    good = {"sensor": "A", "path": "a.flac", "start_utc": "2018-12-19T00:49:26Z", "position_m": [0, 0, 0]}
    assert load_manifest_doc(tmp_path, {"recordings": [good]}).recordings[0].path == audio
    cases = [
        ({"recordings": []}, "non-empty"),
        ({"recordings": [dict(good, path="missing.flac")]}, r"recordings\[0\]: audio file not found"),
        ({"recordings": [dict(good, start_utc="2018-12-19T00:49:26")]}, r"recordings\[0\].*zone"),
        ({"recordings": [good, good]}, "listed twice"),
        ({"recordings": [{k: v for k, v in good.items() if k != "position_m"}]}, "position_m and position_llh"),
        ({"temperature_c": "warm", "recordings": [good]}, "temperature_c"),
    ]
    for doc, message in cases:
        with pytest.raises(ManifestError, match=message):
            parse_manifest(doc, tmp_path)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ManifestError, match="not JSON"):
        load_manifest(tmp_path / "broken.json")


def load_manifest_doc(folder, doc):
    path = folder / "m.json"
    path.write_text(json.dumps(doc))
    return load_manifest(path)


def test_process_command_refuses_a_bad_manifest(tmp_path, capsys):
    (tmp_path / "m.json").write_text(json.dumps({"recordings": [{"sensor": "A"}]}))
    assert main(["process", str(tmp_path / "m.json")]) == 2
    assert "lacks path, start_utc" in capsys.readouterr().err


def test_process_locates_the_three_shots_of_a_real_test(pittsburgh_tests, tmp_path, capsys):
    """FP1 test_001: three .45 rounds, six sensors with audio (ShotSpotter, CC BY 4.0)."""
    test = next(t for t in pittsburgh_tests if t.firing_position == "FP1" and t.name == "test_001")
    manifest = tmp_path / "manifest.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "pittsburgh_manifest.py"), str(test.folder),
                    "-o", str(manifest)], check=True)
    assert len(json.loads(manifest.read_text())["recordings"]) == 6
    code, records, err = run_cli(["process", "--json", str(manifest)], capsys)
    assert code == 0, err
    events = records[:-1]
    assert len(events) == 3
    for event in events:
        x, y = event["position_m"][:2]
        assert math.hypot(x - test.survey_m[0], y - test.survey_m[1]) < 15.0
        assert len(event["sensors"]) >= 5
    assert "unexplained" in records[-1]


# --- the global offline selection (shotline.process_select) ----------------------------------

def _scene(rng, shots_s=(0.0, 0.5, 1.0), source=(60.0, -40.0, 0.0), echoes_s=(0.045, 0.11), jitter_s=0.002):
    """Four sensors, shots from one place; each direct arrival followed by weaker echoes."""
    from shotline.process_select import weights

    sensors = np.array([[-300.0, -250.0, 0.0], [320.0, -200.0, 0.0], [250.0, 300.0, 0.0], [-280.0, 260.0, 0.0]])
    times, which, levels, sta_lta, direct = [], [], [], [], []
    for t_emit in shots_s:
        for s, p in enumerate(sensors):
            arrival = t_emit + np.linalg.norm(p - source) / C + rng.normal(0, jitter_s)
            times.append(arrival)
            which.append(s)
            levels.append(-10.0)
            sta_lta.append(40.0)
            direct.append(True)
            for k, delay in enumerate(echoes_s):
                times.append(arrival + delay)
                which.append(s)
                levels.append(-18.0 - 4 * k)
                sta_lta.append(3.0)
                direct.append(False)
    times, which = np.array(times), np.array(which)
    w = weights(times, which, np.array(levels), np.array(sta_lta))
    return sensors, times, which, w, np.array(direct)


def test_direct_sound_evidence_ranks_onsets_above_their_echoes():
    sensors, times, which, w, direct = _scene(np.random.default_rng(1))
    assert w[direct].min() > 2 * w[~direct].max()


def test_direct_sound_evidence_without_levels_is_neutral_not_nan():
    from shotline.process_select import weights

    times = np.array([0.0, 0.05, 0.1, 0.0])
    which = np.array([0, 0, 0, 1])
    w = weights(times, which, np.array([np.nan, -10.0, np.nan, np.nan]), np.array([40.0, 3.0, np.nan, 40.0]))
    assert np.all(np.isfinite(w)) and w[0] > w[1] and w[3] > w[2]


def test_direct_sound_evidence_matches_a_direct_computation_on_random_triggers():
    """The windowed maxima (searchsorted) against the definition: every earlier trigger within ECHO_WINDOW_S."""
    from shotline.process_select import DIRECT_COEF, DIRECT_INTERCEPT, ECHO_WINDOW_S, weights

    rng = np.random.default_rng(11)
    n = 400
    times = T0 + np.round(rng.uniform(0, 30, n), 2)                 # rounded: ties and shared windows
    which = rng.integers(0, 4, n)
    levels = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(-60, 0, n))
    sta_lta = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0.5, 50, n))
    expected = np.empty(n)
    for i in range(n):
        same = which == which[i]
        known = np.where(same & np.isfinite(levels), levels, -np.inf)
        earlier = same & ((times < times[i]) | ((times == times[i]) & (np.arange(n) < i)))
        recent = earlier & (times >= times[i] - ECHO_WINDOW_S)
        above = levels[i] - known[recent].max() if recent.any() else 20.0
        below = levels[i] - known.max()
        x = (math.log(max(1.0 if np.isnan(sta_lta[i]) else sta_lta[i], 1.0)),
             np.clip(0.0 if np.isnan(above) else above, -20, 20), np.clip(0.0 if np.isnan(below) else below, -30, 0))
        expected[i] = 1 / (1 + math.exp(-(DIRECT_INTERCEPT + sum(c * v for c, v in zip(DIRECT_COEF, x)))))
    np.testing.assert_allclose(weights(times, which, levels, sta_lta), expected, rtol=1e-12)


def test_select_takes_the_best_disjoint_sets_not_the_best_single_one():
    from shotline.process_select import select

    sets = [(0, 1, 2, 3), (0, 1, 4, 5), (2, 3, 6, 7), (8, 9, 10, 11)]
    assert sorted(select([3.0, 2.0, 2.0, -1.0], sets)) == [1, 2]      # 4 > 3; a negative set never
    assert select([3.0, 1.0, 1.0, 0.5], sets) == [0, 3]


def _failed_milp(*args, **kwargs):
    from types import SimpleNamespace

    return SimpleNamespace(x=None, message="solver gave up")


def test_select_raises_a_selection_error_when_the_solver_fails(monkeypatch):
    from shotline import process_select

    monkeypatch.setattr(process_select, "milp", _failed_milp)
    with pytest.raises(process_select.SelectionError, match="solver gave up"):
        process_select.select([3.0, 2.0], [(0, 1, 2, 3), (0, 4, 5, 6)])


def test_process_command_reports_a_failed_selection_in_one_line_and_exits_1(monkeypatch, tmp_path, capsys):
    from shotline import process, process_select
    from shotline.associate import Trigger

    sensors, times, which, w, direct = _scene(np.random.default_rng(7))
    names = ["A", "B", "C", "D"]
    triggers = [Trigger(names[s], sensors[s], T0 + t, level_db=-10.0 if d else -20.0,
                        features={"sta_lta": 40.0 if d else 3.0}) for t, s, d in zip(times, which, direct)]
    recordings = []
    for name, p in zip(names, sensors):
        (tmp_path / f"{name}.flac").write_bytes(b"")
        recordings.append({"sensor": name, "path": f"{name}.flac", "start_utc": format_utc(T0),
                           "position_m": p.tolist()})
    (tmp_path / "m.json").write_text(json.dumps({"temperature_c": 5.0, "recordings": recordings}))
    monkeypatch.setattr(process, "detect_triggers", lambda manifest, **kw: sorted(triggers, key=lambda t: t.time_utc_s))
    monkeypatch.setattr(process_select, "milp", _failed_milp)
    code, records, err = run_cli(["process", str(tmp_path / "m.json")], capsys)
    assert code == 1 and records == []
    assert err == "shotline: event selection failed: solver gave up\n"


def test_reselection_names_a_trigger_sensor_missing_from_the_network():
    from shotline.associate import Trigger
    from shotline.process import reselect_events

    triggers = [Trigger("A", (0.0, 0.0, 0.0), T0), Trigger("E", (50.0, 0.0, 0.0), T0 + 0.1)]
    with pytest.raises(ValueError, match="sensor 'E'"):
        reselect_events(triggers, (), {"sensors": {"A": (0.0, 0.0, 0.0), "B": (100.0, 0.0, 0.0)}})


def test_offline_association_finds_each_shot_and_leaves_the_echoes():
    from shotline.process_select import associate_offline

    rng = np.random.default_rng(7)
    sensors, times, which, w, direct = _scene(rng)
    found = associate_offline(times + T0, which, sensors, w, c_m_s=C, temperature_c=5.0, tolerance_s=0.03,
                              min_sensors=4, source_up_m=0.0, max_range_m=1500.0)
    assert len(found) == 3
    for (fix, members), t_emit in zip(found, (0.0, 0.5, 1.0)):
        assert np.hypot(fix.position_m[0] - 60.0, fix.position_m[1] + 40.0) < 5.0
        assert abs(fix.t_emit_s - (T0 + t_emit)) < 0.01
        assert len(members) == 4 and direct[list(members)].all()


def test_offline_association_warns_when_the_selection_does_not_settle(monkeypatch, caplog):
    from shotline import process_select

    sensors, times, which, w, direct = _scene(np.random.default_rng(7))
    kw = dict(c_m_s=C, temperature_c=5.0, tolerance_s=0.03, min_sensors=4, source_up_m=0.0, max_range_m=1500.0)
    with caplog.at_level("WARNING", logger="shotline.process_select"):
        assert len(process_select.associate_offline(times + T0, which, sensors, w, **kw)) == 3
    assert not caplog.records
    monkeypatch.setattr(process_select, "MAX_ROUNDS", 1)       # the first selection, located, not re-checked
    with caplog.at_level("WARNING", logger="shotline.process_select"):
        process_select.associate_offline(times + T0, which, sensors, w, **kw)
    assert "did not settle in 1 rounds" in caplog.text


def test_offline_association_stops_when_the_burst_support_cycles(monkeypatch, caplog):
    """Support that flips back and forth ends the rounds at once, with the better selection."""
    from shotline import process_select

    calls = []

    def flipping(where, sets, chosen, strong, bonus):
        calls.append(1)
        return np.full(len(sets), 0.5 * (len(calls) % 2))

    monkeypatch.setattr(process_select, "burst_support", flipping)
    sensors, times, which, w, direct = _scene(np.random.default_rng(7))
    kw = dict(c_m_s=C, temperature_c=5.0, tolerance_s=0.03, min_sensors=4, source_up_m=0.0, max_range_m=1500.0)
    with caplog.at_level("WARNING", logger="shotline.process_select"):
        found = process_select.associate_offline(times + T0, which, sensors, w, **kw)
    assert not caplog.records and len(calls) == 2
    assert len(found) == 3 and all(direct[list(members)].all() for _, members in found)


def test_burst_support_goes_to_disjoint_events_near_a_strong_one_outside_its_echoes():
    from shotline.process_select import BURST_BONUS, BURST_RADIUS_M, ECHO_WINDOW_S, burst_support

    where = np.array([[0.0, 0.0, 0.0, 100.0],                       # 0: the strong chosen event
                      [10.0, 0.0, 0.0, 100.5],                      # 1: a later shot there
                      [10.0, 0.0, 0.0, 100.0 + ECHO_WINDOW_S / 2],   # 2: in its reverberation
                      [BURST_RADIUS_M + 5.0, 0.0, 0.0, 100.5],      # 3: elsewhere
                      [5.0, 0.0, 0.0, 100.8]])                      # 4: shares a trigger with it
    sets = [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15), (3, 16, 17, 18)]
    assert burst_support(where, sets, [0], [0], BURST_BONUS).tolist() == [0, BURST_BONUS, 0, 0, 0]
    assert burst_support(where, sets, [0], [], BURST_BONUS).tolist() == [0, 0, 0, 0, 0]   # a weak one: none
    # Two chosen within each other's echo window: neither gains (a split shot or a fit of its echoes).
    assert burst_support(where, sets, [0, 2], [0], BURST_BONUS).tolist() == [0, BURST_BONUS, 0, 0, 0]


def test_offline_association_finds_weak_later_shots_of_a_burst():
    """Later shots whose arrivals look no more direct than echoes: found beside a strong first shot."""
    from shotline.process_select import associate_offline

    sensors, times, which, w, direct = _scene(np.random.default_rng(3))
    later = direct & (np.arange(len(times)) >= len(times) // 3)         # the second and third shots
    w = np.where(later, 0.2, w)
    kw = dict(c_m_s=C, temperature_c=5.0, tolerance_s=0.03, min_sensors=4, source_up_m=0.0, max_range_m=1500.0)
    assert len(associate_offline(times + T0, which, sensors, w, burst_bonus=0.0, **kw)) == 1
    found = associate_offline(times + T0, which, sensors, w, **kw)
    assert [round(fix.t_emit_s - T0, 2) for fix, _ in found] == [0.0, 0.5, 1.0]
    for fix, members in found:
        assert np.hypot(fix.position_m[0] - 60.0, fix.position_m[1] + 40.0) < 5.0
        assert len(members) == 4 and direct[list(members)].all()


def test_process_recovers_a_shot_the_streaming_associator_missed(pittsburgh_tests, tmp_path, capsys):
    """FP2 test_019 (ShotSpotter, CC BY 4.0): six recordings, the first shot heard directly by four."""
    from shotline.process import Manifest, Recording, process

    test = next(t for t in pittsburgh_tests if t.firing_position == "FP2" and t.name == "test_019")
    manifest = Manifest(test.temperature_c, tuple(Recording(r.sensor, r.path, r.start_utc_s, r.position_m)
                                                  for r in test.recordings))

    def near(result):
        return sum(math.hypot(e.position_m[0] - test.survey_m[0], e.position_m[1] - test.survey_m[1]) < 15.0
                   for e in result.events)

    before = process(manifest, reselect=False, max_range_m=1500.0)
    after = process(manifest, max_range_m=1500.0)
    assert after.stats["recovered"] >= 1
    assert all(e.n_sensors >= 5 for e in process(manifest, min_sensors=5, max_range_m=1500.0).events)
    assert near(before) < near(after) == len(after.events) == test.rounds     # each shot, no chance event
    recovered = {id(t) for e in after.events for t in e.triggers}
    assert not recovered & {id(t) for t in after.unexplained}
    # The command line: the same events, and --streaming-only gives the streaming associator's.
    path = tmp_path / "m.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "pittsburgh_manifest.py"), str(test.folder), "-o", str(path)],
                   check=True)
    for flags, result in (([], after), (["--streaming-only"], before)):
        code, records, err = run_cli(["process", "--json", "--max-range-m", "1500", *flags, str(path)], capsys)
        assert code == 0, err
        assert [r["time_utc"] for r in records[:-1]] == [format_utc(e.t_emit_s) for e in result.events]
        assert len(records[-1]["unexplained"]) == len(result.unexplained)


def test_offline_association_in_a_larger_network_takes_full_sets():
    """Above MAX_SUBSET_SENSORS sensors each source keeps its full set (no subsets)."""
    from shotline.process_select import MAX_SUBSET_SENSORS, associate_offline

    n = MAX_SUBSET_SENSORS + 2
    angles = np.arange(n) * 2 * np.pi / n
    sensors = np.stack([400 * np.cos(angles), 400 * np.sin(angles), np.zeros(n)], axis=1)
    source = np.array([30.0, 70.0, 0.0])
    direct = T0 + np.linalg.norm(sensors - source, axis=1) / C
    times = np.concatenate([direct, direct + 0.06])          # an echo on every sensor
    which = np.concatenate([np.arange(n), np.arange(n)])
    w = np.concatenate([np.full(n, 0.9), np.full(n, 0.05)])
    found = associate_offline(times, which, sensors, w, c_m_s=C, temperature_c=5.0, tolerance_s=0.03,
                              min_sensors=4, source_up_m=0.0, max_range_m=1500.0)
    assert len(found) == 1
    fix, members = found[0]
    assert sorted(members) == list(range(n)) and np.linalg.norm(fix.position_m[:2] - source[:2]) < 0.5


def test_offline_association_over_a_long_noisy_record():
    """Ten minutes of street triggers (30 a minute per sensor) around five shots: the work stays local."""
    from shotline.process_select import associate_offline, weights

    rng = np.random.default_rng(3)
    shots_s = (50.0, 170.0, 171.0, 330.0, 555.0)
    sensors, times, which, _, direct = _scene(rng, shots_s=shots_s)
    n_noise = 4 * 300
    times = np.concatenate([times, rng.uniform(0.0, 600.0, n_noise)])
    which = np.concatenate([which, rng.integers(0, 4, n_noise)])
    levels = np.concatenate([np.where(direct, -10.0, -20.0), rng.uniform(-40.0, -25.0, n_noise)])
    sta_lta = np.concatenate([np.where(direct, 40.0, 3.0), rng.uniform(3.0, 12.0, n_noise)])
    found = associate_offline(times + T0, which, sensors, weights(times, which, levels, sta_lta), c_m_s=C,
                              temperature_c=5.0, tolerance_s=0.03, min_sensors=4, source_up_m=0.0,
                              max_range_m=1500.0)
    located = [fix for fix, _ in found if np.hypot(fix.position_m[0] - 60.0, fix.position_m[1] + 40.0) < 5.0]
    assert sorted(round(fix.t_emit_s - T0, 1) for fix in located) == list(shots_s)
    assert len(found) - len(located) <= 2          # few chance fits among 1,200 street triggers
