"""Incidents, classification and alerts in the long-running collector.

End to end: `shotline collect` (a separate process) over five virtual sensors
running the real firmware on ptys, hearing the same shots -> located events
-> incidents (classified, recorded with an audit trail) -> CAP 1.2 files, a
webhook (retried once, recorded once), a GeoJSON file.  And the library
chain (``shotline.incident_pipeline``) with an unusable model.
"""
import json
import logging
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from shotline.alerts.dispatch import Alerter
from shotline.geo import LocalFrame
from shotline.incident_pipeline import IncidentPipeline
from shotline.incidents import audit_trail, list_incidents, set_status
from shotline.store import Store

from alerts_helpers import Receiver, check_cap12

pytestmark = pytest.mark.timeout(90)

ORIGIN = (40.4406, -79.9959, 300.0)
FRAME = LocalFrame(*ORIGIN)
SITES = [(-200, -200, 0), (200, -200, 0), (200, 200, 0), (-200, 200, 0), (20, -40, 0)]
SOURCE_M = np.array([60.0, 30.0, 0.0])
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def run_collect(tmp_path, monkeypatch, *extra, run_s=10.0):
    """Five virtual sensors hear a shot every 3 s from 2.5 s on; the collector runs
    ``run_s`` s, then gets SIGTERM.  Returns (stdout lines, stderr, SIGTERM time)."""
    from shotline.acoustics import speed_of_sound_m_s
    from shotline.virtual import VirtualFleet, VirtualSensor, impulse_audio

    monkeypatch.setenv("SHOTLINE_VIRTUAL_DIR", str(tmp_path / "links"))
    c_m_s = speed_of_sound_m_s(15.0)
    utc0 = time.time()
    vss = []
    for i, site in enumerate(SITES):
        delay_s = np.linalg.norm(np.array(site) - SOURCE_M) / c_m_s
        audio = impulse_audio(period_s=3.0, first_s=2.5 + delay_s, seed=i)
        vss.append(VirtualSensor(f"s{i}", tmp_path / "flash" / f"s{i}", audio=audio,
                                 position_llh=tuple(FRAME.to_llh(site).tolist()), utc0_s=utc0,
                                 crystal_ppm=0.0, seed=i))
    fleet = VirtualFleet(vss, speed=1.0).start()
    proc = subprocess.Popen([sys.executable, "-m", "shotline", "collect", "all",
                             "--store", str(tmp_path / "c.sqlite"), "--origin",
                             ",".join(map(str, ORIGIN)), "--max-range-m", "400", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(run_s)
        stopped_utc_s = time.time()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        fleet.close()
    assert proc.returncode == 0, err
    return out.splitlines(), err, stopped_utc_s


def test_collect_records_classified_incidents_and_alerts_them(tmp_path, monkeypatch, receiver):
    from shotline.classify import default_model

    receiver.fail_next = 1   # the first POST is recorded but answered 503: retried, kept once
    lines, err, stopped_utc_s = run_collect(
        tmp_path, monkeypatch, "--json-incidents", "--alert-threshold", "0",
        "--min-alert-sensors", "4", "--cap-dir", str(tmp_path / "cap"),
        "--webhook", receiver.url, "--geojson", str(tmp_path / "incidents.geojson"))
    lines = [json.loads(line) for line in lines]
    events = [x for x in lines if "event_id" in x]
    incidents = [x["incident"] for x in lines if "incident" in x]
    alerts = [x["alert"] for x in lines if "alert" in x]
    assert len(events) + len(incidents) + len(alerts) == len(lines)   # nothing else on stdout
    assert all("incident" not in e and "position_llh" in e for e in events)  # unchanged lines
    assert len(incidents) >= 2, err
    classes = default_model()["classes"]
    for inc in incidents:
        east, north, _ = FRAME.to_enu((inc["lat_deg"], inc["lon_deg"], inc["alt_m"])).tolist()
        assert abs(east - SOURCE_M[0]) < 3.0 and abs(north - SOURCE_M[1]) < 3.0, inc
        assert inc["class"] in classes and 0.0 <= inc["probability"] <= 1.0
        assert set(inc["extra"]["probabilities"]) == set(classes)
        assert inc["alert"] and len(inc["sensors"]) >= 4 and inc["n_shots"] == 1, json.dumps(inc)
    # the first shot's incident was closed while the collector ran, not at its exit
    assert incidents[0]["created_utc_s"] < stopped_utc_s

    with Store(tmp_path / "c.sqlite", readonly=True) as store:
        stored = list_incidents(store)
        assert [i["uid"] for i in stored] == [i["uid"] for i in incidents]
        assert all(audit_trail(store, i["id"])[0]["by"] == "collect" for i in stored)
        outbox = store.query("SELECT * FROM webhook_outbox")
    assert sorted(a["uid"] for a in alerts) == sorted(i["uid"] for i in incidents)
    for a in alerts:
        root = check_cap12(open(a["cap"]).read())
        assert root.find(f"{CAP}status").text == "Actual"
    assert len(list((tmp_path / "cap").glob("*.xml"))) == len(alerts)
    # webhook: each alert delivered, recorded once by its Idempotency-Key, one retry
    assert len(outbox) == len(alerts) and all(r["delivered_utc_s"] for r in outbox)
    assert len(receiver.records) == len(alerts) and receiver.requests == len(alerts) + 1
    body = json.loads(receiver.records[f"shotline-{incidents[0]['uid']}-alert"])
    assert body["properties"]["class"] == incidents[0]["class"]
    fc = json.loads((tmp_path / "incidents.geojson").read_text())
    assert sorted(f["id"] for f in fc["features"] if f["geometry"]["type"] == "Point") == \
        sorted(i["uid"] for i in incidents)


def test_collect_with_a_corrupt_model_still_records_and_alerts(tmp_path, monkeypatch):
    model = tmp_path / "model.json"
    model.write_text('{"classes": ["gunshot", ')   # truncated
    lines, err, _ = run_collect(tmp_path, monkeypatch, "--model", str(model),
                                "--alert-threshold", "0.99", "--cap-dir", str(tmp_path / "cap"),
                                "--min-alert-sensors", "4", run_s=5.5)
    said = [line for line in lines if " incident " in line]   # no --json: text lines
    with Store(tmp_path / "c.sqlite", readonly=True) as store:
        incidents = list_incidents(store)
    assert len(incidents) >= 1, err
    for inc in incidents:
        assert inc["class"] == "unknown" and inc["probability"] is None
        assert inc["reasons"][0].startswith("classifier unavailable")
        assert inc["alert"]   # unclassified: a person reviews it, whatever the threshold
    assert len(said) == len(incidents)
    assert all(line.split()[1:3] == ["ALERT", "incident"] and "  unknown  CAP " in line
               for line in said), said
    assert len(list((tmp_path / "cap").glob("*.xml"))) == len(incidents)
    logs = [json.loads(line) for line in err.splitlines()]
    unusable = [r for r in logs if r["msg"].startswith("classifier model unusable")]
    assert len(unusable) == 1 and unusable[0]["level"] == "error"


# -- the library chain ---------------------------------------------------------------
def event_record(store, event_id, t_s, east_m, sensors=("a", "b", "c", "d", "e")):
    lat, lon, alt = FRAME.to_llh([east_m, 0.0, 0.0]).tolist()
    rec = {"event_id": event_id, "revision": 0, "t_emit_utc_s": t_s, "status": "ok",
           "position_llh": [lat, lon, alt], "n_sensors": len(sensors),
           "ellipse95_m": {"major": 5.0, "minor": 3.0, "azimuth_deg": 10.0},
           "sensors": [{"sensor": s} for s in sensors]}
    return dict(rec, id=store.insert_event(rec, [], key=f"test:{event_id}"))


def test_pipeline_without_a_usable_model_records_unknown_and_logs_once(tmp_path, caplog):
    store = Store(tmp_path / "s.sqlite")
    seen = []
    with caplog.at_level(logging.INFO, logger="shotline.incidents"):
        pipeline = IncidentPipeline(store, FRAME, model=tmp_path / "missing.json",
                                    alerter=Alerter(cap_dir=tmp_path / "cap"), threshold=0.9,
                                    min_sensors=5, geojson_path=tmp_path / "i.geojson",
                                    on_incident=seen.append)
        t0 = 1545180600.0
        pipeline.push(event_record(store, 1, t0, 0.0))
        pipeline.push(event_record(store, 2, t0 + 0.5, 5.0))                      # same burst
        pipeline.push(event_record(store, 3, t0 + 10.0, 900.0, sensors="abcd"))   # 4 sensors
        assert pipeline.tick(t0 + 1.0) == []          # the burst may still grow
        first = pipeline.tick(t0 + 3.0)
        rest = pipeline.flush()
    assert [r.incident["n_shots"] for r in first] == [2] and len(rest) == 1
    assert [r.incident["uid"] for r in seen] == [r.incident["uid"] for r in first + rest]
    burst, few = first[0], rest[0]
    assert burst.incident["class"] == few.incident["class"] == "unknown"
    assert burst.incident["alert"] and burst.alert["cap"].endswith(".xml")
    assert not few.incident["alert"] and few.alert is None       # recorded only
    assert len(list_incidents(store)) == 2
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == \
        ["classifier model unusable: incidents get class unknown"]
    # the GeoJSON follows the incidents, also a status change made elsewhere
    assert not pipeline.write_geojson(if_changed=True)
    set_status(store, burst.incident["id"], "dismissed", by="tester")
    assert pipeline.write_geojson(if_changed=True)
    props = [f["properties"] for f in json.loads((tmp_path / "i.geojson").read_text())["features"]
             if f["geometry"]["type"] == "Point"]
    assert [p["status"] for p in props] == ["dismissed", "new"]


def test_pipeline_checks_its_threshold(tmp_path):
    with pytest.raises(ValueError, match="threshold"):
        IncidentPipeline(Store(tmp_path / "s.sqlite"), FRAME, threshold=1.5)


@pytest.mark.parametrize("bad, message", [
    (["--alert-threshold", "1.5"], "--alert-threshold must be within 0..1"),
    (["--min-alert-sensors", "0"], "--min-alert-sensors must be at least 1"),
    (["--webhook", "ftp://example.org/x"], "--webhook must be an http"),
    (["--no-associate", "--cap-dir", "cap"], "--no-associate locates no events"),
])
def test_collect_refuses_alert_options_it_cannot_honour(tmp_path, capsys, bad, message):
    from shotline.cli import main

    assert main(["collect", "--store", str(tmp_path / "c.sqlite"), *bad]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c.sqlite").exists()   # refused before anything was opened
