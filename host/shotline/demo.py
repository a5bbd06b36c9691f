"""The scripted night: simulated city -> sensors -> located incidents -> alerts, scored.

``run_demo(out_dir)`` does, in order:

1. render the scenario (``scenarios/demo-night.json``: 16 sensors over
   2 km x 2 km, ~110 s with single shots, bursts, fireworks, a backfire, a
   door slam and construction) to per-sensor audio + truth;
2. turn each sensor's audio into triggers (see ``SENSOR_PATHS``);
3. store the triggers and associate them live (``shotline.collect.LiveAssociation``,
   the collector's own association), storing each located event;
4. group events at one place within ``burst_gap_s`` into an incident (a shot
   or a burst), classify it when a classifier model is available, record it
   (``shotline.incidents``) and, above the alert threshold, raise its alerts:
   a CAP 1.2 file, a webhook POST through the durable outbox to a local
   receiver, a line on the console with its error against the truth;
5. write ``incidents.geojson``, ``map.png``, ``summary.json`` beside the
   SQLite store, and print the summary (shots detected and located, median
   and p90 error, false alerts).
"""
import http.server
import json
import math
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from shotline.incidents import BURST_GAP_S, BURST_RADIUS_M, MIN_ALERT_SENSORS
from shotline.simulate.sources import KINDS
from shotline.timeutil import format_utc

DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "demo-night.json"
AGREE_M = 20.0              # shots of one burst located this close agree on its place
MATCH_WINDOW_S = 0.15       # an event matches a true impulse emitted within this time
LOCATED_WITHIN_M = 25.0     # Tech Note 098's real-time criterion
DETECT_EARLY_S, DETECT_LATE_S = 0.005, 0.010   # a trigger this close to a true arrival heard it
MIN_SENSORS = 4             # a shot heard by this many sensors can be located
MISLOCATED_M = 100.0        # an alert this far from what it heard sends a patrol to the wrong block
SENSOR_PATHS = {
    "virtual": "virtual sensors (the real firmware app on simulated hardware) on "
               "pseudo-terminals -> collector over serial -> store -> live association",
    "detector": "each sensor's audio through the native C detector (the firmware's detector "
                "code) in-process -> store -> the collector's live association",
}


def _horizontal_m(frame, llh_a, llh_b):
    a = frame.to_enu(list(llh_a)[:2] + [0.0])
    b = frame.to_enu(list(llh_b)[:2] + [0.0])
    return float(np.hypot(*(a - b)[:2]))


class Truth:
    """The simulation's truth: every emitted impulse with its source, for scoring."""

    def __init__(self, truth, frame):
        from shotline.timeutil import parse_utc

        self.frame = frame
        self.sources = {s["id"]: s for s in truth["sources"]}
        clock = {s["sensor"]: s["clock_error_s"] for s in truth["sensors"]}
        rows = [(parse_utc(i["time_utc"]), s["id"], tuple(i["position_llh"]),
                 {a["sensor"]: parse_utc(a["arrival_utc"]) + clock[a["sensor"]]
                  for a in i["arrivals"]})
                for s in truth["sources"] for i in s["impulses"]]
        rows.sort(key=lambda r: r[0])
        self.impulses = rows   # (emission s, source id, position llh, {sensor: reported arrival s})
        self.times = np.array([r[0] for r in rows])

    def heard_by(self, k, triggers):
        """Sensors with a trigger within -5..+10 ms of impulse ``k``'s arrival there.

        ``triggers``: {sensor: sorted array of onset times (their own clock)}.
        """
        out = 0
        for sensor, t in self.impulses[k][3].items():
            onsets = triggers.get(sensor)
            if onsets is not None:
                i = np.searchsorted(onsets, t - DETECT_EARLY_S)
                out += bool(i < len(onsets) and onsets[i] <= t + DETECT_LATE_S)
        return out

    def match(self, event):
        """The true impulse an event located: ``(index, source id, error_m)`` or None."""
        t = event["t_emit_utc_s"]
        lo, hi = np.searchsorted(self.times, [t - MATCH_WINDOW_S, t + MATCH_WINDOW_S])
        best = None
        for k in range(lo, hi):
            err = _horizontal_m(self.frame, event["position_llh"], self.impulses[k][2])
            if best is None or err < best[2]:
                best = (k, self.impulses[k][1], err)
        return best

    def gunshot_impulses(self):
        return [k for k, row in enumerate(self.impulses) if self.sources[row[1]]["is_gunshot"]]


