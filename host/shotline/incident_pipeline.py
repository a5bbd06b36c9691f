"""Located events -> incidents -> classification -> alerts, as one chain.

The collector (``shotline collect``) and the demo both use it::

    pipeline = IncidentPipeline(store, frame, alerter=Alerter(cap_dir="cap"),
                                threshold=0.5, min_sensors=5)
    live = ClockedAssociation(LiveAssociation(...), pipeline)   # ticks the pipeline
    Collector(store, ports, associator=live, on_event=pipeline.push)
    ...
    pipeline.flush()            # after the collector stopped: close the open bursts

For each group of located events at one place (a shot or a burst,
:class:`shotline.incidents.BurstGrouper`) it

1. builds the incident (:func:`shotline.incidents.incident_from_events`);
2. classifies the burst's best fix (``shotline.classify``) with the stored
   triggers of that event: class, calibrated probability of that class,
   top reasons, and every class's probability in ``extra["probabilities"]``;
3. records it with its audit trail (:func:`shotline.incidents.record_incident`),
   deciding alert vs record-only with :func:`shotline.incidents.should_alert`
   (``p(gunshot) >= threshold`` and heard by ``min_sensors``);
4. alerted incidents go to the ``alerter`` (CAP file, webhook outbox);
5. rewrites the GeoJSON file, if one is given, when incidents changed.

A missing or corrupt model never stops the chain: every incident gets class
``unknown`` (the error as its reason), is recorded, and alerts as an
unclassified incident does; the error is logged once.  A classifier failure
on one event does the same for that incident only.

Log records go to the ``shotline.incidents`` logger with a ``fields`` dict.
"""
import dataclasses
import json
import logging
import os
import threading
from pathlib import Path

from shotline.incidents import BURST_GAP_S, BURST_RADIUS_M, MIN_ALERT_SENSORS

log = logging.getLogger("shotline.incidents")


def _log(level, msg, **fields):
    log.log(level, msg, extra={"fields": fields})


@dataclasses.dataclass
class Raised:
    """One new incident: the stored ``incident`` dict, the ``events`` it groups,
    and what ``alert`` made (``{"cap": path, "webhook": outbox row id}``) or None."""

    incident: dict
    events: list
    alert: dict | None


def load_classifier(model=None):
    """``(model, error)``: the loaded model (None = shipped one, a path, or a loaded
    dict), or ``(None, "why not")`` when it is missing or unusable."""
    from shotline.classify import default_model, load_model

    if isinstance(model, dict):
        return model, None
    try:
        return (default_model() if model is None else load_model(model)), None
    except Exception as exc:  # ModelError, or a file that is not even JSON
        return None, str(exc) or type(exc).__name__


