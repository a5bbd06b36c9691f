"""The SQLite store: migrations, durability settings, dedup, round trips."""
import multiprocessing
import sqlite3

import pytest

from shotline import store as store_mod
from shotline.store import MIGRATIONS, Store, StoreError


def trig(sensor="S1", seq=1, onset=1545180567.467123, **extra):
    return {"sensor_id": sensor, "seq": seq, "onset_utc_s": onset, **extra}


def test_fresh_store_is_wal_full_and_migrated(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
        assert s.query("PRAGMA synchronous")[0]["synchronous"] == 2  # FULL
        assert s.counts() == {"sensors": 0, "triggers": 0, "heartbeats": 0,
                              "events": 0, "snippets": 0}


def test_trigger_round_trip_keeps_features_and_microseconds(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        t = trig(snr_db=23.5, peak_dbfs=-3.0, time_quality="pps", holdover=False,
                 lat_deg=40.44, lon_deg=-79.99, alt_m=250.0, rise_time_s=0.0004,
                 onset_sample=123456789012, band_low_db=-20.0)
        row_id, inserted = s.insert_trigger(t, received_utc_s=1545180568.0)
        assert inserted and row_id > 0
        (row,) = s.triggers()
        assert row["onset_utc_s"] == pytest.approx(1545180567.467123, abs=1e-6)
        assert row["snr_db"] == 23.5 and row["holdover"] == 0 and row["time_quality"] == "pps"
        assert row["rise_time_s"] == 0.0004 and row["onset_sample"] == 123456789012
        assert row["received_utc_s"] == 1545180568.0


def test_replay_is_deduplicated_by_sensor_and_seq(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        a = s.insert_trigger(trig(seq=7))
        b = s.insert_trigger(trig(seq=7, snr_db=1.0))  # replay: the first copy is kept
        c = s.insert_trigger(trig(sensor="S2", seq=7))
        assert a[1] and not b[1] and c[1]
        assert a[0] == b[0] != c[0]
        assert s.counts()["triggers"] == 2
        assert s.triggers(sensor_id="S1")[0]["onset_utc_s"] == pytest.approx(1545180567.467123)


def test_batch_is_atomic_on_bad_record(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        with pytest.raises(StoreError, match="onset_utc_s"):
            s.insert_triggers([trig(seq=1), {"sensor_id": "S1", "seq": 2}])
        with pytest.raises(StoreError, match="not finite"):
            s.insert_triggers([trig(seq=3), trig(seq=4, onset=float("nan"))])
        assert s.counts()["triggers"] == 0
        results = s.insert_triggers([trig(seq=1), trig(seq=2), trig(seq=1)])
        assert [r[1] for r in results] == [True, True, False]
        assert results[0][0] == results[2][0]


def test_sensor_upsert_keeps_known_fields(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        s.upsert_sensor("S1", seen_utc_s=10.0, firmware="0.1", position_llh=(40.0, -79.0, 250.0))
        s.upsert_sensor("S1", seen_utc_s=20.0, port="/dev/ttyACM0")
        (row,) = s.sensors()
        assert row["firmware"] == "0.1" and row["port"] == "/dev/ttyACM0"
        assert row["lat_deg"] == 40.0 and row["first_seen_utc_s"] == 10.0
        assert row["last_seen_utc_s"] == 20.0


def test_events_link_triggers_and_heartbeats_and_snippets(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        ids = [s.insert_trigger(trig(sensor=f"S{i}", seq=1))[0] for i in range(3)]
        eid = s.insert_event({"t_emit_utc_s": 1545180567.0, "position_llh": [40.4, -79.9, 250.0],
                              "status": "ok", "sensors": ["S0", "S1", "S2"]}, ids)
        (ev,) = s.events()
        assert ev["id"] == eid and ev["n_sensors"] == 3 and ev["payload"]["status"] == "ok"
        assert {r["event_id"] for r in s.triggers()} == {eid}
        again = s.insert_event({"t_emit_utc_s": 1.0}, key="run1:7")
        assert s.insert_event({"t_emit_utc_s": 1.0, "revision": 1}, ids[:2], key="run1:7") == again
        assert s.counts()["events"] == 2 and s.events()[0]["revision"] == 1
        assert sorted(r["event_id"] for r in s.triggers()) == sorted([again, again, eid])
        with pytest.raises(StoreError, match="emission"):
            s.insert_event({"status": "ok"})
        s.insert_heartbeat("S1", {"uptime_s": 5, "noise_dbfs": -60.5})
        assert s.heartbeats(sensor_id="S1")[0]["payload"]["noise_dbfs"] == -60.5
        s.insert_snippet("S1", 1, start_utc_s=1545180565.0, sample_rate_hz=16000,
                         n_samples=96000, path="a.flac", sha256="00" * 32, requested_by="me")
        assert s.counts()["snippets"] == 1


def test_migrations_are_an_appendable_ordered_list(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    extra = ("incidents (test)", "CREATE TABLE incidents_test (id INTEGER PRIMARY KEY);")
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS + [extra])
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS) + 1
        assert s.query("SELECT count(*) AS n FROM incidents_test")[0]["n"] == 0


def test_failed_migration_rolls_back_and_keeps_version(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    bad = ("broken", "CREATE TABLE half (id INTEGER); CREATE TABLE oops (;")
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS + [bad])
    with pytest.raises(StoreError, match=f"migration {len(MIGRATIONS) + 1}"):
        Store(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert not db.execute("SELECT name FROM sqlite_master WHERE name='half'").fetchall()


def test_newer_schema_and_garbage_file_are_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 5}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a usable"):
        Store(junk)
    assert junk.read_bytes() == b"this is not a database" * 100


def _write_and_die(path, n):
    s = Store(path)
    for i in range(n):
        s.insert_trigger(trig(seq=i))
    import os
    os._exit(0)  # no close(): what was committed must still be there


def test_committed_triggers_survive_a_process_that_never_closes(tmp_path):
    path = tmp_path / "s.sqlite"
    proc = multiprocessing.get_context("fork").Process(target=_write_and_die, args=(path, 50))
    proc.start()
    proc.join(30)
    with Store(path, readonly=True) as s:
        assert [r["seq"] for r in s.triggers()] == list(range(50))


def test_readonly_open_refuses_an_unmigrated_file(tmp_path):
    path = tmp_path / "s.sqlite"
    sqlite3.connect(path).close()
    with pytest.raises(StoreError, match="schema version 0"):
        Store(path, readonly=True)
    with pytest.raises(StoreError):
        Store(tmp_path / "missing.sqlite", readonly=True)


def test_a_different_trigger_under_a_stored_seq_is_not_swallowed(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        (first, _), = s.insert_triggers([trig(seq=1)])
        same = s.insert_trigger(trig(seq=1, onset=1545180567.467123 + 1e-6))
        reused = s.insert_trigger(trig(seq=1, onset=1545190000.0))  # board wiped: seq restarted
        assert same == (first, False) and reused == (None, False)
        assert s.counts()["triggers"] == 1


def test_non_finite_feature_is_stored_as_null_not_refused(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        results = s.insert_triggers([trig(seq=1, rise_s=0.001),
                                     trig(seq=2, rise_s=float("nan"), bands=[1.0, float("inf")],
                                          snr_db=float("nan"), peak_dbfs=float("-inf")),
                                     trig(seq=3, rise_s=0.002)])
        assert [r[1] for r in results] == [True, True, True]
        rows = {r["seq"]: r for r in s.triggers()}
        assert rows[2]["rise_s"] is None and rows[2]["bands"] == [1.0, None]
        assert rows[2]["snr_db"] is None and rows[2]["peak_dbfs"] is None
        assert rows[1]["rise_s"] == 0.001 and rows[3]["rise_s"] == 0.002
        assert s.insert_trigger(trig(seq=5, snr_db="loud"))[1] is True
        with pytest.raises(StoreError, match="lat_deg is not a number"):
            s.insert_triggers([trig(seq=6), trig(seq=7, lat_deg="north")])
        with pytest.raises(StoreError, match="not storable"):
            s.insert_triggers([trig(seq=4, thing=object())])


def test_readonly_open_of_a_garbage_file_is_refused_and_closed(tmp_path, monkeypatch):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    opened = []
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        opened.append(real_connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)
    with pytest.raises(StoreError, match="not a usable"):
        Store(junk, readonly=True)
    assert len(opened) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("SELECT 1")
