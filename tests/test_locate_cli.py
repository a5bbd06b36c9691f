"""``shotline locate``: JSON lines in, one fix per line out; bad lines reported, not fatal."""
import json

import numpy as np

from shotline.cli import main
from shotline.geo import LocalFrame

C_0C = 331.4477  # speed of sound at 0 °C, dry (Cramer)
SENSORS = [[0, 0, 10], [300, 20, 15], [620, -10, 8], [10, 330, 20], [310, 300, 12], [600, 320, 9]]
SOURCE = np.array([250.0, 180.0, 1.5])


def _times(sensors, source, t0=1545180567.0, c=C_0C):
    return (t0 + np.linalg.norm(np.asarray(sensors, float) - source, axis=1) / c).tolist()


def _run(tmp_path, capsys, lines, *flags):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code = main(["locate", *flags, str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_output_per_event(tmp_path, capsys):
    t = _times(SENSORS, SOURCE)
    t_echo = list(t)
    t_echo[2] += 0.03
    lines = [
        json.dumps({"sensors_m": SENSORS, "arrival_times_s": t, "temperature_c": 0, "source_up_m": 1.5}),
        "",
        json.dumps({"sensors_m": SENSORS, "arrival_times_s": t_echo, "temperature_c": 0,
                    "timing_sigma_s": 1e-4, "mode": "2.5d", "source_up_m": 1.5, "id": "shot-2"}),
    ]
    code, out, err = _run(tmp_path, capsys, lines, "--json")
    assert code == 0 and err == ""
    records = [json.loads(x) for x in out.splitlines()]
    assert len(records) == 2
    first, second = records
    for key in ("status", "position_m", "t_emit_s", "ellipse95_m", "used", "residuals_s"):
        assert key in first
    assert first["status"] == "ok"
    np.testing.assert_allclose(first["position_m"], SOURCE, atol=0.05)
    assert abs(first["t_emit_s"] - 1545180567.0) < 1e-5
    assert set(first["ellipse95_m"]) == {"major", "minor", "azimuth_deg"}
    assert second["id"] == "shot-2" and second["used"][2] is False
    assert second["reasons"][2].startswith("late")


def test_llh_input_gives_llh_output(tmp_path, capsys):
    frame = LocalFrame(40.4406, -79.9959, 250.0)
    llh = frame.to_llh(np.array(SENSORS, float)).tolist()
    src_llh = frame.to_llh(SOURCE)
    line = json.dumps({"sensors_llh": llh, "arrival_times_s": _times(SENSORS, SOURCE),
                       "temperature_c": 0, "source_up_m": float(src_llh[2])})
    code, out, _ = _run(tmp_path, capsys, [line], "--json")
    rec = json.loads(out)
    assert code == 0 and rec["status"] == "ok"
    np.testing.assert_allclose(rec["position_llh"][:2], src_llh[:2], atol=1e-6)


def test_bad_lines_get_error_records_and_exit_1(tmp_path, capsys):
    good = json.dumps({"sensors_m": SENSORS, "arrival_times_s": _times(SENSORS, SOURCE), "temperature_c": 0})
    lines = [
        "{not json",
        good,
        json.dumps({"sensors_m": SENSORS}),
        json.dumps({"sensors_m": SENSORS, "sensors_llh": SENSORS, "arrival_times_s": [0] * 6}),
        json.dumps({"sensors_m": SENSORS, "arrival_times_s": [0] * 5}),
        json.dumps({"sensors_m": SENSORS, "arrival_times_s": _times(SENSORS, SOURCE), "mode": "4d"}),
        json.dumps({"sensors_m": SENSORS, "arrival_times_s": ["x"] * 6}),
        json.dumps({"sensors_m": SENSORS, "arrival_times_s": [0] * 6, "colour": "red"}),
        json.dumps([1, 2, 3]),
    ]
    code, out, _ = _run(tmp_path, capsys, lines, "--json")
    records = [json.loads(x) for x in out.splitlines()]
    assert code == 1
    errors = [r for r in records if "error" in r]
    assert [r["line"] for r in errors] == [1, 3, 4, 5, 6, 7, 8, 9]
    assert all(r["error"] for r in errors)
    assert sum("status" in r for r in records) == 1  # the good line still located


def test_text_output_and_null_arrivals(tmp_path, capsys):
    t = _times(SENSORS, SOURCE)
    t[1] = None
    line = json.dumps({"sensors_m": SENSORS, "arrival_times_s": t, "temperature_c": 0})
    code, out, err = _run(tmp_path, capsys, [line, "oops"])
    assert code == 1
    assert out.startswith("line 1: ok E ") and "used 5/6" in out and "2018-12-19T00:49:27" in out
    assert "line 2:" in err


def test_insufficient_event_is_reported_not_failed(tmp_path, capsys):
    line = json.dumps({"sensors_m": SENSORS[:2], "arrival_times_s": [0.0, 0.1]})
    code, out, _ = _run(tmp_path, capsys, [line], "--json")
    rec = json.loads(out)
    assert code == 0 and rec["status"] == "insufficient" and rec["position_m"] == [None, None, None]


def test_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["locate", str(tmp_path / "absent.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_stdin(monkeypatch, capsys):
    import io

    line = json.dumps({"sensors_m": SENSORS, "arrival_times_s": _times(SENSORS, SOURCE),
                       "temperature_c": 0.0})
    monkeypatch.setattr("sys.stdin", io.StringIO(line + "\n"))
    assert main(["locate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
