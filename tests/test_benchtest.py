"""The bench test against virtual sensors running the real firmware."""
import itertools
import json

import numpy as np
import pytest

from shotline.cli import main
from shotline.virtual import VirtualSensor, impulse_audio

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def links(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOTLINE_VIRTUAL_DIR", str(tmp_path / "links"))
    return tmp_path / "links"


def test_healthy_board_passes_every_check(tmp_path, links, capsys):
    # noise, and one "clap" 3 s in: after the microphone step, during the detector step
    clap = np.concatenate(list(itertools.islice(impulse_audio(period_s=100.0, first_s=3.0), 8)))
    vs = VirtualSensor("good", tmp_path / "flash", audio=clap, crystal_ppm=-12.0)
    with vs:
        rc = main(["bench", "id:good", "--report", str(tmp_path / "r.txt"), "--json",
                   "--impulse-timeout-s", "10", "--gps-timeout-s", "10",
                   "--rate-tolerance-pct", "5"])  # a virtual board on a loaded machine may lag
    out = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in out["checks"]}
    assert rc == 0 and out["passed"], out
    assert list(checks) == ["firmware", "storage", "microphone", "noise floor", "detector",
                            "gps/pps", "clock drift"]
    assert checks["noise floor"]["value"].startswith("-6")  # the generator's -60 dBFS noise
    ppm = float(checks["clock drift"]["value"].split(" ppm")[0])
    assert ppm == pytest.approx(-12.0, abs=2.0)  # the simulated crystal error, from a young fit
    text = (tmp_path / "r.txt").read_text()
    assert "RESULT: PASS" in text and text.count("PASS  ") == 7
    # the bench test acknowledged its clap: it will not reach a collector as an event
    assert vs.board.app.outbox.next_seq == 2 and len(vs.board.app.outbox) == 0


def test_dead_microphone_and_no_pps_fail_with_exit_code_1(tmp_path, links, capsys):
    vs = VirtualSensor("bad", tmp_path / "flash", audio=np.zeros(16, dtype=np.int16))
    vs.board.pps_enabled = False
    with vs:
        rc = main(["bench", "id:bad", "--report", str(tmp_path / "r.txt"),
                   "--impulse-timeout-s", "1.5", "--gps-timeout-s", "1.5"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "FAIL  noise floor    no signal" in text
    assert "FAIL  detector       no trigger" in text
    assert "FAIL  gps/pps" in text and "PASS  storage" in text
    assert (tmp_path / "r.txt").read_text().rstrip().endswith("RESULT: FAIL")


def test_no_board_is_a_usage_error(tmp_path, links, capsys):
    assert main(["bench", "id:nobody", "--report", "-"]) == 2
    assert "no board with serial number nobody" in capsys.readouterr().err
