"""Incidents: located events a person reviews, with an audit trail.

An incident is one located impulsive event (a shot or a burst) in the shared
SQLite store (:class:`shotline.store.Store`, tables from its migration
"incidents, incident audit trail, webhook outbox").  Its life:

    new -> reviewed -> dispatched | dismissed    (any change allowed, never silently)

Every status change, including creation, appends a row to ``incident_audit``
(time, old and new status, who, note); rows are never updated or deleted.

An incident dict has:

- ``id`` (int), ``uid`` (str, stable: same event -> same uid, so recording it
  twice stores it once), ``event_id`` (the store's event row or None);
- ``time_utc_s`` (emission time, POSIX s), ``lat_deg``, ``lon_deg``, ``alt_m``;
- ``ellipse_major_m``, ``ellipse_minor_m`` (95 % semi-axes, m),
  ``ellipse_azimuth_deg`` (major axis, clockwise from north);
- ``sensors`` (list of sensor ids used), ``n_shots`` (impulses in the burst);
- optional ``class``, ``probability`` (0..1, of that class) and ``reasons``
  (list of str) from the classifier (every class's probability, when known,
  in ``extra["probabilities"]``);
- ``alert`` (bool: passed the alert threshold, see :func:`should_alert`),
  ``status``, ``created_utc_s``, ``updated_utc_s``, ``extra`` (dict).
"""
import json
import math
import time

STATUSES = ("new", "reviewed", "dismissed", "dispatched")

# The incident policy the collector and the demo use (their CLI defaults).
BURST_GAP_S = 2.0          # located events at one place closer than this in time: one incident
BURST_RADIUS_M = 200.0     # ... and closer than this in space (a burst's echoes can make
                           # phantom fixes ~100 m off; a dispatcher wants one incident)
MIN_ALERT_SENSORS = 5      # fewer: recorded for review, not alerted (see should_alert)
ALERT_CLASS = "gunshot"
UNKNOWN_CLASS = "unknown"   # no usable model, or the classifier failed on the event

MIGRATION = ("incidents, incident audit trail, webhook outbox", """
CREATE TABLE incidents (
    id             INTEGER PRIMARY KEY,
    uid            TEXT NOT NULL UNIQUE,
    event_id       INTEGER REFERENCES events(id),
    time_utc_s     REAL NOT NULL,
    lat_deg        REAL NOT NULL,
    lon_deg        REAL NOT NULL,
    alt_m          REAL,
    ellipse_major_m REAL,
    ellipse_minor_m REAL,
    ellipse_azimuth_deg REAL,
    sensors        TEXT NOT NULL,
    n_shots        INTEGER NOT NULL DEFAULT 1,
    class          TEXT,
    probability    REAL,
    reasons        TEXT,
    alert          INTEGER NOT NULL DEFAULT 1,
    status         TEXT NOT NULL DEFAULT 'new'
                   CHECK (status IN ('new', 'reviewed', 'dismissed', 'dispatched')),
    created_utc_s  REAL NOT NULL,
    updated_utc_s  REAL NOT NULL,
    extra          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX incidents_time ON incidents (time_utc_s);
CREATE TABLE incident_audit (
    id             INTEGER PRIMARY KEY,
    incident_id    INTEGER NOT NULL REFERENCES incidents(id),
    time_utc_s     REAL NOT NULL,
    old_status     TEXT,
    new_status     TEXT NOT NULL,
    by             TEXT NOT NULL,
    note           TEXT
);
CREATE INDEX incident_audit_incident ON incident_audit (incident_id, id);
CREATE TABLE webhook_outbox (
    id             INTEGER PRIMARY KEY,
    url            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body           BLOB NOT NULL,
    content_type   TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_attempt_utc_s REAL NOT NULL,
    delivered_utc_s REAL,
    gave_up_utc_s  REAL,
    last_error     TEXT,
    created_utc_s  REAL NOT NULL,
    UNIQUE (url, idempotency_key)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (delivered_utc_s, gave_up_utc_s,
                                                    next_attempt_utc_s);
""")