def _percentile(values, q):
    return float(np.percentile(values, q)) if len(values) else None


class Receiver:
    """A local webhook receiver (127.0.0.1, ephemeral port) keeping each Idempotency-Key once."""

    def __init__(self):
        self.records = {}
        self.requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests += 1
                receiver.records.setdefault(self.headers.get("Idempotency-Key"), body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/shotline"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def detector_triggers(rendering, progress=None):
    """Trigger records (as the collector stores them) from each sensor's audio."""
    from shotline.detect import ImpulseDetector

    fs = rendering.scenario.sample_rate_hz
    records = []
    for n, track in enumerate(rendering.sensors, start=1):
        det = ImpulseDetector(fs)
        found = []
        for i in range(0, len(track.audio), fs):
            found += det.process(track.audio[i:i + fs])
        lat, lon, alt = track.position_llh
        for seq, trig in enumerate(found, start=1):
            d = trig.to_dict()
            rec = {k: d[k] for k in ("onset_sample", "onset_frac", "peak_dbfs", "noise_dbfs",
                                     "snr_db", "rise_time_s", "width_s", "decay_s", "band_low_db",
                                     "band_mid_db", "band_high_db", "sta_lta", "clipped")}
            rec.update(sensor_id=track.id, seq=seq, time_quality="pps", lat_deg=lat,
                       lon_deg=lon, alt_m=alt,
                       onset_utc_s=track.reported_start_utc_s + trig.onset_s)
            records.append(rec)
        if progress:
            progress(f"sensor {track.id}: {len(found)} triggers ({n}/{len(rendering.sensors)})")
    records.sort(key=lambda r: r["onset_utc_s"])
    return records


class Night:
    """Located events in (from the collector or the in-process path) -> incidents -> alerts.

    The chain is :class:`shotline.incident_pipeline.IncidentPipeline` (burst
    grouping, classification, recording, CAP file and webhook outbox; the
    caller delivers); the night adds the truth of each incident and a console
    line.  ``on_event(record)`` takes a stored event record (with its ``id``);
    ``pipeline`` is ticked by :class:`shotline.incident_pipeline.ClockedAssociation`;
    ``finish()`` closes the rest.
    """

    def __init__(self, store, rendering, out_dir, *, threshold, min_sensors, say, decision_s,
                 webhook_url=None):
        from shotline.alerts.dispatch import Alerter
        from shotline.alerts.webhook import WebhookOutbox
        from shotline.geo import LocalFrame
        from shotline.incident_pipeline import IncidentPipeline

        sc = rendering.scenario
        self.store, self.rendering, self.say = store, rendering, say
        self.frame = LocalFrame(*sc.origin_llh)
        self.truth = Truth(rendering.truth, self.frame)
        self.outbox = WebhookOutbox(store, webhook_url, base_delay_s=0.2, max_delay_s=2.0,
                                    timeout_s=2.0) if webhook_url else None
        alerter = Alerter(cap_dir=Path(out_dir) / "cap", outbox=self.outbox,
                          cap_status="Exercise",
                          note="Simulated night (shotline demo): not a real event")
        self.pipeline = IncidentPipeline(
            store, self.frame, alerter=alerter, threshold=threshold, min_sensors=min_sensors,
            gap_s=BURST_GAP_S, radius_m=BURST_RADIUS_M, agree_m=AGREE_M, decision_s=decision_s,
            temperature_c=sc.weather.temperature_c,
            relative_humidity_pct=sc.weather.relative_humidity_pct,
            extra=self._truth_extra, uid_prefix="demo", by="demo", on_incident=self._said)
        self.model, self.model_error = self.pipeline.model, self.pipeline.model_error
        self.events = {}          # event_id -> latest record
        self.incidents = []       # (incident dict, truth matches of its events)

    def on_event(self, record):
        if record.get("status") != "ok" or record.get("position_llh") is None:
            return
        self.events[record["event_id"]] = record
        self.pipeline.push(record)

    def finish(self):
        self.pipeline.flush()

    # -- incidents and alerts ------------------------------------------------------
    def _truth_extra(self, events, best):
        best_match = self.truth.match(best)
        truth_id, error_m = (None, None) if best_match is None else \
            (best_match[1], round(best_match[2], 2))
        return {"truth_id": truth_id, "error_m": error_m, "simulated": True}

    def _said(self, raised):
        stored = raised.incident
        truth_id, error_m = stored["extra"]["truth_id"], stored["extra"]["error_m"]
        stored["error_m"] = error_m
        self.incidents.append((stored, [self.truth.match(e) for e in raised.events]))
        cls = ""
        if stored.get("class") is not None:
            cls = f"  {stored['class']}" + (f" p={stored['probability']:.2f}"
                                            if stored.get("probability") is not None else "")
        self.say(f"{'ALERT ' if stored['alert'] else 'record'} #{stored['id']:<3} "
                 f"{format_utc(stored['time_utc_s'], 2)[11:]}  "
                 f"{stored['lat_deg']:.6f},{stored['lon_deg']:.6f}  "
                 f"±{stored['ellipse_major_m']:.0f} m  {stored['n_shots']} shot(s)  "
                 f"{len(stored['sensors'])} sensors{cls}  | "
                 f"{self._truth_text(truth_id, error_m)}")

    def _truth_text(self, truth_id, error_m):
        if truth_id is None:
            return "truth: nothing there (false)"
        src = self.truth.sources[truth_id]
        wrong = " (mislocated)" if error_m > MISLOCATED_M else ""
        return f"truth: {truth_id} ({src['kind']}), error {error_m:.1f} m{wrong}"

    # -- scoring ------------------------------------------------------------------------
    def _verdict(self, incident):
        """What an incident really was: gunshot, a confuser kind, mislocated, or nothing."""
        truth_id = incident["extra"]["truth_id"]
        if truth_id is None:
            return "nothing"
        if incident["extra"]["error_m"] > MISLOCATED_M:
            return "mislocated"
        source = self.truth.sources[truth_id]
        return "gunshot" if source["is_gunshot"] else source["kind"]

    def summary(self):
        gun_imps = set(self.truth.gunshot_impulses())
        onsets = {}
        for row in self.store.query("SELECT sensor_id, onset_utc_s FROM triggers"):
            onsets.setdefault(row["sensor_id"], []).append(row["onset_utc_s"])
        onsets = {k: np.sort(v) for k, v in onsets.items()}
        detected = [k for k in gun_imps if self.truth.heard_by(k, onsets) >= MIN_SENSORS]
        gun_sources = [s for s in self.truth.sources.values() if s["is_gunshot"]]
        best_error = {}   # true gunshot impulse -> smallest error of an event matching it
        for _, matches in self.incidents:
            for m in matches:
                if m is not None and m[0] in gun_imps:
                    best_error[m[0]] = min(m[2], best_error.get(m[0], math.inf))
        shot_errors = list(best_error.values())
        alerts = [i for i, _ in self.incidents if i["alert"]]
        true_alerts = [i for i in alerts if self._verdict(i) == "gunshot"]
        detected_sources = {i["extra"]["truth_id"] for i in true_alerts}
        incident_errors = [i["error_m"] for i in true_alerts if i["error_m"] is not None]
        confusers = [s for s in self.truth.sources.values() if not s["is_gunshot"]]
        return {
            "gunshot_sources": len(gun_sources),
            "gunshot_sources_alerted": len(detected_sources),
            "shots": len(gun_imps), "shots_detected": len(detected),
            "shots_located": len(shot_errors),
            "shots_within_25m": sum(e <= LOCATED_WITHIN_M for e in shot_errors),
            "shot_error_median_m": _round(_percentile(shot_errors, 50)),
            "shot_error_p90_m": _round(_percentile(shot_errors, 90)),
            "incident_error_median_m": _round(_percentile(incident_errors, 50)),
            "incident_error_p90_m": _round(_percentile(incident_errors, 90)),
            "confuser_sources": len(confusers),
            "incidents": len(self.incidents), "alerts": len(alerts),
            "false_alerts": len(alerts) - len(true_alerts),
            "false_alerts_by_kind": _count(self._verdict(i) for i in alerts
                                           if i not in true_alerts),
            "classifier": "none: " + self.model_error if self.model is None else
            self.model.get("model_version", "loaded"),
            "events": len(self.events),
        }


def _round(v):
    return None if v is None else round(v, 2)


def _count(items):
    out = {}
    for k in items:
        out[k] = out.get(k, 0) + 1
    return out


def _clear(out):
    """Remove the outputs of an earlier run (only the files this demo writes)."""
    for name in ("shotline.sqlite", "shotline.sqlite-wal", "shotline.sqlite-shm",
                 "incidents.geojson", "map.png", "summary.json"):
        (out / name).unlink(missing_ok=True)
    for folder in ("cap", "sim"):
        shutil.rmtree(out / folder, ignore_errors=True)


ASSOCIATION = {"max_delay_s": 1.0}


def _association(rendering):
    from shotline.collect import LiveAssociation

    sc = rendering.scenario
    return LiveAssociation(origin_llh=sc.origin_llh, temperature_c=sc.weather.temperature_c,
                           **ASSOCIATION)


def run_in_process(store, rendering, night, live, progress, deliver):
    """The detector path: each sensor's audio through the C detector, then the
    collector's live association, in time order, all in this process."""
    records = detector_triggers(rendering, progress)

    def stored(decided):
        for record, members in decided:
            rows = [ids[m] for m in members if m in ids]
            record = dict(record, id=store.insert_event(record, rows,
                                                        key=f"demo:{record['event_id']}"))
            night.on_event(record)

    ids = {}
    for i in range(0, len(records), 64):
        batch = records[i:i + 64]
        for rec, (row_id, _) in zip(batch, store.insert_triggers(batch)):
            ids[(rec["sensor_id"], rec["seq"])] = row_id
        for rec in batch:
            stored(live.push(rec))
        deliver()
    stored(live.flush())


def run_virtual(store, rendering, night, live, progress, deliver, speed, step_s=0.02):
    """The full path: one virtual sensor per simulated site -- the real firmware
    app (``shotline.fakehw``) hearing that site's audio, with its own crystal
    and GPS -- on a pseudo-terminal; the collector reads them all over serial,
    stores, acknowledges and associates live.

    The boards run in lockstep in this thread (each advanced ``step_s`` of
    simulated time in turn), paced to ``speed`` x real time when the CPU
    allows: parallel boards in free-running threads drift apart by seconds
    on a busy machine and reach the collector out of order.
    """
    import tempfile

    from shotline.collect import Collector
    from shotline.virtual import VirtualSensor

    sc = rendering.scenario
    tmp = Path(tempfile.mkdtemp(prefix="shotline-demo-"))
    sensors = []
    collector = None
    try:
        for i, track in enumerate(rendering.sensors):
            # The board's GPS says sample 0 is at utc0: the simulated clock error is its error.
            vs = VirtualSensor(track.id, tmp / "flash" / track.id, audio=track.audio,
                               folder=tmp / "ports", position_llh=track.position_llh,
                               utc0_s=track.reported_start_utc_s, seed=i)
            vs.port.plug()
            vs.board.app.send_hello()
            sensors.append(vs)

        def step(dt_s):
            for vs in sensors:
                vs.board.advance(dt_s)
                vs.port.flush()

        collector = Collector(store, [vs.path for vs in sensors], associator=live,
                              on_event=night.on_event)
        collector.start()
        deadline = time.monotonic() + 20.0
        while not collector.wait_for_connections(timeout_s=0.02):
            step(0.0)    # answer the collector's HELLO
            if time.monotonic() > deadline:
                raise RuntimeError("virtual sensors did not answer the collector")
        progress(f"{len(sensors)} virtual sensors on ptys, collector connected; "
                 f"running at up to {speed:g}x real time")
        end_s = sc.duration_s + 3.0
        wall0, sim_s, last_report = time.monotonic(), 0.0, 0.0
        while sim_s < end_s:
            step(step_s)
            sim_s += step_s
            now = time.monotonic()
            ahead = sim_s / speed - (now - wall0)
            if ahead > 0:
                time.sleep(ahead)
            if now - last_report > 2.0:
                last_report = now
                deliver()
                progress(f"simulated {min(sim_s, sc.duration_s):5.1f} of {sc.duration_s:g} s: "
                         f"{collector.stats['triggers_new']} triggers, "
                         f"{collector.stats['events']} events")
        quiet_since, last = time.monotonic(), -1
        while time.monotonic() - quiet_since < 0.5:   # let the last triggers be acknowledged
            step(0.01)
            if collector.stats["triggers_new"] != last:
                last, quiet_since = collector.stats["triggers_new"], time.monotonic()
            time.sleep(0.01)
    finally:
        if collector is not None:
            collector.stop()   # first: nothing unacknowledged, no "board lost" noise
        for vs in sensors:
            vs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run_demo(out_dir, scenario=DEFAULT_SCENARIO, *, threshold=0.5, min_sensors=MIN_ALERT_SENSORS,
             webhook=True, path="virtual", speed=16.0, say=print, progress=None):
    """Run the night; returns the summary dict (also written to ``summary.json``).

    ``path``: ``virtual`` (virtual sensors on ptys -> collector) or
    ``detector`` (the C detector on the audio in-process), see ``SENSOR_PATHS``.
    ``speed``: simulated seconds per wall-clock second for virtual sensors.
    """
    from shotline.alerts.geojson import feature_collection
    from shotline.incidents import list_incidents
    from shotline.mapplot import draw_map
    from shotline.simulate import load_scenario, render, write_rendering
    from shotline.store import Store

    if path not in SENSOR_PATHS:
        raise ValueError(f"path must be one of {sorted(SENSOR_PATHS)}")
    progress = progress or (lambda msg: None)
    t0 = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    sc = load_scenario(scenario)
    n_gun = sum(1 for s in sc.sources if KINDS[s.kind].label == "gunshot")
    say(f"Shotline demo: {sc.name}, {len(sc.sensors)} sensors, {len(sc.sources)} sources "
        f"({n_gun} gunfire) over {sc.duration_s:g} s of simulated audio")
    rendering = render(sc, progress=lambda d, n: progress(f"rendered sensor {d}/{n}"))
    write_rendering(rendering, out / "sim")
    progress(f"simulated audio and truth in {out / 'sim'} ({time.monotonic() - t0:.1f} s)")
    say(f"sensor path: {SENSOR_PATHS[path]}")
    receiver = Receiver() if webhook else None
    store = Store(out / "shotline.sqlite")
    try:
        from shotline.incident_pipeline import ClockedAssociation, decision_s

        plain = _association(rendering)
        night = Night(store, rendering, out, threshold=threshold, min_sensors=min_sensors, say=say,
                      decision_s=decision_s(plain), webhook_url=receiver.url if receiver else None)
        live = ClockedAssociation(plain, night.pipeline)
        if night.model is None:
            say(f"classifier: none available ({night.model_error}); every located "
                f"incident alerts")

        def deliver():
            if night.outbox is not None:
                night.outbox.deliver_due()

        if path == "virtual":
            run_virtual(store, rendering, night, live, progress, deliver, speed)
        else:
            for s in rendering.sensors:
                store.upsert_sensor(s.id, position_llh=s.position_llh, firmware="simulated",
                                    port="in-process")
            run_in_process(store, rendering, night, live, progress, deliver)
        night.finish()
        delivered = None
        if night.outbox is not None:
            night.outbox.drain(timeout_s=10.0)
            delivered = sum(1 for r in night.outbox.rows() if r["delivered_utc_s"] is not None)
        incidents = list_incidents(store)
        for inc in incidents:
            inc["error_m"] = inc["extra"].get("error_m")
        (out / "incidents.geojson").write_text(json.dumps(feature_collection(incidents), indent=1)
                                               + "\n")
        draw_map(out / "map.png", sensors=[(s.id, *s.position_llh[:2]) for s in rendering.sensors],
                 incidents=incidents, truth=rendering.truth["sources"],
                 title=f"Shotline demo: {sc.name}")
        summary = night.summary()
        summary["triggers"] = store.counts()["triggers"]
    finally:
        store.close()
        if receiver is not None:
            receiver.close()
    summary.update(elapsed_s=round(time.monotonic() - t0, 1), audio_s=sc.duration_s,
                   sensors=len(sc.sensors), sensor_path=path,
                   webhook_delivered=delivered,
                   webhook_receiver_records=None if receiver is None else len(receiver.records),
                   out=str(out))
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
