"""Alert formats (GeoJSON, CAP 1.2) and webhook delivery (retries, idempotency, outbox)."""
import json
import math
import socket
import threading
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from shotline.alerts.cap import CAP_NS, cap_alert, cap_time
from shotline.alerts.geojson import ellipse_feature, feature_collection, incident_feature
from shotline.alerts.webhook import WebhookOutbox, alert_key
from shotline.geo import LocalFrame
from shotline.store import Store
from shotline.timeutil import parse_utc

from alerts_helpers import CapError, Receiver, check_cap12

T_SHOT = parse_utc("2026-07-04T23:31:04.250Z")
INCIDENT = {"id": 3, "uid": "ev-20260704T233104-0001", "time_utc_s": T_SHOT,
            "lat_deg": 40.45231, "lon_deg": -79.98012, "alt_m": 280.0,
            "ellipse_major_m": 42.0, "ellipse_minor_m": 12.5, "ellipse_azimuth_deg": 30.0,
            "sensors": ["S01", "S02", "S05", "S06"], "n_shots": 4, "status": "new",
            "alert": True}
CLASSIFIED = {**INCIDENT, "class": "gunshot", "probability": 0.93,
              "reasons": ["fast rise", "burst rhythm"]}


def _find(root, path):
    return root.find("/".join(f"{{{CAP_NS}}}{p}" for p in path.split("/")))


@pytest.mark.parametrize("incident", [INCIDENT, CLASSIFIED,
                                      {**INCIDENT, "ellipse_major_m": None},
                                      {**CLASSIFIED, "class": "firework", "probability": 0.8}])
def test_cap_alert_has_the_cap_1_2_structure(incident):
    xml = cap_alert(incident, sender="shotline@example.org", sent_utc_s=T_SHOT + 1.7,
                    status="Exercise", note="Simulated night")
    root = check_cap12(xml)
    assert xml.startswith("<?xml") and root.tag == f"{{{CAP_NS}}}alert"
    assert _find(root, "identifier").text == f"shotline-{incident['uid']}"
    # Whole seconds, +00:00, never Z or a fraction.
    assert _find(root, "sent").text == "2026-07-04T23:31:05+00:00"
    assert _find(root, "info/onset").text == "2026-07-04T23:31:04+00:00"
    assert "Z" not in _find(root, "sent").text
    circle = _find(root, "info/area/circle").text
    lat, rest = circle.split(",")
    lon, radius_km = rest.split(" ")
    assert float(lat) == pytest.approx(incident["lat_deg"], abs=1e-6)
    assert float(lon) == pytest.approx(incident["lon_deg"], abs=1e-6)
    major = incident["ellipse_major_m"]
    assert float(radius_km) == pytest.approx(major / 1000 if major else 0.05, abs=1e-3)
    params = {p[0].text: p[1].text for p in root.iter(f"{{{CAP_NS}}}parameter")}
    assert params["shotline:n_shots"] == "4"
    assert params.get("shotline:probability") == (
        str(incident["probability"]) if "probability" in incident else None)
    event = _find(root, "info/event").text
    assert event == {None: "Possible gunfire", "gunshot": "Gunfire",
                     "firework": "Impulsive sound"}[incident.get("class")]


def test_cap_polygon_is_the_ellipse_and_cancel_refers_to_the_alert():
    first = cap_alert(INCIDENT, sent_utc_s=T_SHOT + 2)
    root = check_cap12(first)
    frame = LocalFrame(INCIDENT["lat_deg"], INCIDENT["lon_deg"], 0)
    points = [tuple(map(float, p.split(","))) for p in _find(root, "info/area/polygon").text.split()]
    enu = frame.to_enu([[la, lo, 0] for la, lo in points])
    r = np.hypot(enu[:, 0], enu[:, 1])
    assert r.max() == pytest.approx(42.0, rel=0.01) and r.min() == pytest.approx(12.5, rel=0.03)
    far = enu[np.argmax(r)]
    assert math.degrees(math.atan2(far[0], far[1])) % 180 == pytest.approx(30.0, abs=8)
    cancel = cap_alert({**INCIDENT, "status": "dismissed"}, sent_utc_s=T_SHOT + 60,
                       msg_type="Cancel",
                       references=[("shotline@localhost", f"shotline-{INCIDENT['uid']}",
                                    T_SHOT + 2)])
    root = check_cap12(cancel)
    assert _find(root, "references").text == \
        f"shotline@localhost,shotline-{INCIDENT['uid']},2026-07-04T23:31:06+00:00"
    assert _find(root, "identifier").text.endswith("-cancel")
    reviewed = check_cap12(cap_alert({**INCIDENT, "status": "reviewed"}, sent_utc_s=T_SHOT))
    assert _find(reviewed, "info/certainty").text == "Observed"


