"""`shotline associate` and `shotline process`: JSON lines in, events out; manifests; real audio."""
import json
import math
import subprocess
import sys
from pathlib import Path

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