class IncidentPipeline:
    """Located event records in, recorded (and alerted) incidents out.

    ``store``: the :class:`shotline.store.Store` holding the events' triggers.
    ``frame``: a :class:`shotline.geo.LocalFrame` near the sensors (None: one at
    the first event).  ``model``: classifier model (see :func:`load_classifier`).
    ``alerter``: a :class:`shotline.alerts.dispatch.Alerter` or None.
    ``threshold``: p(gunshot) at or above which an incident alerts;
    ``min_sensors``: fewer sensors are recorded only.  ``gap_s``, ``radius_m``,
    ``decision_s``: burst grouping (:class:`shotline.incidents.BurstGrouper`);
    ``agree_m``: :func:`shotline.incidents.burst_fix`.  ``temperature_c`` and
    ``relative_humidity_pct`` go to the classifier (None: its defaults).
    ``extra(events, best)`` returns a dict stored in the incident's ``extra``;
    ``geojson_path`` is rewritten (atomically) with every incident when they change.
    ``uid_prefix`` starts each incident uid; ``by`` signs the audit trail.

    ``push``, ``tick`` and ``flush`` are thread-safe; ``tick`` and ``flush``
    return the new incidents as :class:`Raised`, oldest first, and also pass
    each to ``on_incident``.
    """

    def __init__(self, store, frame=None, *, model=None, alerter=None, threshold=0.5,
                 min_sensors=MIN_ALERT_SENSORS, gap_s=BURST_GAP_S, radius_m=BURST_RADIUS_M, agree_m=20.0, decision_s=0.0,
                 temperature_c=None, relative_humidity_pct=None, extra=None, geojson_path=None,
                 uid_prefix="ev", by="shotline", on_incident=None):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"alert threshold must be within 0..1, got {threshold}")
        if min_sensors < 1:
            raise ValueError(f"min_sensors must be >= 1, got {min_sensors}")
        self.store, self.frame, self.alerter = store, frame, alerter
        self.threshold, self.min_sensors = float(threshold), int(min_sensors)
        self.gap_s, self.radius_m, self.decision_s = float(gap_s), float(radius_m), decision_s
        self.agree_m = float(agree_m)
        self.temperature_c, self.relative_humidity_pct = temperature_c, relative_humidity_pct
        self.extra, self.uid_prefix, self.by = extra, uid_prefix, by
        self.geojson_path = None if geojson_path is None else Path(geojson_path)
        self.on_incident = on_incident
        self.model, self.model_error = load_classifier(model)
        if self.model is None:
            _log(logging.ERROR, "classifier model unusable: incidents get class unknown",
                 error=self.model_error)
        self._grouper = None
        self._lock = threading.RLock()
        self._geojson_stamp = None
        self.stats = {"incidents": 0, "alerts": 0, "unclassified": 0}

    # -- the chain -----------------------------------------------------------------
    def push(self, record):
        """Take one stored event record (with the store's ``id``); unlocated ones are ignored."""
        if record.get("status") != "ok" or record.get("position_llh") is None:
            return
        with self._lock:
            if self._grouper is None:
                from shotline.geo import LocalFrame
                from shotline.incidents import BurstGrouper

                if self.frame is None:
                    lat, lon, alt = record["position_llh"]
                    self.frame = LocalFrame(lat, lon, alt)
                self._grouper = BurstGrouper(self.frame, gap_s=self.gap_s,
                                             radius_m=self.radius_m, decision_s=self.decision_s)
            self._grouper.push(record)

    def tick(self, stream_s):
        """Close the bursts association has finished by stream time ``stream_s`` (POSIX s)."""
        with self._lock:
            if self._grouper is None:
                return []
            return self._raise_all(self._grouper.tick(stream_s))

    def flush(self):
        """Close every open burst (at exit)."""
        with self._lock:
            if self._grouper is None:
                return []
            return self._raise_all(self._grouper.flush())

    def _raise_all(self, groups):
        out = [self._raise(g) for g in groups]
        if out:
            self.write_geojson()
        for raised in out:
            if self.on_incident is not None:
                try:
                    self.on_incident(raised)
                except Exception as exc:  # the caller's bug must not stop the chain
                    _log(logging.ERROR, "incident callback failed", error=repr(exc))
        return out

    def _raise(self, events):
        from shotline.incidents import burst_fix, incident_from_events, record_incident

        best = burst_fix(events, self.frame, self.agree_m)
        extra = self.extra(events, best) if self.extra is not None else None
        record = incident_from_events(events, self.frame, uid_prefix=self.uid_prefix,
                                      agree_m=self.agree_m, extra=extra)
        record.update(self._classify(events, best))
        probabilities = record.pop("probabilities", None)
        if probabilities:
            record["extra"]["probabilities"] = probabilities
        stored = record_incident(self.store, record, threshold=self.threshold,
                                 min_sensors=self.min_sensors, by=self.by)
        self.stats["incidents"] += 1
        _log(logging.INFO, "incident", id=stored["id"], uid=stored["uid"],
             alert=stored["alert"], cls=stored.get("class"),
             probability=stored.get("probability"), n_shots=stored["n_shots"],
             n_sensors=len(stored["sensors"]),
             position_llh=[stored["lat_deg"], stored["lon_deg"], stored["alt_m"]])
        made = None
        if stored["alert"]:
            self.stats["alerts"] += 1
            if self.alerter is not None:
                try:
                    made = self.alerter.alert(stored)
                except Exception as exc:  # a full disk must not lose the incident: it is stored
                    _log(logging.ERROR, "alert failed", uid=stored["uid"], error=repr(exc))
                    made = {"cap": None, "webhook": None, "error": repr(exc)}
                else:
                    _log(logging.INFO, "alert", uid=stored["uid"], **made)
        return Raised(stored, list(events), made)

    def _classify(self, events, best):
        """Class, probability, reasons (and every class's probability) of a burst."""
        if self.model is None:
            self.stats["unclassified"] += 1
            return {"class": "unknown", "reasons": [f"classifier unavailable: {self.model_error}"]}
        from shotline.classify import classify_event

        try:
            triggers = []
            for rec in self.store.query("SELECT * FROM triggers WHERE event_id=?", (best["id"],)):
                rec.update(json.loads(rec.pop("features")))
                pos = self.frame.to_enu([rec["lat_deg"], rec["lon_deg"], rec["alt_m"] or 0.0])
                triggers.append(dict(rec, sensor_position_m=pos.tolist()))
            event = {"time_utc_s": best["t_emit_utc_s"],
                     "position_m": self.frame.to_enu(list(best["position_llh"])).tolist(),
                     "ellipse95_m": best["ellipse95_m"], "triggers": triggers,
                     "temperature_c": self.temperature_c,
                     "relative_humidity_pct": self.relative_humidity_pct}
            result = classify_event(event, self.model,
                                    burst_times_s=[e["t_emit_utc_s"] for e in events])
        except Exception as exc:  # a bad event must not stop the chain
            self.stats["unclassified"] += 1
            _log(logging.WARNING, "classifier failed on an event", event_id=best.get("id"),
                 error=repr(exc))
            return {"class": "unknown", "reasons": [f"classifier failed: {exc}"]}
        p = result.probability
        return {"class": result.class_, "probability": None if p != p else round(float(p), 4),
                "reasons": [r.get("feature", r.get("error", "")) for r in result.reasons],
                "probabilities": dict(result.probabilities)}

    # -- GeoJSON -------------------------------------------------------------------
    def write_geojson(self, *, if_changed=False):
        """Rewrite ``geojson_path`` with every incident; with ``if_changed``, only when
        an incident was added or changed (e.g. reviewed) since the last write."""
        if self.geojson_path is None:
            return False
        from shotline.alerts.geojson import feature_collection
        from shotline.incidents import list_incidents

        with self._lock:
            stamp = tuple(self.store.query(
                "SELECT count(*) AS n, max(updated_utc_s) AS t FROM incidents")[0].values())
            if if_changed and stamp == self._geojson_stamp:
                return False
            text = json.dumps(feature_collection(list_incidents(self.store)), indent=1) + "\n"
            self.geojson_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.geojson_path.with_name(self.geojson_path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.geojson_path)
            self._geojson_stamp = stamp
            return True