class IncidentError(ValueError):
    """An incident record or status change that cannot be accepted."""


def should_alert(incident, threshold=0.5, min_sensors=MIN_ALERT_SENSORS):
    """Alert (True) or record only (False).

    An incident heard by fewer than ``min_sensors`` sensors is recorded only
    (with 4 sensors a 2-D fix has one redundant arrival: too few to notice a
    wrong association).  Otherwise, with no classification (no class, or
    class ``unknown``: no usable model, or the classifier failed) every
    located event alerts (a person reviews it: a broken model must not
    silence gunfire); with one, only ``p(gunshot) >= threshold`` does:
    ``extra["probabilities"]["gunshot"]`` when the classifier gave every
    class's probability, else ``probability`` if the class is ``gunshot``.
    """
    if len(incident.get("sensors") or ()) < min_sensors:
        return False
    cls = incident.get("class")
    if cls is None or cls == UNKNOWN_CLASS:
        return True
    probabilities = (incident.get("extra") or {}).get("probabilities") or {}
    if ALERT_CLASS in probabilities:
        p = probabilities[ALERT_CLASS]
    else:
        p = incident.get("probability") if cls == ALERT_CLASS else 0.0
    return float(p or 0.0) >= threshold


def _finite(value, name, required=True):
    if value is None:
        if required:
            raise IncidentError(f"incident lacks {name}")
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise IncidentError(f"incident {name} is not a number: {value!r}") from None
    if not math.isfinite(value):
        raise IncidentError(f"incident {name} is not finite: {value!r}")
    return value


def _decode(row):
    row = dict(row)
    row["sensors"] = json.loads(row["sensors"])
    row["reasons"] = json.loads(row["reasons"]) if row["reasons"] is not None else None
    row["extra"] = json.loads(row["extra"])
    row["alert"] = bool(row["alert"])
    return row


def record_incident(store, incident, *, threshold=0.5, min_sensors=MIN_ALERT_SENSORS, by="shotline",
                    now_utc_s=None):
    """Store a located event as an incident (status ``new``); returns the incident dict.

    ``incident`` has the fields in the module docstring (``uid``,
    ``time_utc_s``, ``lat_deg`` and ``lon_deg`` required).  Recording the same
    ``uid`` again returns the stored incident unchanged.
    """
    uid = str(incident.get("uid") or "")
    if not uid or any(c in uid for c in " ,<&\"'"):
        raise IncidentError(f"incident uid must be non-empty without spaces, commas, <, &, "
                            f"quotes: {uid!r}")
    lat = _finite(incident.get("lat_deg"), "lat_deg")
    lon = _finite(incident.get("lon_deg"), "lon_deg")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise IncidentError(f"incident position out of range: {lat}, {lon}")
    prob = _finite(incident.get("probability"), "probability", required=False)
    if prob is not None and not 0.0 <= prob <= 1.0:
        raise IncidentError(f"probability must be within 0..1, got {prob}")
    now = time.time() if now_utc_s is None else float(now_utc_s)
    alert = incident.get("alert")
    alert = should_alert(incident, threshold, min_sensors) if alert is None else bool(alert)
    row = (uid, incident.get("event_id"), _finite(incident.get("time_utc_s"), "time_utc_s"),
           lat, lon, _finite(incident.get("alt_m"), "alt_m", False),
           _finite(incident.get("ellipse_major_m"), "ellipse_major_m", False),
           _finite(incident.get("ellipse_minor_m"), "ellipse_minor_m", False),
           _finite(incident.get("ellipse_azimuth_deg"), "ellipse_azimuth_deg", False),
           json.dumps([str(s) for s in incident.get("sensors") or ()]),
           int(incident.get("n_shots") or 1), incident.get("class"), prob,
           None if incident.get("reasons") is None else json.dumps(list(incident["reasons"])),
           int(alert), now, now, json.dumps(incident.get("extra") or {}, allow_nan=False))
    with store.transaction() as db:
        cur = db.execute(
            """INSERT INTO incidents (uid, event_id, time_utc_s, lat_deg, lon_deg, alt_m,
                   ellipse_major_m, ellipse_minor_m, ellipse_azimuth_deg, sensors, n_shots,
                   class, probability, reasons, alert, created_utc_s, updated_utc_s, extra)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT (uid) DO NOTHING""", row)
        if cur.rowcount == 1:
            db.execute("""INSERT INTO incident_audit (incident_id, time_utc_s, old_status,
                              new_status, by, note) VALUES (?,?,?,?,?,?)""",
                       (cur.lastrowid, now, None, "new", by, "located"))
    return get_incident(store, uid=uid)


