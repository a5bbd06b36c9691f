"""Incident store, audit trail, ``shotline incidents`` and ``shotline map``."""
import json

import pytest

from shotline.cli import main
from shotline.geo import LocalFrame
from shotline.incidents import (MIN_ALERT_SENSORS, IncidentError, audit_trail, get_incident,
                                list_incidents, record_incident, set_status, should_alert)
from shotline.store import Store

BASE = {"time_utc_s": 1_783_206_000.0, "lat_deg": 40.452, "lon_deg": -79.98, "alt_m": 280.0,
        "ellipse_major_m": 30.0, "ellipse_minor_m": 10.0, "ellipse_azimuth_deg": 45.0,
        "sensors": ["S01", "S02", "S03", "S04", "S05"], "n_shots": 3}


def _store(tmp_path):
    return Store(tmp_path / "shotline.sqlite")


def test_record_is_idempotent_by_uid_and_keeps_optional_classification(tmp_path):
    store = _store(tmp_path)
    a = record_incident(store, {**BASE, "uid": "ev-1"}, now_utc_s=10.0)
    again = record_incident(store, {**BASE, "uid": "ev-1", "n_shots": 9}, now_utc_s=11.0)
    assert again == a and a["n_shots"] == 3 and a["status"] == "new"
    assert a["class"] is None and a["alert"] is True
    b = record_incident(store, {**BASE, "uid": "ev-2", "time_utc_s": BASE["time_utc_s"] + 5,
                                "class": "firework", "probability": 0.9,
                                "reasons": ["many impulses"]}, now_utc_s=12.0)
    assert b["class"] == "firework" and b["reasons"] == ["many impulses"] and b["alert"] is False
    assert [i["uid"] for i in list_incidents(store)] == ["ev-1", "ev-2"]
    assert audit_trail(store, a["id"])[0]["new_status"] == "new"


@pytest.mark.parametrize("bad, message", [
    ({"uid": ""}, "uid"), ({"uid": "a b"}, "uid"), ({"uid": "x", "lat_deg": None}, "lat_deg"),
    ({"uid": "x", "lat_deg": float("nan")}, "lat_deg"), ({"uid": "x", "lat_deg": 91.0}, "range"),
    ({"uid": "x", "probability": 1.5}, "probability"), ({"uid": "x", "time_utc_s": "noon"},
                                                       "time_utc_s"),
])
def test_bad_incidents_are_refused_and_nothing_is_stored(tmp_path, bad, message):
    store = _store(tmp_path)
    with pytest.raises(IncidentError, match=message):
        record_incident(store, {**BASE, **bad})
    assert list_incidents(store) == []


def test_status_changes_are_audited_in_order(tmp_path):
    store = _store(tmp_path)
    inc = record_incident(store, {**BASE, "uid": "ev-1"}, now_utc_s=1.0)
    set_status(store, inc["id"], "reviewed", by="dispatcher A", now_utc_s=2.0)
    done = set_status(store, inc["id"], "dispatched", by="dispatcher B", note="unit 12",
                      now_utc_s=3.0)
    assert done["status"] == "dispatched" and done["updated_utc_s"] == 3.0
    trail = audit_trail(store, inc["id"])
    assert [(r["old_status"], r["new_status"], r["by"]) for r in trail] == [
        (None, "new", "shotline"), ("new", "reviewed", "dispatcher A"),
        ("reviewed", "dispatched", "dispatcher B")]
    assert trail[-1]["note"] == "unit 12"
    for status, by, message in [("lost", "x", "status must be"), ("reviewed", " ", "name"),
                                ("dispatched", "x", "already")]:
        with pytest.raises(IncidentError, match=message):
            set_status(store, inc["id"], status, by=by)
    with pytest.raises(IncidentError, match="no incident"):
        set_status(store, 99, "reviewed", by="x")
    assert len(audit_trail(store, inc["id"])) == 3
    assert get_incident(store, inc["id"])["status"] == "dispatched"


def test_alert_threshold():
    heard = {"sensors": ["S1", "S2", "S3", "S4", "S5"]}
    assert should_alert(heard)
    assert should_alert({**heard, "class": "gunshot", "probability": 0.7}, threshold=0.7)
    assert not should_alert({**heard, "class": "gunshot", "probability": 0.69}, threshold=0.7)
    assert not should_alert({**heard, "class": "firework", "probability": 0.99})
    assert not should_alert({})   # heard by nobody
    # no usable model: class unknown alerts like an unclassified incident
    assert should_alert({**heard, "class": "unknown", "reasons": ["classifier unavailable"]})
    # with every class's probability the threshold is on p(gunshot), whatever the top class
    unsure = {**heard, "class": "firework", "probability": 0.45,
              "extra": {"probabilities": {"gunshot": 0.35, "firework": 0.45, "other": 0.2}}}
    assert should_alert(unsure, threshold=0.3) and not should_alert(unsure, threshold=0.4)