@pytest.mark.parametrize("mutate", [
    lambda x: x.replace("+00:00</sent>", "Z</sent>"),
    lambda x: x.replace(":05+00:00</sent>", ":05.25+00:00</sent>"),
    lambda x: x.replace(CAP_NS, "urn:oasis:names:tc:emergency:cap:1.1"),
    lambda x: x.replace("<category>Security</category>", ""),
    lambda x: x.replace("<status>Exercise</status>", "<status>Simulated</status>"),
    lambda x: x.replace("<urgency>Immediate</urgency>", "").replace(
        "<event>", "<urgency>Immediate</urgency><event>"),
])
def test_the_cap_checker_catches_broken_messages(mutate):
    xml = cap_alert(INCIDENT, sent_utc_s=T_SHOT + 1, status="Exercise")
    check_cap12(xml)
    with pytest.raises((CapError, ET.ParseError)):
        check_cap12(mutate(xml))


def test_cap_time_and_sender_rules():
    assert cap_time(0.999) == "1970-01-01T00:00:00+00:00"
    assert cap_time(parse_utc("2026-01-02T03:04:05.999Z")) == "2026-01-02T03:04:05+00:00"
    with pytest.raises(ValueError, match="sender"):
        cap_alert(INCIDENT, sender="shot line", sent_utc_s=T_SHOT)


def test_geojson_points_and_ellipses():
    fc = feature_collection([CLASSIFIED, {**INCIDENT, "uid": "b", "ellipse_major_m": None}])
    json.dumps(fc, allow_nan=False)
    points = [f for f in fc["features"] if f["geometry"]["type"] == "Point"]
    polys = [f for f in fc["features"] if f["geometry"]["type"] == "Polygon"]
    assert len(points) == 2 and len(polys) == 1
    p = points[0]
    assert p["geometry"]["coordinates"] == [-79.98012, 40.45231, 280.0]  # lon, lat, alt
    props = p["properties"]
    assert props["time_utc"] == "2026-07-04T23:31:04.250000Z"
    assert props["class"] == "gunshot" and props["probability"] == 0.93
    assert props["n_sensors"] == 4 and props["n_shots"] == 4
    assert props["ellipse95_m"] == {"major": 42.0, "minor": 12.5, "azimuth_deg": 30.0}
    assert "class" not in points[1]["properties"]
    ring = polys[0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 37
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:]))
    assert area > 0                                   # counter-clockwise (RFC 7946)
    frame = LocalFrame(40.45231, -79.98012, 0)
    enu = frame.to_enu([[la, lo, 0] for lo, la in ring])
    assert np.hypot(enu[:, 0], enu[:, 1]).max() == pytest.approx(42.0, rel=0.01)
    assert ellipse_feature({**INCIDENT, "ellipse_major_m": None}) is None
    assert incident_feature(INCIDENT)["id"] == INCIDENT["uid"]


# -- webhook ------------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeClock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_webhook_survives_a_receiver_that_is_down_and_a_host_restart(tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/alerts"
    clock = FakeClock()
    db = tmp_path / "shotline.sqlite"
    store = Store(db)
    box = WebhookOutbox(store, url, base_delay_s=2.0, max_delay_s=60.0, timeout_s=2.0,
                        clock=clock)
    key = alert_key(INCIDENT)
    assert box.enqueue(incident_feature(INCIDENT), key) == (1, True)
    assert box.enqueue(incident_feature(INCIDENT), key) == (1, False)   # same alert, stored once
    waits = []
    for attempt in range(1, 5):                                         # receiver down
        (result,) = box.deliver_due()
        assert result["outcome"] == "retry" and result["attempts"] == attempt
        assert result["http_status"] is None and result["error"]
        waits.append(box.next_due_utc_s() - clock.t)
        assert box.deliver_due() == []                                  # not due yet
        clock.t += waits[-1]
    for n, w in enumerate(waits, start=1):                              # capped exponential
        full = min(60.0, 2.0 * 2 ** (n - 1))
        assert full / 2 <= w <= full
    store.close()

    receiver = Receiver(port)                                           # receiver back up,
    try:
        store = Store(db)                                               # host restarted
        box = WebhookOutbox(store, url, clock=clock)
        assert len(box.pending()) == 1
        (result,) = box.deliver_due()
        assert result["outcome"] == "delivered" and result["attempts"] == 5
        assert box.pending() == [] and box.deliver_due() == []
        assert list(receiver.records) == [key]
        assert json.loads(receiver.records[key])["properties"]["uid"] == INCIDENT["uid"]
        store.close()
    finally:
        receiver.close()