def get_incident(store, incident_id=None, *, uid=None):
    """One incident by id or uid; raises ``IncidentError`` if there is none."""
    if uid is not None:
        rows = store.query("SELECT * FROM incidents WHERE uid=?", (str(uid),))
    else:
        rows = store.query("SELECT * FROM incidents WHERE id=?", (int(incident_id),))
    if not rows:
        raise IncidentError(f"no incident {uid if uid is not None else incident_id}")
    return _decode(rows[0])


def list_incidents(store, *, status=None, since_utc_s=None):
    """Incidents, oldest first, optionally only one status or since a time."""
    sql, params = "SELECT * FROM incidents WHERE 1", []
    if status is not None:
        if status not in STATUSES:
            raise IncidentError(f"status must be one of {', '.join(STATUSES)}")
        sql += " AND status=?"
        params.append(status)
    if since_utc_s is not None:
        sql += " AND time_utc_s>=?"
        params.append(float(since_utc_s))
    return [_decode(r) for r in store.query(sql + " ORDER BY time_utc_s, id", params)]


def set_status(store, incident_id, status, *, by, note=None, now_utc_s=None):
    """Change an incident's status and append the change to its audit trail."""
    if status not in STATUSES:
        raise IncidentError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    by = (by or "").strip()
    if not by:
        raise IncidentError("a status change needs the name of who made it (--by)")
    now = time.time() if now_utc_s is None else float(now_utc_s)
    with store.transaction() as db:
        row = db.execute("SELECT status FROM incidents WHERE id=?", (int(incident_id),)).fetchone()
        if row is None:
            raise IncidentError(f"no incident {incident_id}")
        old = row["status"] if isinstance(row, dict) else row[0]
        if old == status:
            raise IncidentError(f"incident {incident_id} is already {status}")
        db.execute("UPDATE incidents SET status=?, updated_utc_s=? WHERE id=?",
                   (status, now, int(incident_id)))
        db.execute("""INSERT INTO incident_audit (incident_id, time_utc_s, old_status,
                          new_status, by, note) VALUES (?,?,?,?,?,?)""",
                   (int(incident_id), now, old, status, by, note))
    return get_incident(store, incident_id)


def audit_trail(store, incident_id):
    """Status changes of one incident, oldest first."""
    return store.query("SELECT * FROM incident_audit WHERE incident_id=? ORDER BY id",
                       (int(incident_id),))


# -- from located events to incidents ---------------------------------------------------
def _major_m(event):
    v = (event.get("ellipse95_m") or {}).get("major")
    return float(v) if v is not None and math.isfinite(v) else 1e3


def _distance_m(frame, llh_a, llh_b):
    a = frame.to_enu([llh_a[0], llh_a[1], 0.0])
    b = frame.to_enu([llh_b[0], llh_b[1], 0.0])
    return math.hypot(a[0] - b[0], a[1] - b[1])


