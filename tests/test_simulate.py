"""The acoustic scene simulator: physics of travel time, level and the models."""
import json
import math

import numpy as np
import pytest
import soundfile

from shotline.acoustics import speed_of_sound_m_s
from shotline.cli import main
from shotline.geo import LocalFrame
from shotline.simulate import KINDS, ScenarioError, load_scenario, parse_scenario, render, \
    write_rendering
from shotline.simulate.render import full_scale_pa
from shotline.simulate.sources import LEAD_SAMPLES, pa_to_db
from shotline.timeutil import parse_utc

FRAME = LocalFrame(40.45, -79.98, 0.0)
START = "2026-07-04T22:00:00Z"


def _llh(e, n):
    lat, lon, _ = FRAME.to_llh([e, n, 0.0])
    return float(lat), float(lon)


def _doc(sensors_en, sources, quiet=True, **extra):
    """A scenario document with sensors at ENU (e, n) points, all heights 0 when quiet."""
    sensors = []
    for i, (e, n) in enumerate(sensors_en):
        lat, lon = _llh(e, n)
        sensors.append({"id": f"S{i}", "lat_deg": lat, "lon_deg": lon,
                        "height_m": 0.0 if quiet else 6.0, "gain_db": 0.0, "clock_error_s": 0.0})
    srcs = []
    for k, (kind, t_s, (e, n), params) in enumerate(sources):
        lat, lon = _llh(e, n)
        srcs.append({"id": f"E{k}", "kind": kind, "t_s": t_s, "lat_deg": lat, "lon_deg": lon,
                     "height_m": 0.0 if quiet else 1.5, **params})
    doc = {"name": "t", "start_utc": START, "duration_s": 4.0, "seed": 3,
           "origin": {"lat_deg": 40.45, "lon_deg": -79.98, "alt_m": 0.0},
           "weather": {"temperature_c": 20.0, "relative_humidity_pct": 50.0},
           "sensors": sensors, "sources": srcs}
    if quiet:
        doc["background"] = {"traffic_db_spl": 0, "self_noise_db_spl": 0, "wind_noise": False}
        doc["propagation"] = {"echoes": 0, "excess_attenuation_db": 0, "ground_reflection": 0}
    doc.update(extra)
    return doc


def _peak_index(audio):
    return int(np.argmax(np.abs(audio.astype(float))))


def test_travel_time_is_distance_over_the_speed_of_sound():
    distances = (80.0, 333.0, 1200.0)
    doc = _doc([(d, 0.0) for d in distances],
               [("handgun", 1.0, (0.0, 0.0), {"level_db_spl": 160})], duration_s=6.0)
    r = render(parse_scenario(doc))
    c = speed_of_sound_m_s(20.0, 50.0)
    assert r.speed_of_sound_m_s == pytest.approx(c)
    t_src = parse_utc(START) + 1.0
    arrivals = r.truth["sources"][0]["impulses"][0]["arrivals"]
    for d, track, a in zip(distances, r.sensors, arrivals):
        expected = t_src + d / c
        assert parse_utc(a["arrival_utc"]) == pytest.approx(expected, abs=1e-6)
        assert a["distance_m"] == pytest.approx(d, abs=0.01)
        # The audio's peak (a Friedlander peaks at its onset) is where the truth says.
        peak_s = _peak_index(track.audio) / 16000
        assert peak_s == pytest.approx(expected - parse_utc(START), abs=1.5 / 16000)


def test_level_falls_6_db_per_doubling_plus_absorption():
    distances = (50.0, 100.0, 200.0, 400.0, 800.0)
    doc = _doc([(0.0, d) for d in distances],
               [("handgun", 0.5, (0.0, 0.0), {"level_db_spl": 140})], duration_s=3.5)
    r = render(parse_scenario(doc))
    p_fs = full_scale_pa(120.0)
    peaks_db = [pa_to_db(np.max(np.abs(t.audio.astype(float))) / 32767 * p_fs) for t in r.sensors]
    drops = np.diff(peaks_db) * -1
    assert drops[0] == pytest.approx(6.02, abs=0.4)      # spherical spreading
    assert np.all(drops > 5.5)          # (peak sampled at a sub-sample offset: ±0.3 dB)
    assert drops[-1] > drops[0] + 1.0   # absorption (dB per metre) grows with range
    truth = [a["peak_db_spl"] for a in r.truth["sources"][0]["impulses"][0]["arrivals"]]
    np.testing.assert_allclose(truth, peaks_db, atol=0.2)


