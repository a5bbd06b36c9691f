"""End to end over pseudo-terminals: virtual sensors running the REAL firmware
(shotline_fw.app on shotline.fakehw) and the collector as a separate process
that is killed with SIGKILL mid-stream, cables pulled, boards rebooted."""
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import serial

from shotline_fw import wire
from shotline.store import Store, StoreError
from shotline.virtual import VirtualSensor, impulse_audio

pytestmark = pytest.mark.timeout(120)

PERIOD_S = 0.5
AUDIO_S = 16


def wait_until(cond, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def finite_audio(seed, seconds=AUDIO_S):
    """``seconds`` of noise with an impulse every PERIOD_S, then silence."""
    return np.concatenate(list(itertools.islice(impulse_audio(period_s=PERIOD_S, seed=seed), seconds)))


@pytest.fixture
def sensors(tmp_path):
    made = []

    def make(n, speed=8.0):
        for i in range(n):
            made.append(VirtualSensor(f"vs{i:02d}", tmp_path / "flash" / f"vs{i:02d}",
                                      audio=finite_audio(i), folder=tmp_path / "links",
                                      speed=speed, seed=i).start())
        return made

    yield make
    for vs in made:
        vs.stop()


def collector(store, ports, *extra):
    return subprocess.Popen([sys.executable, "-m", "shotline", "collect", "--store", str(store),
                             "--no-associate", *extra, *ports],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def n_stored(path):
    try:
        with Store(path, readonly=True) as s:
            return s.counts()["triggers"]
    except StoreError:  # not created or not migrated yet
        return 0


def drained(vss):
    return all(vs.board.audio_exhausted and len(vs.board.app.outbox) == 0 for vs in vss)


def recorded(vs):
    return list(range(1, vs.board.app.outbox.next_seq))


def test_virtual_sensor_answers_like_a_board(tmp_path, sensors):
    (vs,) = sensors(1, speed=4.0)
    with serial.Serial(vs.path, timeout=0.1) as port:
        dec = wire.StreamDecoder()
        port.write(wire.encode_json(wire.HELLO, 1, {"host": "test"}))
        port.write(wire.encode_json(wire.STATUS_GET, 2, {}))
        frames = []
        assert wait_until(lambda: frames.extend(dec.feed(port.read(4096))) or
                          any(f.type == wire.RESPONSE for f in frames), 10)
    hello = next(f.json() for f in frames if f.type == wire.HELLO)
    assert hello["sensor_id"] == "vs00" and hello["mode"] == "run" and hello["proto"] == 1
    status = next(f.json() for f in frames if f.type == wire.RESPONSE and f.ref == 2)
    assert status["sensor_id"] == "vs00" and "noise_dbfs" in status


def test_sigkill_mid_stream_loses_and_duplicates_nothing(tmp_path, sensors):
    vss = sensors(3)
    store = tmp_path / "c.sqlite"
    first = collector(store, [vs.path for vs in vss])
    try:
        assert wait_until(lambda: n_stored(store) >= 10)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    killed_at = n_stored(store)
    time.sleep(0.5)  # the boards keep recording, nobody acknowledges
    second = collector(store, [vs.path for vs in vss], "--status-every-s", "0.5")
    try:
        assert wait_until(lambda: drained(vss), 60)
    finally:
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=20)
    assert second.returncode == 0, err
    s = Store(store, readonly=True)
    for vs in vss:
        seqs = [r["seq"] for r in s.triggers(sensor_id=vs.name)]
        assert sorted(seqs) == recorded(vs)  # every recorded trigger, once
        assert len(seqs) >= AUDIO_S / PERIOD_S - 2  # and the boards heard every impulse
    assert 10 <= killed_at < s.counts()["triggers"]
    logs = [json.loads(line) for line in err.splitlines()]
    assert {"collector started", "board connected", "collector stopped"} <= {r["msg"] for r in logs}
    assert all(r["t"].endswith("Z") and r["level"] in ("info", "warning", "error") for r in logs)
    status = [r for r in logs if r["msg"] == "collector status"][-1]
    assert sorted(b["sensor_id"] for b in status["boards"]) == ["vs00", "vs01", "vs02"]
    assert status["triggers_new"] > 0


def test_pulled_cable_and_reboot_mid_frame_with_real_firmware(tmp_path, sensors):
    from shotline.collect import Collector

    vss = sensors(2, speed=6.0)
    store = Store(tmp_path / "c.sqlite")
    with Collector(store, [vs.path for vs in vss], backoff_s=(0.05, 0.5)) as c:
        assert c.wait_for_connections(timeout_s=15)
        assert wait_until(lambda: c.stats["triggers_new"] >= 4)
        vss[0].unplug()
        vss[1].reboot(mid_frame=True)
        vss[1].port.write(b"\x00\xffgarbage\r\nTraceback (most recent call last):\r\n")
        time.sleep(0.6)
        vss[0].plug()
        assert wait_until(lambda: drained(vss), 60)
        assert wait_until(lambda: c.boards[vss[0].path].connects >= 2)
        assert c.boards[vss[1].path].hello["boot"] == 2
    for vs in vss:
        assert sorted(r["seq"] for r in store.triggers(sensor_id=vs.name)) == recorded(vs)


def test_collect_command_locates_shots_live_and_finds_new_boards(tmp_path, monkeypatch):
    """`shotline collect all --json` over five real-firmware boards hearing the same shots."""
    from shotline.acoustics import speed_of_sound_m_s
    from shotline.geo import LocalFrame
    from shotline.virtual import VirtualFleet

    monkeypatch.setenv("SHOTLINE_VIRTUAL_DIR", str(tmp_path / "links"))
    frame = LocalFrame(40.4406, -79.9959, 300.0)
    sites = [(-300, -300, 0), (300, -300, 0), (300, 300, 0), (-300, 300, 0), (20, -40, 0)]
    source = np.array([110.0, 60.0, 0.0])
    c_m_s = speed_of_sound_m_s(15.0)
    utc0 = time.time()
    vss = []
    for i, site in enumerate(sites):
        delay_s = np.linalg.norm(np.array(site) - source) / c_m_s
        audio = impulse_audio(period_s=2.0, first_s=3.0 + delay_s, seed=i)
        vss.append(VirtualSensor(f"s{i}", tmp_path / "flash" / f"s{i}", audio=audio,
                                 position_llh=tuple(frame.to_llh(site).tolist()), utc0_s=utc0,
                                 crystal_ppm=0.0, seed=i))
    fleet = VirtualFleet(vss[:4], speed=1.0).start()
    proc = subprocess.Popen([sys.executable, "-m", "shotline", "collect", "all", "--json",
                             "--store", str(tmp_path / "c.sqlite"), "--rescan-s", "0.5",
                             "--origin", "40.4406,-79.9959,300", "--max-range-m", "900"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
        vss[4].start()  # plugged in while the collector runs
        time.sleep(6.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        fleet.close()
        vss[4].stop()
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    final = {}
    for e in events:  # keep each event's latest revision
        final[e["id"]] = e
    assert len(final) >= 2, err
    for e in final.values():
        east, north, _ = frame.to_enu(e["position_llh"]).tolist()
        assert abs(east - source[0]) < 3.0 and abs(north - source[1]) < 3.0, e
        assert len(e["sensors"]) >= 4
    s = Store(tmp_path / "c.sqlite", readonly=True)
    assert {r["sensor_id"] for r in s.triggers()} == {f"s{i}" for i in range(5)}
    assert s.counts()["events"] == len(final)


def test_virtual_sensor_command(tmp_path, capsys):
    from shotline.cli import main

    base = ["virtual-sensor", "--root", str(tmp_path / "flash"), "--links", str(tmp_path / "links")]
    assert main(base + ["a1", "b2", "--json", "--duration-s", "1.0", "--speed", "4",
                        "--set", 'storage="sd"', "--clock-error-s", "0.25"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["sensor"] for r in rows] == ["a1", "b2"]
    assert rows[0]["port"] == str(tmp_path / "links" / "a1") and rows[0]["tty"].startswith("/dev/pts/")
    assert rows[0]["position_llh"] != rows[1]["position_llh"]  # a ring around the default centre
    cfg = json.loads((tmp_path / "flash" / "a1" / "config.json").read_text())
    assert cfg["sensor_id"] == "a1" and cfg["storage"] == "sd"
    assert (tmp_path / "flash" / "a1" / "sd" / "outbox.bin").exists()
    assert not (tmp_path / "links" / "a1").exists()  # unplugged on exit
    for bad in (["x", "x"], ["x", "--position", "1,2"], ["x", "--audio", str(tmp_path / "no.wav")],
                ["x", "--speed", "0"], ["x", "--utc0", "yesterday"]):
        assert main(base + bad + ["--duration-s", "0.1"]) == 2, bad
        assert capsys.readouterr().err.startswith("shotline: "), bad