def burst_fix(events, frame, agree_m=20.0):
    """The event that locates a burst: the one most of the burst agrees with
    (other events within ``agree_m`` metres), then the one the most sensors
    heard, then the smallest ellipse.  Echoes in a fast burst make scattered
    phantom fixes; the real shots pile up on one spot."""
    def support(e):
        return sum(_distance_m(frame, e["position_llh"], o["position_llh"]) <= agree_m
                   for o in events)
    return max(events, key=lambda e: (support(e), e.get("n_sensors", 0), -_major_m(e)))


class BurstGrouper:
    """Located events -> incidents: one shot, or a burst at one place.

    Events are dicts as the collector stores them (``event_id``,
    ``t_emit_utc_s``, ``position_llh``, ``n_sensors``, ``ellipse95_m``,
    ``sensors``); a revision replaces the earlier one of its ``event_id``.  An
    event joins an open group when it is within ``gap_s`` of the group's last
    shot and ``radius_m`` of one of its fixes.  ``tick(stream_s)`` returns the
    groups the stream clock has passed by ``gap_s + decision_s``
    (``decision_s``: how long association may take to decide an event);
    revisions of events in a returned group are ignored.  Not thread-safe.
    """

    def __init__(self, frame, *, gap_s=BURST_GAP_S, radius_m=BURST_RADIUS_M, decision_s=0.0):
        self.frame, self.gap_s, self.radius_m = frame, float(gap_s), float(radius_m)
        self.decision_s = float(decision_s)
        self.open = []
        self._closed_ids = set()

    def push(self, event):
        eid = event["event_id"]
        if eid in self._closed_ids:
            return
        for group in self.open:
            for k, e in enumerate(group):
                if e["event_id"] == eid:
                    group[k] = event
                    return
        for group in self.open:
            last = max(e["t_emit_utc_s"] for e in group)
            if event["t_emit_utc_s"] - last <= self.gap_s and min(
                    _distance_m(self.frame, event["position_llh"], e["position_llh"])
                    for e in group) <= self.radius_m:
                group.append(event)
                return
        self.open.append([event])

    def tick(self, stream_s):
        """Groups finished by stream time ``stream_s`` (POSIX s), oldest first."""
        wait = self.gap_s + self.decision_s
        done = [g for g in self.open if stream_s - max(e["t_emit_utc_s"] for e in g) > wait]
        self.open = [g for g in self.open if not any(g is d for d in done)]
        for g in done:
            self._closed_ids.update(e["event_id"] for e in g)
        return sorted(done, key=lambda g: min(e["t_emit_utc_s"] for e in g))

    def flush(self):
        return self.tick(math.inf)


def incident_from_events(events, frame, *, uid_prefix="ev", agree_m=20.0, extra=None):
    """A group of located events -> the incident dict for :func:`record_incident`.

    Time: the first shot's emission; position and ellipse: :func:`burst_fix`;
    sensors: every sensor that took part; ``n_shots``: the number of events.
    """
    first = min(events, key=lambda e: e["t_emit_utc_s"])
    best = burst_fix(events, frame, agree_m)
    lat, lon, alt = best["position_llh"]
    from shotline.timeutil import format_utc

    stamp = format_utc(first["t_emit_utc_s"], 3).replace(":", "").replace(".", "")
    ellipse = best.get("ellipse95_m") or {}
    return {
        "uid": f"{uid_prefix}-{stamp}-{first['event_id']}",
        "event_id": best.get("id"), "time_utc_s": float(first["t_emit_utc_s"]),
        "lat_deg": float(lat), "lon_deg": float(lon), "alt_m": float(alt),
        "ellipse_major_m": ellipse.get("major"), "ellipse_minor_m": ellipse.get("minor"),
        "ellipse_azimuth_deg": ellipse.get("azimuth_deg"),
        "sensors": sorted({s["sensor"] if isinstance(s, dict) else str(s)
                           for e in events for s in e.get("sensors") or ()}),
        "n_shots": len(events), "extra": dict(extra or {}),
    }