def test_wind_speeds_sound_downwind():
    # Wind from the west (270 deg) blows east: the east sensor hears it first.
    doc = _doc([(500.0, 0.0), (-500.0, 0.0)], [("rifle", 0.5, (0.0, 0.0), {})])
    doc["weather"].update(wind_speed_m_s=8.0, wind_from_deg=270.0)
    r = render(parse_scenario(doc))
    c = r.speed_of_sound_m_s
    east, west = (parse_utc(a["arrival_utc"])
                  for a in r.truth["sources"][0]["impulses"][0]["arrivals"])
    assert west - east == pytest.approx(500 / (c - 8) - 500 / (c + 8), abs=1e-6)
    assert _peak_index(r.sensors[0].audio) < _peak_index(r.sensors[1].audio) - 100


def test_close_rifle_clips_and_distant_door_slam_does_not():
    doc = _doc([(5.0, 0.0), (300.0, 0.0)],
               [("rifle", 0.5, (0.0, 0.0), {}), ("door_slam", 2.0, (0.0, 0.0), {})])
    r = render(parse_scenario(doc))
    rifle, door = r.truth["sources"]
    assert rifle["impulses"][0]["arrivals"][0]["clipped"]
    assert r.sensors[0].audio.max() == 32767
    assert not door["impulses"][0]["arrivals"][1]["clipped"]
    assert door["impulses"][0]["arrivals"][1]["peak_dbfs"] < -40


def test_clock_error_and_gain_are_applied_and_reported(tmp_path):
    doc = _doc([(100.0, 0.0), (100.0, 0.0)], [("handgun", 0.5, (0.0, 0.0), {"level_db_spl": 150})])
    doc["sensors"][1].update(gain_db=6.0, clock_error_s=0.0015)
    r = render(parse_scenario(doc))
    a, b = r.sensors
    assert b.reported_start_utc_s - b.start_utc_s == pytest.approx(0.0015, abs=1e-6)
    ratio = np.max(np.abs(b.audio.astype(float))) / np.max(np.abs(a.audio.astype(float)))
    assert 20 * math.log10(ratio) == pytest.approx(6.0, abs=0.1)
    manifest = json.loads(write_rendering(r, tmp_path).read_text())
    rec = manifest["recordings"][1]
    assert parse_utc(rec["start_utc"]) - parse_utc(START) == pytest.approx(0.0015, abs=1e-6)
    audio, fs = soundfile.read(tmp_path / rec["path"], dtype="int16")
    assert fs == 16000 and np.array_equal(audio, b.audio)
    assert rec["position_llh"][:2] == pytest.approx(_llh(100.0, 0.0), abs=1e-7)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["sensors"][1]["clock_error_s"] == 0.0015


def test_absorption_takes_the_high_frequencies_first():
    doc = _doc([(50.0, 0.0), (1500.0, 0.0)], [("handgun", 0.5, (0.0, 0.0), {"level_db_spl": 170})],
               duration_s=5.0)
    r = render(parse_scenario(doc))

    def centroid_hz(track):
        i = _peak_index(track.audio)
        seg = track.audio[i - 64:i + 448].astype(float)
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
        f = np.fft.rfftfreq(len(seg), 1 / 16000)
        return float((f * spec).sum() / spec.sum())

    assert centroid_hz(r.sensors[1]) < centroid_hz(r.sensors[0]) - 200


def test_echoes_and_ground_reflection_arrive_after_the_direct_sound():
    doc = _doc([(300.0, 0.0)], [("handgun", 0.5, (0.0, 0.0), {"level_db_spl": 160})], quiet=False)
    doc["background"] = {"traffic_db_spl": 0, "self_noise_db_spl": 0, "wind_noise": False}
    doc["propagation"] = {"echoes": 3, "excess_attenuation_db": 0, "ground_reflection": 0.7}
    r = render(parse_scenario(doc))
    audio = np.abs(r.sensors[0].audio.astype(float))
    first = parse_utc(r.truth["sources"][0]["impulses"][0]["arrivals"][0]["arrival_utc"])
    i_direct = int(round((first - parse_utc(START)) * 16000))
    assert audio[:i_direct - 8].max() < 0.01 * audio.max()      # nothing before the direct sound
    # The ground reflection (0.06 m longer from 1.5 m to 6 m up) merges with the direct pulse.
    assert _peak_index(r.sensors[0].audio) == pytest.approx(i_direct, abs=4)
    late = audio[i_direct + 16:i_direct + 16000]
    assert late.max() > 0.05 * audio.max()                      # echoes are there, weaker
    assert late.max() < audio.max()


