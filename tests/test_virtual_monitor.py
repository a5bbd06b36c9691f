"""The bench monitor, against a virtual sensor running the real firmware."""
import io
import json

import pytest
from rich.console import Console

from shotline_fw import wire
from shotline.cli import main
from shotline.monitor import MonitorState, render
from shotline.virtual import VirtualSensor, impulse_audio

pytestmark = pytest.mark.timeout(60)


def screen(state):
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render(state))
    return console.file.getvalue()


def test_state_deduplicates_resent_triggers_and_shows_health():
    state = MonitorState(max_triggers=3)
    hello = {"sensor_id": "n7", "fw": "0.1.0", "mode": "run"}
    state.feed(wire.decode_line(wire.encode_json(wire.HELLO, 1, hello)))
    trig = {"sensor_id": "n7", "utc_s": 1545180567, "utc_us": 467123, "time_quality": "pps",
            "snr_db": 31.5, "peak_dbfs": -8.25, "rise_time_s": 0.0008}
    new = [state.feed(wire.decode_line(wire.encode_json(wire.TRIGGER, 2 + i, dict(trig, seq=s))))
           for i, s in enumerate([1, 2, 1, 3, 4, 5])]
    assert [r and r["seq"] for r in new] == [1, 2, None, 3, 4, 5]
    assert list(state.triggers) == [3, 4, 5] and state.trigger_count == 5
    state.feed(wire.decode_line(wire.encode_json(wire.HEARTBEAT, 9, {
        "uptime_s": 12, "mode": "safe", "error": "lat_deg: required", "noise_dbfs": -72.5,
        "time_quality": "holdover", "outbox_pending": 4, "storage_ok": True})))
    state.feed(wire.decode_line(wire.encode_json(wire.LOG, 10, {"level": "error", "msg": "sd: EIO"})))
    text = screen(state)
    assert "n7" in text and "safe: lat_deg: required" in text and "holdover" in text
    assert "-72.5 dBFS" in text and "-8.2 dBFS" in text and "2018-12-19T00:49:27.467123Z" in text
    assert "4 pending" in text and "error: sd: EIO" in text and "5 seen" in text


def test_monitor_command_follows_a_virtual_sensor(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHOTLINE_VIRTUAL_DIR", str(tmp_path / "links"))
    with VirtualSensor("mon1", tmp_path / "flash", audio=impulse_audio(period_s=0.5), speed=2.0) as vs:
        assert main(["monitor", "id:mon1", "--json", "--duration-s", "2.5",
                     "--status-every-s", "0.5"]) == 0
        lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
        pending = len(vs.board.app.outbox)
        assert main(["monitor", "id:mon1", "--duration-s", "1"]) == 0
        assert "mon1" in capsys.readouterr().out
    triggers = [l["trigger"] for l in lines if "trigger" in l]
    statuses = [l["status"] for l in lines if "status" in l]
    assert len(triggers) >= 3 and len({t["seq"] for t in triggers}) == len(triggers)
    assert len(statuses) >= 3 and statuses[-1]["sensor_id"] == "mon1"
    assert pending >= len(triggers) - 1  # watching does not acknowledge