def test_incidents_and_map_commands(tmp_path, capsys):
    db = tmp_path / "shotline.sqlite"
    store = Store(db)
    store.upsert_sensor("S01", position_llh=(40.45, -79.985, 280.0))
    store.upsert_sensor("S02", position_llh=(40.455, -79.975, 280.0))
    inc = record_incident(store, {**BASE, "uid": "ev-1", "extra": {"truth_id": "G1"}})
    record_incident(store, {**BASE, "uid": "ev-2", "time_utc_s": BASE["time_utc_s"] + 60})
    store.close()
    assert main(["incidents", "--db", str(db), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["uid"] for r in rows] == ["ev-1", "ev-2"]
    assert main(["incidents", "--db", str(db), "--set-status", str(inc["id"]), "dismissed",
                 "--by", "ann", "--note", "fireworks"]) == 0
    assert "dismissed" in capsys.readouterr().out
    assert main(["incidents", "--db", str(db), "--set-status", str(inc["id"]), "new"]) == 2
    assert "--by" in capsys.readouterr().err
    assert main(["incidents", "--db", str(db), "--audit", str(inc["id"]), "--json"]) == 0
    trail = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [t["new_status"] for t in trail] == ["new", "dismissed"]
    assert main(["incidents", "--db", str(db), "--status", "new", "--geojson",
                 str(tmp_path / "i.geojson")]) == 0
    fc = json.loads((tmp_path / "i.geojson").read_text())
    assert [f["id"] for f in fc["features"]] == ["ev-2", "ev-2/ellipse95"]
    assert main(["incidents", "--db", str(tmp_path / "none.sqlite")]) == 2
    capsys.readouterr()

    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"sensors": [], "sources": [
        {"id": "G1", "position_llh": [40.4521, -79.9801, 280.0], "is_gunshot": True}]}))
    png = tmp_path / "map.png"
    assert main(["map", "--db", str(db), "--truth", str(truth), "--out", str(png), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"out": str(png), "sensors": 2, "incidents": 2, "truth": 1}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


# -- grouping located events into incidents, and raising their alerts -----------------
FRAME = LocalFrame(40.45, -79.98, 0.0)


def _event(eid, t, e_m, n_m, n_sensors=5, major=3.0, sensors=("S1", "S2", "S3", "S4")):
    lat, lon, alt = FRAME.to_llh([e_m, n_m, 0.0]).tolist()
    return {"event_id": eid, "id": 100 + eid, "t_emit_utc_s": t, "position_llh": [lat, lon, alt],
            "n_sensors": n_sensors, "ellipse95_m": {"major": major, "minor": 1.0,
                                                    "azimuth_deg": 10.0},
            "sensors": [{"sensor": s} for s in sensors]}


def test_bursts_group_by_time_and_place_and_close_after_the_decision_time():
    from shotline.incidents import BurstGrouper

    g = BurstGrouper(FRAME, gap_s=2.0, radius_m=200.0, decision_s=3.0)
    g.push(_event(1, 100.0, 0, 0))
    g.push(_event(2, 100.3, 2, 1))          # same burst
    g.push(_event(3, 100.6, 500, 0))        # same time, another place
    g.push(_event(2, 100.3, 1, 1, n_sensors=6))   # a revision replaces, does not add
    assert g.tick(104.9) == []              # 100.6 + 2 + 3 not yet passed
    done = g.tick(105.5)
    assert [[e["event_id"] for e in grp] for grp in done] == [[1, 2]]
    assert done[0][1]["n_sensors"] == 6
    g.push(_event(2, 100.3, 1, 1, n_sensors=7))   # revision of a closed incident: ignored
    g.push(_event(4, 102.5, 500, 0))       # within 2 s of event 3: joins it
    assert [[e["event_id"] for e in grp] for grp in g.flush()] == [[3, 4]]
    assert g.flush() == []


def test_a_burst_is_located_where_its_shots_agree():
    from shotline.incidents import burst_fix, incident_from_events

    shots = [_event(i, 100 + 0.2 * i, 10 + 0.5 * i, 20, n_sensors=5) for i in range(4)]
    phantoms = [_event(9, 100.5, 120, -60, n_sensors=8, major=1.0),
                _event(10, 100.7, -90, 80, n_sensors=8)]
    best = burst_fix(shots + phantoms, FRAME, agree_m=20.0)
    assert best["event_id"] in range(4)
    inc = incident_from_events(shots + phantoms, FRAME, uid_prefix="t", extra={"k": 1})
    assert inc["n_shots"] == 6 and inc["time_utc_s"] == 100.0
    assert inc["uid"] == "t-1970-01-01T000140000Z-0"
    assert inc["sensors"] == ["S1", "S2", "S3", "S4"] and inc["extra"] == {"k": 1}
    assert inc["ellipse_major_m"] == 3.0 and inc["event_id"] == best["id"]


def test_alerter_writes_a_cap_file_and_enqueues_one_webhook_per_incident(tmp_path):
    from alerts_helpers import check_cap12
    from shotline.alerts.dispatch import Alerter
    from shotline.alerts.webhook import WebhookOutbox

    store = _store(tmp_path)
    inc = record_incident(store, {**BASE, "uid": "ev-9"})
    outbox = WebhookOutbox(store, "http://127.0.0.1:9/x")
    alerter = Alerter(cap_dir=tmp_path / "cap", outbox=outbox, cap_status="Test",
                      clock=lambda: BASE["time_utc_s"] + 3)
    made = alerter.alert(inc)
    again = alerter.alert(inc)
    root = check_cap12((tmp_path / "cap" / "ev-9.xml").read_text())
    assert made["cap"] == str(tmp_path / "cap" / "ev-9.xml")
    assert root.find("{urn:oasis:names:tc:emergency:cap:1.2}status").text == "Test"
    assert made["webhook"] == again["webhook"] and len(outbox.pending()) == 1
    assert json.loads(outbox.pending()[0]["body"])["properties"]["uid"] == "ev-9"


def test_dismissing_an_alerted_incident_writes_a_cap_cancel_referring_to_the_alert(tmp_path):
    from alerts_helpers import check_cap12
    from shotline.alerts.cap import read_message
    from shotline.alerts.dispatch import Alerter

    db = tmp_path / "shotline.sqlite"
    store = Store(db)
    inc = record_incident(store, {**BASE, "uid": "ev-7"})
    other = record_incident(store, {**BASE, "uid": "ev-8"})
    Alerter(cap_dir=tmp_path, cap_status="Exercise", note="drill",
            clock=lambda: BASE["time_utc_s"] + 2).alert(inc)
    store.close()
    original = read_message((tmp_path / "ev-7.xml").read_text())
    assert original["status"] == "Exercise" and original["msg_type"] == "Alert"
    assert main(["incidents", "--db", str(db), "--set-status", str(inc["id"]), "dismissed",
                 "--by", "ann", "--cap-dir", str(tmp_path)]) == 0
    cancel = read_message((tmp_path / "ev-7-cancel.xml").read_text())
    root = check_cap12((tmp_path / "ev-7-cancel.xml").read_text())
    assert cancel["msg_type"] == "Cancel" and cancel["status"] == "Exercise"
    assert root.findtext("{urn:oasis:names:tc:emergency:cap:1.2}references") == \
        f"{original['sender']},{original['identifier']},2026-07-04T23:00:02+00:00"
    assert main(["incidents", "--db", str(db), "--set-status", str(inc["id"]), "dispatched",
                 "--by", "bob", "--cap-dir", str(tmp_path)]) == 0
    assert read_message((tmp_path / "ev-7-update.xml").read_text())["msg_type"] == "Update"
    # No alert to follow up: refused before the status changes.
    assert main(["incidents", "--db", str(db), "--set-status", str(other["id"]), "reviewed",
                 "--by", "ann", "--cap-dir", str(tmp_path)]) == 2
    with Store(db) as store:
        assert get_incident(store, other["id"])["status"] == "new"


def test_too_few_sensors_are_recorded_but_not_alerted(tmp_path):
    four = {**BASE, "uid": "ev-4", "sensors": ["S01", "S02", "S03", "S04"]}
    assert should_alert(four, min_sensors=4) and not should_alert(four, min_sensors=5)
    assert MIN_ALERT_SENSORS == 5 and not should_alert(four)  # the collector's and demo's policy
    assert not should_alert({**four, "class": "gunshot", "probability": 0.99}, min_sensors=5)
    store = _store(tmp_path)
    assert record_incident(store, four, min_sensors=5)["alert"] is False
    assert record_incident(store, {**four, "uid": "ev-5", "sensors": ["a", "b", "c", "d", "e"]},
                           min_sensors=5)["alert"] is True