def test_lost_acknowledgement_is_retried_and_recorded_once(tmp_path):
    receiver = Receiver()
    receiver.fail_next = 2            # records the alert, but the 200 never arrives twice
    try:
        store = Store(tmp_path / "s.sqlite")
        clock = FakeClock()
        box = WebhookOutbox(store, receiver.url, base_delay_s=1.0, clock=clock)
        keys = [alert_key({"uid": f"u{i}"}) for i in range(3)]
        for k in keys:
            box.enqueue({"uid": k}, k)
        outcomes = []
        for _ in range(5):
            outcomes += [r["outcome"] for r in box.deliver_due()]
            clock.t += 100.0
        assert outcomes.count("delivered") == 3 and outcomes.count("retry") == 2
        assert receiver.requests == 5
        assert sorted(receiver.records) == sorted(keys)                 # each alert once
    finally:
        receiver.close()


def test_refused_messages_give_up_and_retry_after_is_respected(tmp_path):
    calls = []

    def fake_post(url, body, *, idempotency_key, content_type, timeout_s):
        calls.append(idempotency_key)
        return {"bad": (400, None), "busy": (503, 30.0), "flaky": (500, None)}[idempotency_key]

    clock = FakeClock()
    box = WebhookOutbox(Store(":memory:"), "http://receiver.invalid/x", base_delay_s=1.0,
                        max_attempts=3, clock=clock, post=fake_post)
    for k in ("bad", "busy", "flaky"):
        box.enqueue(b"{}", k)
    results = {r["key"]: r for r in box.deliver_due()}
    assert results["bad"]["outcome"] == "gave_up" and results["bad"]["http_status"] == 400
    assert results["busy"]["outcome"] == "retry"
    rows = {r["idempotency_key"]: r for r in box.rows()}
    assert rows["busy"]["next_attempt_utc_s"] - clock.t == pytest.approx(30.0)
    assert rows["bad"]["last_error"] == "HTTP 400"
    clock.t += 1000
    box.deliver_due()
    clock.t += 1000
    final = {r["key"]: r["outcome"] for r in box.deliver_due()}
    assert final == {"busy": "gave_up", "flaky": "gave_up"}            # after max_attempts
    assert box.pending() == [] and calls.count("bad") == 1
    with pytest.raises(ValueError, match="http"):
        WebhookOutbox(Store(":memory:"), "ftp://x")


def test_drain_delivers_once_the_receiver_comes_up_in_real_time(tmp_path):
    port = _free_port()
    store = Store(tmp_path / "s.sqlite")
    box = WebhookOutbox(store, f"http://127.0.0.1:{port}/a", base_delay_s=0.05,
                        max_delay_s=0.4, timeout_s=1.0)
    box.enqueue({"n": 1}, "k1")
    holder = {}
    starter = threading.Timer(0.6, lambda: holder.setdefault("r", Receiver(port)))
    starter.start()
    try:
        t0 = time.monotonic()
        assert box.drain(timeout_s=10.0)
        assert time.monotonic() - t0 >= 0.5
        assert box.rows()[0]["attempts"] >= 2
        assert list(holder["r"].records) == ["k1"]
    finally:
        starter.join()
        if "r" in holder:
            holder["r"].close()


def test_delivery_thread_sends_new_alerts_and_retries_in_the_background(tmp_path):
    from shotline.alerts.webhook import DeliveryThread

    receiver = Receiver()
    receiver.fail_next = 1
    store = Store(tmp_path / "s.sqlite")
    outbox = WebhookOutbox(store, receiver.url, base_delay_s=0.1, max_delay_s=0.2)
    outbox.enqueue({"n": 0}, "left-by-an-earlier-run")
    results = []
    delivery = DeliveryThread(outbox, poll_s=5.0, on_result=results.append).start()
    try:
        time.sleep(0.2)
        outbox.enqueue({"n": 1}, "new")
        delivery.wake()          # sent now, not after poll_s
        deadline = time.monotonic() + 3.0
        while outbox.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not outbox.pending()
    finally:
        assert delivery.stop(drain_s=1.0)
        receiver.close()
    assert sorted(receiver.records) == ["left-by-an-earlier-run", "new"]
    assert [r["outcome"] for r in results] == ["retry", "delivered", "delivered"]
