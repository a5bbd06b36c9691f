"""The real firmware app on fake hardware (shotline.fakehw): time, outbox, commands."""
import json

import numpy as np
import pytest

from shotline import fakehw
from shotline_fw import wire

POS = dict(lat_deg=40.4406248, lon_deg=-79.995886, alt_m=300.0)


def impulses(rate_hz, seconds, times_s, seed=0, amp=9000):
    """Background noise with decaying-sine impulses at ``times_s`` (int16)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 30, int(rate_hz * seconds))
    n = np.arange(int(0.02 * rate_hz))
    pulse = amp * np.exp(-n / (0.002 * rate_hz)) * np.sin(2 * np.pi * 1500 * n / rate_hz)
    for t in times_s:
        i = int(t * rate_hz)
        x[i:i + len(n)] += pulse
    return np.clip(x, -32768, 32767).astype(np.int16)


def board(tmp_path, audio=None, **kw):
    settings = {"sensor_id": "T1", **POS, **kw.pop("settings", {})}
    fakehw.write_config(tmp_path, **settings)
    return fakehw.FakeBoard(tmp_path, audio=audio, **kw)


def of(frames, msg_type):
    return [f.json() for f in frames if f.type == msg_type]


def triggers(frames):
    """Triggers by seq (the board re-sends un-acked ones)."""
    return {t["seq"]: t for t in of(frames, wire.TRIGGER)}


def test_trigger_times_track_a_drifting_crystal(tmp_path):
    times = [4.3, 9.1, 15.7, 22.05, 28.9]
    b = board(tmp_path, impulses(16000, 30, times), crystal_ppm=-43.0, drift_ppm_per_s=0.05,
              i2s_latency_s=0.003)
    b.advance(31)
    trig = triggers(b.frames())
    assert sorted(trig) == [1, 2, 3, 4, 5]
    for t in trig.values():
        truth = b.sample_utc_s(t["onset_sample"] + t["onset_frac"])
        rec = wire.trigger_record(t)
        assert rec["time_quality"] == "pps" and not rec["holdover"]
        err_us = (rec["onset_utc_s"] - truth) * 1e6
        assert abs(err_us) < 30 and abs(err_us) < 3 * rec["time_unc_us"] + 2, (t["seq"], err_us)
        assert rec["lat_deg"] == 40.4406248 and rec["sensor_id"] == "T1"
    # the fitted rate follows the crystal (about -43 ppm plus drift)
    assert trig[5]["rate_hz"] == pytest.approx(16000 * (1 - 43e-6 + 0.05e-6 * 28.9), abs=0.03)


def test_tick_counters_wrapping_change_nothing(tmp_path):
    # ticks_ms and ticks_us both wrap (at 2**30) about 3 s after power-on
    b = board(tmp_path, impulses(16000, 12, [6.5]), ticks_offset_us=(2**30 - 3000) * 1000)
    b.advance(12)
    (t,) = triggers(b.frames()).values()
    err = wire.trigger_record(t)["onset_utc_s"] - b.sample_utc_s(t["onset_sample"] + t["onset_frac"])
    assert abs(err) < 30e-6 and t["time_quality"] == "pps"
    assert b.app.health()["uptime_s"] == 12


def test_pps_loss_holdover_and_recovery(tmp_path):
    times = [5.5, 20.5, 40.5]
    b = board(tmp_path, impulses(16000, 45, times), crystal_ppm=30.0)
    b.advance(10)
    b.pps_enabled = False
    b.advance(18)
    hb = b.app.health()
    assert hb["time_quality"] == "holdover" and hb["holdover_s"] >= 16
    b.pps_enabled = True
    b.advance(17)
    trig = triggers(b.frames())
    assert [trig[s]["time_quality"] for s in (1, 2, 3)] == ["pps", "holdover", "pps"]
    assert trig[2]["holdover"] and trig[2]["holdover_s"] >= 10
    assert trig[2]["time_unc_us"] > trig[1]["time_unc_us"] + 15     # 2 ppm x ~11 s
    for t in trig.values():
        err = wire.trigger_record(t)["onset_utc_s"] - b.sample_utc_s(t["onset_sample"] + t["onset_frac"])
        assert abs(err) < 30e-6 + t["time_unc_us"] * 1e-6


def test_pps_from_a_receiver_without_fix_is_not_trusted(tmp_path):
    b = board(tmp_path, impulses(16000, 14, [3.0, 12.0]))
    b.pps_without_fix = True
    b.advance(6)
    b.gps_fix = False                 # RMC says V; PPS keeps coming from the receiver's clock
    b.advance(8)
    trig = triggers(b.frames())
    assert trig[1]["time_quality"] == "pps"
    assert trig[2]["time_quality"] == "holdover" and trig[2]["holdover_s"] >= 4


def test_no_gps_fix_means_no_time(tmp_path):
    b = board(tmp_path, impulses(16000, 5, [3.0]))
    b.gps_fix = False
    b.advance(5)
    (t,) = triggers(b.frames()).values()
    assert t["time_quality"] == "none" and t["utc_s"] == 0


def test_reboot_with_unacked_triggers_and_late_double_acks(tmp_path):
    b = board(tmp_path, impulses(16000, 20, [2.0, 4.0, 6.0, 12.0]), settings={"resend_s": 1})
    b.command(wire.HELLO, {}, 1)
    b.advance(7)
    first = triggers(b.frames())
    assert sorted(first) == [1, 2, 3]
    b.command(wire.ACK, {"seqs": [2]}, 2)
    b.advance(0.1)
    b.frames()
    b.power_cut()                        # no clean close: as if the cable and power went
    b.advance(2)
    assert triggers(b.frames()) == {}    # nobody has spoken to the new boot yet
    b.command(wire.HELLO, {}, 3)         # the collector reconnects
    b.advance(0.05)
    frames = b.frames()
    (hello,) = of(frames, wire.HELLO)
    again = of(frames, wire.TRIGGER)
    assert hello["boot"] == 2 and [t["seq"] for t in again] == [1, 3]   # oldest first
    assert all(t == first[t["seq"]] for t in again)                    # the same records
    b.advance(1.5)
    assert set(triggers(b.frames())) == {1, 3}                         # still un-acked: again
    b.command(wire.ACK, {"seqs": [1, 3, 3, 1, 99]}, 4)                 # twice, unknown: harmless
    b.command(wire.ACK, {"seqs": [3]}, 5)                               # late and repeated
    b.advance(14)
    new = triggers(b.frames())
    assert set(new) == {4} and new[4]["boot"] == 2
    assert b.app.outbox.pending() == [4] and b.app.boot == 2


def test_resending_stops_when_no_host_speaks(tmp_path):
    b = board(tmp_path, impulses(16000, 70, [2.0]), settings={"resend_s": 1})
    b.command(wire.HELLO, {}, 1)
    b.advance(30)
    assert len(of(b.frames(), wire.TRIGGER)) > 20           # re-sent every second
    b.advance(40)                                          # host silent for over 60 s
    assert 25 <= len(of(b.frames(), wire.TRIGGER)) <= 31    # until 60 s after the HELLO
    b.advance(5)
    assert of(b.frames(), wire.TRIGGER) == [] and b.app.outbox.pending() == [1]


def test_outbox_full_drops_oldest_and_heartbeat_says_so(tmp_path):
    times = [1.0 + 0.5 * k for k in range(12)]
    b = board(tmp_path, impulses(16000, 8, times), settings={"outbox_slots": 8, "heartbeat_s": 1})
    b.advance(8)
    frames = b.frames()
    assert b.app.outbox.pending() == list(range(5, 13))
    hb = of(frames, wire.HEARTBEAT)[-1]
    assert hb["outbox_dropped"] == 4 and hb["outbox_pending"] == 8 and hb["triggers"] == 12
    assert set(hb) >= {"fw", "uptime_s", "time_quality", "gps_fix", "noise_dbfs", "i2s_overruns",
                       "storage_ok", "mem_free", "temp_c", "wdt_resets", "detector_drops"}
    assert hb["noise_dbfs"] == pytest.approx(20 * np.log10(30 / 32768), abs=1.5)


def test_overruns_are_counted_and_time_survives(tmp_path):
    b = board(tmp_path, impulses(16000, 12, [9.0]))
    b.advance(5)
    b.polling = False                  # main loop stuck for 0.5 s: the ring (8 blocks) overflows
    b.advance(0.5)
    b.polling = True
    b.advance(7)
    frames = b.frames()
    (t,) = triggers(frames).values()
    assert b.app.capture.overruns > 10 and b.app.health()["i2s_overruns"] == b.app.capture.overruns
    assert b.app.detection.gap_samples == b.app.capture.overruns * 256
    truth = b.sample_utc_s(t["onset_sample"] + t["onset_frac"])
    assert abs(wire.trigger_record(t)["onset_utc_s"] - truth) < 30e-6
    assert abs(t["onset_sample"] - 9.0 * 16000) < 16


@pytest.mark.parametrize("stall_s", [8.87, 8.88, 8.9, 8.91])
def test_an_overrun_during_or_just_after_a_pulse_keeps_its_onset(tmp_path, stall_s):
    """The main loop stalls while the pulse at 9.0 s is in the capture ring (mid-pulse
    at 8.87-8.88 s, just after it at 8.9-8.91 s): the blocks after it are lost, and the
    trigger completes only after the gap.  Its indices must keep the pre-gap offset."""
    b = board(tmp_path, impulses(16000, 12, [9.0]))
    b.advance(stall_s)
    b.polling = False
    b.advance(0.3)
    b.polling = True
    b.advance(2.5)
    assert b.app.detection.gap_samples > 2000
    found = list(triggers(b.frames()).values())
    for t in found:
        assert abs(t["onset_sample"] - 9.0 * 16000) < 16, t["onset_sample"] - 9.0 * 16000
    if stall_s >= 8.9:                      # the whole pulse was captured: it is reported
        assert len(found) == 1


def test_triggers_that_cannot_be_stored_keep_unique_seqs_and_the_loop_alive(tmp_path, monkeypatch):
    from shotline_fw import outbox
    b = board(tmp_path, impulses(16000, 8, [1.0, 2.0, 3.0, 4.0, 5.0]))
    b.advance(1.5)
    real_write = b.app.outbox._f.write
    b.app.outbox._f.write = lambda data: (_ for _ in ()).throw(OSError(28))   # card full
    b.advance(1.0)
    b.app.outbox._f.write = real_write
    monkeypatch.setattr(outbox, "MAX_PAYLOAD", 10)          # every record now "oversized"
    b.advance(1.0)
    monkeypatch.undo()
    b.advance(3.0)
    sent = [t["seq"] for t in of(b.frames(), wire.TRIGGER)]
    assert sorted(set(sent)) == [1, 2, 3, 4, 5]              # no seq reused, loop still running
    assert b.app.outbox.pending() == [1, 4, 5] and b.app.triggers == 5
    assert b.app.storage_error is None


def test_invalid_config_enters_safe_mode_and_says_why(tmp_path):
    fakehw.write_config(tmp_path, sensor_id="T1", lat_deg=40.0, lon_deg=-80.0, alt_m=1.0,
                        sample_rate_hz=44100.5)
    b = fakehw.FakeBoard(tmp_path)
    b.advance(12)
    frames = b.frames()
    (hello,) = of(frames, wire.HELLO)
    assert hello["mode"] == "safe" and hello["error"].startswith("sample_rate_hz: expected an integer")
    logs = of(frames, wire.LOG)
    assert logs and all(log["level"] == "error" and "sample_rate_hz" in log["msg"] for log in logs)
    assert of(frames, wire.HEARTBEAT)[0]["mode"] == "safe" and b.app.capture is None
    b.command(wire.CONFIG_GET)
    b.advance(0.1)
    (resp,) = of(b.frames(), wire.RESPONSE)
    assert resp["config"]["sample_rate_hz"] == 44100.5 and resp["error"]
    assert b.led.toggles > 50 and b.wdt.feeds > 0


class Authorizer:
    """Test authorizer: Ed25519 with PyNaCl and a monotonic counter."""

    def __init__(self, verify_key):
        self.key = verify_key
        self.key_id = bytes(verify_key)[:8]
        self.counter = 0

    def check(self, command, counter, key_id, signature, uid):
        from nacl.exceptions import BadSignatureError
        if key_id != self.key_id:
            return False, "unknown key"
        try:
            self.key.verify(wire.signed_message(command, counter, key_id, uid), signature)
        except BadSignatureError:
            return False, "bad signature"
        if counter <= self.counter:
            return False, "replayed counter"
        self.counter = counter
        return True, "ok"


def test_signed_commands_fail_closed_and_go_through_the_authorizer(tmp_path):
    from nacl.signing import SigningKey
    key = SigningKey(bytes(range(32)))
    b = board(tmp_path)
    b.advance(1)
    b.frames()

    def signed(msg_type, body, counter, seq, uid=b.unique_id):
        cmd = wire.command_bytes(msg_type, wire.dumps(body))
        sig = key.sign(wire.signed_message(cmd, counter, bytes(key.verify_key)[:8], uid)).signature
        b.command(wire.SIGNED, wire.encode_signed(cmd, counter, bytes(key.verify_key)[:8], sig), seq)
        b.advance(0.05)
        (r,) = [f for f in b.frames() if f.type == wire.RESPONSE]
        assert r.ref == seq
        return r.json()

    assert signed(wire.CONFIG_SET, {"config": {"heartbeat_s": 5}}, 1, 10)["status"] == "unauthorized"
    b.command(wire.CONFIG_SET, {"config": {"heartbeat_s": 5}}, 11)      # bare: refused too
    b.advance(0.05)
    (r,) = of(b.frames(), wire.RESPONSE)
    assert r["status"] == "unauthorized" and b.app.signed_refused == 2
    b.app.authorizer = Authorizer(key.verify_key)
    r = signed(wire.CONFIG_SET, {"config": {"heartbeat_s": 5}}, 2, 12)
    assert r["ok"] and r["applied"] == "at next boot"
    assert json.loads((tmp_path / "config.json").read_text())["heartbeat_s"] == 5
    assert signed(wire.CONFIG_SET, {"config": {"heartbeat_s": 6}}, 2, 13)["error"] == "replayed counter"
    other_board = b"\x01" + b.unique_id[1:]          # signed for another board's uid
    assert signed(wire.CONFIG_SET, {"config": {"heartbeat_s": 7}}, 9, 16,
                  uid=other_board)["error"] == "bad signature"
    r = signed(wire.CONFIG_SET, {"config": {"sample_rate_hz": 3}}, 3, 14)
    assert r["status"] == "bad_request" and "sample_rate_hz" in r["error"]
    assert signed(wire.SNIPPET, {"trigger_seq": 1}, 4, 15)["status"] == "unknown_command"
    b.reboot()
    assert b.app.cfg["heartbeat_s"] == 5 and b.app.boot == 2


def test_handler_registry_and_audio_sink(tmp_path):
    b = board(tmp_path, impulses(16000, 3, [1.0, 2.0]))
    seen, noted = [], []

    class Sink:
        def write(self, block, first):
            seen.append((first, len(block)))

        def note_trigger(self, seq, onset_sample):
            noted.append((seq, onset_sample))

        def health(self):
            return {"blocks": len(seen)}

        def close(self):
            noted.append("closed")

    b.app.audio_sink = Sink()
    b.app.handlers[0x50] = lambda app, seq, body: {"echo": body.decode()}
    b.advance(2.5)
    frames = b.frames()
    assert [f for f, _ in seen] == list(range(0, 256 * len(seen), 256)) and len(seen) > 100
    b.command(0x50, b"hi", 7)
    b.command(0x51, b"", 8)
    b.advance(0.05)
    resp = {f.ref: f.json() for f in b.frames() if f.type == wire.RESPONSE}
    assert resp[7] == {"echo": "hi", "ok": True, "status": "ok"}
    assert resp[8]["status"] == "unknown_command"
    sent = [(f.json()["seq"], f.json()["sample_index"]) for f in frames if f.type == wire.TRIGGER]
    assert len(noted) == 2 and noted == sorted(set(sent))          # every trigger, as sent
    assert b.app.health()["audio"] == {"blocks": len(seen)}
    b.app.close()
    assert noted[-1] == "closed"


def test_status_time_self_test_and_garbage(tmp_path):
    b = board(tmp_path)
    b.advance(4)
    b.frames()
    b.usb.host_write(b"\x00garbage\r\n~SL:AAAA\n")
    for seq, t in enumerate((wire.STATUS_GET, wire.TIME_GET, wire.SELF_TEST), 1):
        b.command(t, {}, seq)
    b.advance(0.05)
    resp = {f.ref: f.json() for f in b.frames() if f.type == wire.RESPONSE}
    assert resp[1]["sensor_id"] == "T1" and resp[1]["mode"] == "run"
    assert resp[2]["time_quality"] == "pps" and resp[2]["pps_count"] >= 3
    assert resp[3]["checks"] == {"config": "ok", "i2s": "ok", "gps": "ok", "pps": "ok",
                                 "storage": "ok", "outbox": "ok"} and resp[3]["ok"]
    assert b.app.decoder.bad == 1


def test_reboot_command_is_signed_and_resets(tmp_path):
    b = board(tmp_path)
    b.app.authorizer = type("A", (), {"check": lambda self, *a: (True, "ok")})()
    cmd = wire.command_bytes(wire.REBOOT, b"{}")
    b.command(wire.SIGNED, wire.encode_signed(cmd, 1, b"k" * 8, b"s" * 64), 3)
    b.advance(1)
    assert b.app.boot == 2 and b.reset_cause == "soft"


def test_pittsburgh_recording_through_the_capture_path_matches_shotline_detect(pittsburgh_tests, capsys,
                                                                            tmp_path):
    """Real 12 kHz audio through fake I2S (24-bit words, pure-Python conversion),
    capture ring, detection step and trigger records = ``shotline detect --json``."""
    from shotline.cli import main as shotline
    from shotline.detect import read_audio

    test = next(t for t in pittsburgh_tests if t.rounds == 3)
    for k, rec in enumerate(test.recordings[:2]):
        assert shotline(["detect", "--json", str(rec.path)]) == 0
        expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        audio = np.concatenate([blk for _, blk in read_audio(rec.path)])
        fakehw.write_config(tmp_path / str(k), sensor_id="P", **POS, sample_rate_hz=12000)
        b = fakehw.FakeBoard(tmp_path / str(k), audio=audio, fast_convert=False)
        b.advance(len(audio) / 12000 + 0.5)
        got = sorted(triggers(b.frames()).values(), key=lambda t: t["seq"])
        assert len(expected) > 0
        assert [(t["onset_sample"], round(t["onset_frac"], 4)) for t in got] == \
               [(e["onset_sample"], round(e["onset_frac"], 4)) for e in expected]
        for t, e in zip(got, expected):
            for name in wire.FEATURES:
                assert t[name] == pytest.approx(e[name], abs=1e-3), name


def test_virtual_sensor_on_a_pty_speaks_to_pyserial(tmp_path):
    import serial
    from shotline.virtual import PtyPort

    port = PtyPort("fw-test", folder=tmp_path / "ports").plug()
    try:
        b = board(tmp_path / "flash", impulses(16000, 4, [2.5]), usb=port)
        host = serial.serial_for_url(port.path, timeout=0.2)   # opening flushes the boot HELLO
        host.write(wire.encode_json(wire.HELLO, 8, {}) + wire.encode_json(wire.STATUS_GET, 9, {}))
        b.advance(4)
        dec = wire.StreamDecoder()
        frames = []
        for _ in range(20):
            frames += dec.feed(host.read(65536))
            if any(f.type == wire.RESPONSE for f in frames):
                break
        host.close()
    finally:
        port.unplug()
    assert [(f.ref, f.json()["mode"]) for f in frames if f.type == wire.HELLO] == [(8, "run")]
    assert [f.ref for f in frames if f.type == wire.RESPONSE] == [9]
    assert 1 in triggers(frames)


def test_hostile_host_bytes_never_stop_the_sensor(tmp_path):
    """Random frames (any type, any body, bad envelopes) and raw noise: every
    command gets an answer or is ignored, and triggers keep coming."""
    from hypothesis import given, settings, strategies as st, HealthCheck

    b = board(tmp_path, impulses(16000, 40, [3.0 + 1.5 * k for k in range(24)]))
    b.advance(2)
    b.frames()
    frame = st.tuples(st.sampled_from(sorted(wire.NAMES) + [0x00, 0x33, 0xFF]),
                      st.one_of(st.binary(max_size=120),
                                st.dictionaries(st.sampled_from(["seqs", "config", "trigger_seq", "x"]),
                                                st.one_of(st.integers(), st.text(max_size=5),
                                                          st.lists(st.integers(), max_size=3)),
                                                max_size=3).map(wire.dumps)))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(frame, st.binary(max_size=40)), min_size=1, max_size=6))
    def hammer(items):
        for item in items:
            if isinstance(item, tuple):
                b.command(item[0], item[1], seq=7)
            else:
                b.usb.host_write(item)
        b.advance(0.5)
        assert b.app.mode == "run"
        for f in b.frames():
            if f.type == wire.RESPONSE:
                r = f.json()
                assert r["ok"] in (True, False) and r["status"]

    hammer()
    assert b.app.triggers >= 15 and b.app.health()["storage_ok"]


def test_corrupt_state_file_is_reported_and_sequence_numbers_still_continue(tmp_path):
    b = board(tmp_path, impulses(16000, 6, [2.0, 4.0]))
    b.advance(6)
    assert b.app.outbox.next_seq == 3
    (tmp_path / "state.json").write_text('{"boot": "x"')
    b.power_cut()
    assert b.app.mode == "run" and "state.json unreadable" in b.app.health()["storage_error"]
    assert b.app.boot == 1 and b.app.outbox.next_seq == 3 and b.app.outbox.pending() == [1, 2]