class ClockedAssociation:
    """A ``LiveAssociation`` that also ticks an :class:`IncidentPipeline`.

    The collector calls ``push``/``advance``/``flush`` and then stores and
    hands on the events each returns, all in its writer thread; so when the
    next call starts, every event decided by the previous one has reached the
    pipeline, and the associator's stream clock as of then is safe to close
    incidents with.  (Closing on a trigger's own onset instead would cut a
    burst whose last events that very trigger is about to release.)
    """

    def __init__(self, live, pipeline):
        self.live, self.pipeline = live, pipeline
        self.associator = live.associator
        self._decided_s = None

    @property
    def frame(self):
        return self.live.frame

    def _call(self, method, *args):
        if self._decided_s is not None:
            self.pipeline.tick(self._decided_s)
        out = method(*args)
        self._decided_s = self.associator.now_s
        return out

    def push(self, rec):
        return self._call(self.live.push, rec)

    def advance(self, idle_s):
        return self._call(self.live.advance, idle_s)

    def flush(self):
        return self._call(self.live.flush)


def decision_s(live):
    """Longest a trigger may wait before a ``LiveAssociation`` decides its event (s)."""
    a = live.associator
    return 2 * a.max_range_m / a.speed_m_s + a.tolerance_s + a.max_delay_s
