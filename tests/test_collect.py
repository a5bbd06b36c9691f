"""Collector over real pseudo-terminals with scripted boards, and the link over loop://."""
import time

import pytest

from shotline_fw import wire
from shotline.collect import Collector, LiveAssociation
from shotline.geo import LocalFrame
from shotline.link import Link, LinkClosed, LinkTimeout
from shotline.store import Store

from collect_helpers import ScriptedBoard

pytestmark = pytest.mark.timeout(60)


def wait_until(cond, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture
def boards(tmp_path):
    made = []

    def make(name, **kw):
        b = ScriptedBoard(name, tmp_path / "vs", **kw).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def stored(store):
    return sorted((r["sensor_id"], r["seq"]) for r in store.triggers())


# -- link over loop:// ---------------------------------------------------------
def test_link_decodes_frames_through_garbage_and_truncation_on_loop():
    with Link("loop://") as link:
        good = [wire.encode_json(wire.TRIGGER, i, {"seq": i}) for i in range(1, 4)]
        link.write(b"\x00\xff garbage\r\n" + good[0] + good[1][:20] + b"\n" + b"~SL:AAAA\n"
                   + b"MicroPython REPL >>> " + good[1] + good[2])
        frames = []
        wait_until(lambda: frames.extend(link.read_frames()) or len(frames) >= 3, 3)
        assert [f.json()["seq"] for f in frames] == [1, 2, 3]
        assert link.decoder.bad == 2  # the truncated frame and the bogus one


def test_link_request_matches_its_response_and_keeps_other_frames():
    with Link("loop://") as link:
        # loop:// echoes what we send; pre-load the answer to the command we will send (seq 1)
        link.write(wire.encode_json(wire.HEARTBEAT, 9, {"uptime_s": 1})
                   + wire.encode_json(wire.RESPONSE, 10, {"ok": True, "fw": "x"}, ref=1))
        assert link.request(wire.STATUS_GET, timeout_s=2) == {"ok": True, "fw": "x"}
        # the heartbeat before the answer and our own echoed command after it are kept
        assert [f.type for f in link.read_frames()] == [wire.HEARTBEAT, wire.STATUS_GET]
        with pytest.raises(LinkTimeout):
            link.request(wire.TIME_GET, timeout_s=0.2)
    with pytest.raises(LinkClosed):
        link.read_frames()
    with pytest.raises(LinkClosed, match="cannot open"):
        Link("/dev/does-not-exist").open()


# -- collector over ptys ----------------------------------------------------------
def test_collects_many_boards_acks_only_stored_triggers(tmp_path, boards):
    bs = [boards(f"vs{i}") for i in range(3)]
    store = Store(tmp_path / "c.sqlite")
    seen = []

    def on_trigger(rec):
        seen.append(rec)
        if len(seen) == 5:
            raise RuntimeError("a bug in the caller's callback")

    with Collector(store, [b.path for b in bs], on_trigger=on_trigger) as c:
        assert c.wait_for_connections(timeout_s=10)
        for k in range(20):
            for b in bs:
                b.trigger()
        assert wait_until(lambda: all(not b.unacked() for b in bs))
        assert wait_until(lambda: c.stats["heartbeats"] > 0)
    want = sorted((b.sensor_id, s) for b in bs for s in range(1, 21))
    assert stored(store) == want
    assert sorted((r["sensor_id"], r["seq"]) for r in seen) == want
    # an ACK never precedes the row: every acked seq is in the store
    assert all((b.sensor_id, s) in want for b in bs for s in b.acked)
    sensors = {s["sensor_id"]: s for s in store.sensors()}
    assert set(sensors) == {"vs0", "vs1", "vs2"} and sensors["vs0"]["lat_deg"] == pytest.approx(40.44)
    row = store.triggers(sensor_id="vs1")[0]
    assert row["onset_utc_s"] == pytest.approx(1545180567.25) and row["time_quality"] == "pps"
    assert store.heartbeats()[0]["payload"]["noise_dbfs"] == -62.0


def test_pulled_cable_reconnects_and_loses_nothing(tmp_path, boards):
    b = boards("vs1")
    store = Store(tmp_path / "c.sqlite")
    with Collector(store, [b.path], backoff_s=(0.05, 0.4)) as c:
        assert c.wait_for_connections(timeout_s=10)
        for _ in range(5):
            b.trigger()
        assert wait_until(lambda: not b.unacked())
        b.port.unplug()
        assert wait_until(lambda: not c.boards[b.path].connected)
        for _ in range(5):
            b.trigger()  # recorded while unplugged: outbox only
        time.sleep(0.5)
        b.port.plug()
        assert wait_until(lambda: c.boards[b.path].connects == 2)
        assert wait_until(lambda: not b.unacked())
    assert stored(store) == [("vs1", s) for s in range(1, 11)]


def test_garbage_truncated_frames_and_reboot_mid_frame(tmp_path, boards):
    b = boards("vs1")
    store = Store(tmp_path / "c.sqlite")
    with Collector(store, [b.path]) as c:
        assert c.wait_for_connections(timeout_s=10)
        b.trigger()
        b.send_raw(b"\xde\xad\xbe\xef" * 300 + b"\r\n~SL:!!!!\n" + b"\x03\x01 >>> ")
        b.send_raw(wire.encode_json(wire.TRIGGER, 99, {"seq": 1234})[:-9] + b"\n")  # bad CRC
        b.trigger()
        b.reboot_mid_frame()
        b.trigger()
        assert wait_until(lambda: not b.unacked())
        assert wait_until(lambda: c.boards[b.path].hello["boot"] == 2)
    assert stored(store) == [("vs1", s) for s in range(1, 5)]
    assert c.stats["triggers_new"] == 4


def test_restart_replays_are_deduplicated(tmp_path, boards):
    b = boards("vs1", resend_s=0.1)
    store_path = tmp_path / "c.sqlite"
    for _ in range(3):
        b.trigger()
    with Collector(Store(store_path), [b.path]) as c:
        assert wait_until(lambda: not b.unacked())
    b.acked.clear()  # as if every ACK had been lost: the board sends all again
    with Collector(Store(store_path), [b.path]) as c2:
        assert wait_until(lambda: b.acked >= {1, 2, 3})
    assert c2.stats["triggers_new"] == 0 and c2.stats["triggers_replayed"] >= 3
    assert stored(Store(store_path)) == [("vs1", 1), ("vs1", 2), ("vs1", 3)]


def test_triggers_are_associated_and_located_live(tmp_path, boards):
    frame = LocalFrame(40.44, -79.99, 250.0)
    sites = {"n": (0, 400, 0), "e": (400, 0, 0), "s": (0, -400, 0), "w": (-400, 0, 0), "c": (50, 80, 0)}
    bs = {k: boards(k, position_llh=tuple(frame.to_llh(v).tolist())) for k, v in sites.items()}
    shots = [(1545180600.0, (100.0, 50.0)), (1545180603.0, (-150.0, -120.0))]
    live = LiveAssociation(origin_llh=(40.44, -79.99, 250.0), temperature_c=20.0, sensors=sites)
    c_m_s = live.associator.speed_m_s
    got = []
    with Collector(Store(tmp_path / "c.sqlite"), [b.path for b in bs.values()],
                   associator=live, on_event=got.append) as c:
        assert c.wait_for_connections(timeout_s=10)
        for t0, (x, y) in shots:
            for k, b in bs.items():
                sx, sy, _ = sites[k]
                b.trigger(t0 + ((sx - x) ** 2 + (sy - y) ** 2) ** 0.5 / c_m_s, snr_db=25.0)
            # shots come seconds apart in real life: let this one's reports land first
            assert wait_until(lambda: all(not b.unacked() for b in bs.values()))
        assert wait_until(lambda: len(got) >= 2, 15)  # decided while running, not at stop
    store = Store(tmp_path / "c.sqlite", readonly=True)
    events = store.events()
    assert len(events) == 2
    for ev, (t0, (x, y)) in zip(events, shots):
        e, n, _ = frame.to_enu((ev["lat_deg"], ev["lon_deg"], ev["alt_m"])).tolist()
        assert abs(e - x) < 1.0 and abs(n - y) < 1.0
        assert ev["t_emit_utc_s"] == pytest.approx(t0, abs=1e-3)
        assert ev["n_sensors"] == 5
        linked = [r for r in store.triggers() if r["event_id"] == ev["id"]]
        assert sorted(r["sensor_id"] for r in linked) == sorted(sites)


def test_silent_board_is_pinged_then_reopened(tmp_path, boards):
    b = boards("vs1", heartbeat_s=60)
    store = Store(tmp_path / "c.sqlite")
    with Collector(store, [b.path], idle_timeout_s=0.3, backoff_s=(0.05, 0.2)) as c:
        assert c.wait_for_connections(timeout_s=10)
        b.hang()
        b.trigger()  # recorded while the firmware is stuck: stays in the outbox
        assert wait_until(lambda: not c.boards[b.path].connected, 5)
        assert "silent" in c.boards[b.path].last_error
        b.resume()
        assert wait_until(lambda: c.boards[b.path].connects >= 2 and not b.unacked(), 10)
    assert stored(store) == [("vs1", 1)]


def test_ports_can_be_added_while_running(tmp_path, boards):
    a, b = boards("vsa"), boards("vsb")
    store = Store(tmp_path / "c.sqlite")
    with Collector(store, [a.path]) as c:
        assert c.wait_for_connections(timeout_s=10)
        b.trigger()
        assert c.add_port(b.path) and not c.add_port(b.path)
        assert wait_until(lambda: not b.unacked())
    assert stored(store) == [("vsb", 1)]


def test_stop_acknowledges_everything_it_stored(tmp_path, boards):
    bs = [boards(f"vs{i}", resend_s=60) for i in range(3)]
    store = Store(tmp_path / "c.sqlite")
    with Collector(store, [b.path for b in bs]) as c:
        assert c.wait_for_connections(timeout_s=10)
        for _ in range(30):
            for b in bs:
                b.trigger()
        time.sleep(0.05)  # stop while triggers are still streaming in
    for b in bs:
        mine = {s for sensor, s in stored(store) if sensor == b.sensor_id}
        assert wait_until(lambda: b.acked == mine, 2)  # ACKs already sent before the port closed


def test_board_in_safe_mode_is_recorded_and_its_triggers_still_flow(tmp_path, boards, caplog):
    b = boards("vs1")
    safe = dict(b.hello_body(), mode="safe", error="lat_deg: required", lat_e7=None, lon_e7=None,
                alt_m=None)
    b.hello_body = lambda: safe
    store = Store(tmp_path / "c.sqlite")
    with caplog.at_level("INFO", logger="shotline.collect"):
        with Collector(store, [b.path]) as c:
            assert c.wait_for_connections(timeout_s=10)
            b.trigger()
            assert wait_until(lambda: not b.unacked())
    (sensor,) = store.sensors()
    assert sensor["sensor_id"] == "vs1" and sensor["lat_deg"] is None
    assert stored(store) == [("vs1", 1)]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert {r.getMessage() for r in errors} == {"board is in safe mode"}
    assert errors[0].fields["error"] == "lat_deg: required"


def test_second_board_with_the_same_id_is_refused_not_merged(tmp_path, boards):
    a = boards("same")
    b = boards("other")  # misconfigured: same sensor id, different unique id
    b.sensor_id = "same"
    b.hello_body = lambda: dict(ScriptedBoard.hello_body(b), uid="E66OTHER")
    store = Store(tmp_path / "c.sqlite")
    with Collector(store, [a.path], backoff_s=(0.05, 0.2)) as c:
        assert c.wait_for_connections(timeout_s=10)
        c.add_port(b.path)
        a.trigger()
        b.trigger()  # same (sensor_id, seq) as a's: storing it would lose it silently
        assert wait_until(lambda: not a.unacked())
        assert wait_until(lambda: "already used" in (c.boards[b.path].last_error or ""), 5)
        time.sleep(0.3)
    assert b.unacked() == [1]  # kept on the board, not acknowledged as a duplicate
    assert stored(store) == [("same", 1)]


def test_reused_sequence_numbers_stay_on_the_board(tmp_path, boards):
    b = boards("vs1")
    store = Store(tmp_path / "c.sqlite")
    with Collector(store, [b.path]) as c:
        assert c.wait_for_connections(timeout_s=10)
        b.trigger()
        assert wait_until(lambda: not b.unacked())
        b.outbox.clear()
        b.acked.clear()
        b.next_trigger_seq = 1  # flash wiped: the board starts counting again
        b.trigger(onset_utc_s=1545190000.0)
        assert wait_until(lambda: c.boards[b.path].triggers_rejected >= 1)
    assert b.unacked() == [1]  # not acknowledged: still on the board
    assert c.boards[b.path].last_error == "sequence reused"
    assert [r["onset_utc_s"] for r in store.triggers()] == [pytest.approx(1545180567.25)]


def test_health_changes_are_logged_once(tmp_path, boards, caplog):
    b = boards("vs1", heartbeat_s=60)
    with caplog.at_level("INFO", logger="shotline.collect"):
        with Collector(Store(tmp_path / "c.sqlite"), [b.path]) as c:
            assert c.wait_for_connections(timeout_s=10)
            beats = [dict(time_quality="pps", outbox_dropped=0, storage_ok=True),
                     dict(time_quality="holdover", holdover_s=3, outbox_dropped=0, storage_ok=True),
                     dict(time_quality="holdover", holdover_s=13, outbox_dropped=2, storage_ok=False,
                          storage_error="sd: EIO"),
                     dict(time_quality="pps", outbox_dropped=2, storage_ok=False)]
            for beat in beats:
                b._send(wire.HEARTBEAT, dict(beat, sensor_id="vs1", uptime_s=1))
            assert wait_until(lambda: c.stats["heartbeats"] == 4)
    got = [(r.levelname, r.getMessage()) for r in caplog.records
           if r.getMessage().startswith("board ") and r.getMessage() != "board connected"]
    assert got == [("WARNING", "board time quality changed"), ("ERROR", "board storage failing"),
                   ("WARNING", "board outbox dropped"), ("INFO", "board time quality changed")]


def _crash_after_commit(tmp_path, boards):
    """Five boards hear one shot; a collector stores their triggers then 'dies' before
    associating them (SIGKILL between commit and association leaves exactly this)."""
    frame = LocalFrame(40.44, -79.99, 250.0)
    sites = {"n": (0, 400, 0), "e": (400, 0, 0), "s": (0, -400, 0), "w": (-400, 0, 0), "c": (50, 80, 0)}
    bs = {k: boards(k, resend_s=0.1, position_llh=tuple(frame.to_llh(v).tolist()))
          for k, v in sites.items()}
    live = LiveAssociation(origin_llh=(40.44, -79.99, 250.0), temperature_c=20.0)
    t0, (x, y) = 1545180600.0, (100.0, 50.0)
    store_path = tmp_path / "c.sqlite"
    with Collector(Store(store_path), [b.path for b in bs.values()]) as c:
        assert c.wait_for_connections(timeout_s=10)
        for k, b in bs.items():
            sx, sy, _ = sites[k]
            b.trigger(t0 + ((sx - x) ** 2 + (sy - y) ** 2) ** 0.5 / live.associator.speed_m_s)
        assert wait_until(lambda: all(not b.unacked() for b in bs.values()))
    assert len(stored(Store(store_path))) == 5 and Store(store_path).events() == []
    return store_path, bs, live, frame, (t0, x, y)


def _assert_located(store_path, frame, shot):
    t0, x, y = shot
    store = Store(store_path, readonly=True)
    (ev,) = store.events()
    e, n, _ = frame.to_enu((ev["lat_deg"], ev["lon_deg"], ev["alt_m"])).tolist()
    assert abs(e - x) < 1.0 and abs(n - y) < 1.0 and ev["t_emit_utc_s"] == pytest.approx(t0, abs=1e-3)
    assert all(r["event_id"] == ev["id"] for r in store.triggers())


def test_triggers_stored_before_a_crash_are_associated_after_restart(tmp_path, boards):
    store_path, bs, live, frame, shot = _crash_after_commit(tmp_path, boards)
    got = []
    with Collector(Store(store_path), [b.path for b in bs.values()], associator=live,
                   on_event=got.append) as c:
        assert wait_until(lambda: len(got) >= 1, 15)
    assert c.stats["triggers_new"] == 0
    _assert_located(store_path, frame, shot)


def test_replays_of_unassociated_triggers_are_associated(tmp_path, boards, monkeypatch):
    store_path, bs, live, frame, shot = _crash_after_commit(tmp_path, boards)
    monkeypatch.setattr(Store, "unassociated_triggers", lambda self, window_s: [])
    for b in bs.values():
        b.acked.clear()  # the ACKs were lost with the crash: every board sends again
    got = []
    with Collector(Store(store_path), [b.path for b in bs.values()], associator=live,
                   on_event=got.append) as c:
        assert wait_until(lambda: all(1 in b.acked for b in bs.values()))
        assert wait_until(lambda: len(got) >= 1, 15)
    assert c.stats["triggers_new"] == 0 and c.stats["triggers_replayed"] >= 5
    _assert_located(store_path, frame, shot)