def test_source_models_have_their_published_levels_and_rhythms():
    rng = np.random.default_rng(1)
    for kind, (low, high) in {"handgun": (150, 160), "rifle": (160, 170),
                              "door_slam": (100, 110), "backfire": (130, 140),
                              "jackhammer": (117, 123)}.items():
        imps = KINDS[kind].impulses({}, 16000, rng)
        assert all(low - 2 <= i.level_db_spl <= high + 2 for i in imps), kind
        assert all(i.waveform_pa.dtype == np.float64 for i in imps)
    jack = KINDS["jackhammer"].impulses({"duration_s": 3.0}, 16000, rng)
    gaps = np.diff([i.t_s for i in jack])
    assert 15 <= 1 / np.median(gaps) <= 25
    burst = KINDS["rifle"].impulses({"shots": 5, "interval_s": 0.1}, 16000, rng)
    assert len(burst) == 5 and np.allclose(np.diff([i.t_s for i in burst]), 0.1, rtol=0.11)
    mortar = KINDS["firework_mortar"].impulses({"burst_height_m": 120, "delay_s": 2.0}, 16000, rng)
    assert mortar[1].offset_enu_m[2] == 120 and mortar[1].t_s == 2.0
    assert len(KINDS["firecracker"].impulses({"pops": 25}, 16000, rng)) == 25

    def low_fraction(wave):
        spec = np.abs(np.fft.rfft(wave, 4096)) ** 2
        f = np.fft.rfftfreq(4096, 1 / 16000)
        return spec[f < 300].sum() / spec.sum()

    door = KINDS["door_slam"].impulses({}, 16000, rng)[0].waveform_pa
    shot = KINDS["handgun"].impulses({}, 16000, rng)[0].waveform_pa
    assert low_fraction(door) > 0.8 > 0.2 > low_fraction(shot)
    # Every waveform starts at its source instant after the lead: silence before.
    assert np.max(np.abs(shot[:LEAD_SAMPLES - 8])) < 0.01 * np.max(np.abs(shot))


def test_same_seed_same_audio_other_seed_other_noise():
    doc = _doc([(200.0, 0.0)], [("handgun", 0.5, (0.0, 0.0), {})], quiet=False, duration_s=1.5)
    a = render(parse_scenario(doc)).sensors[0].audio
    b = render(parse_scenario(doc)).sensors[0].audio
    c = render(parse_scenario({**doc, "seed": 4})).sensors[0].audio
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["sources"][0].update(kind="cannon"), "kind 'cannon'"),
    (lambda d: d["sources"][0].update(t_s=99.0), "t_s"),
    (lambda d: d["sources"][0].update(shots=0), "shots"),
    (lambda d: d["sources"][0].update(calibre="9mm"), "calibre"),
    (lambda d: d.update(sensors=[]), "sensors"),
    (lambda d: d["sensors"][0].update(lat_deg="north"), "lat_deg"),
    (lambda d: d.update(start_utc="2026-07-04 22:00"), "start_utc"),
    (lambda d: d["weather"].update(temperature="hot"), "temperature"),
])
def test_bad_scenarios_are_refused_naming_the_field(change, message):
    doc = _doc([(0.0, 0.0)], [("handgun", 0.5, (10.0, 0.0), {})])
    change(doc)
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(doc)


def test_cli_renders_the_test_scenario(tmp_path, capsys):
    assert main(["simulate", "scenarios/test-block.json", "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sensors"] == 6 and summary["gunshots"] == 2
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [r["sensor"] for r in manifest["recordings"]] == [f"T{i}" for i in range(1, 7)]
    for rec in manifest["recordings"]:
        info = soundfile.info(tmp_path / rec["path"])
        assert info.samplerate == 16000 and info.frames == 12 * 16000
        assert info.subtype == "PCM_16"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["simulate", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert load_scenario("scenarios/demo-night.json").name == "demo-night"
