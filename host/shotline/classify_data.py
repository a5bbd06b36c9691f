"""Labelled examples for the classifier, from real recordings and the simulator.

Every example is the feature dict of one event, seen in one of three *views*:

- ``located``: the event as the pipeline sees it: triggers from several
  sensors, located, all features available, with its whole burst;
- ``located_lone``: the same event without burst context (how the first
  shot of a burst looks in real time, or an impulse whose neighbours were not
  located); made only for events whose burst has more than one impulse;
- ``single_sensor``: one sensor's trigger alone, with no location (the
  location features are missing).  The real confuser recordings exist only in
  this view (one microphone, unknown position and calibration), so every
  gunshot and simulated event also contributes one single-sensor example:
  that way "location missing" says nothing about the class and the model
  learns the single-sensor evidence (shape, spectrum, burst rhythm) from both
  real gunshots and real confusers.

Sources:

- Pittsburgh (real gunshots): our detector on every recording; triggers are
  assigned to shots with ShotSpotter's own per-shot pulse selection
  (``nlos-tuples.json``: a trigger within ``MATCH_S`` of a selected pulse at
  the same sensor); the shot is located with ``shotline.locate`` from our
  trigger times (an ``ambiguous`` fix counts with its best solution).
  Received levels are ShotSpotter's calibrated pulse peak levels
  (``power_dB_SPL`` in ``allpulses.json``): the released audio has unknown
  calibration.  Group: the firing position.
- Confusers (real, ``other_impulsive``): each file mixed to mono, resampled
  to ``REAL_RATE_HZ`` (the Pittsburgh rate), preceded by ``PREROLL_S`` of
  quiet noise so the detector has learnt the background before the first
  impulse; every trigger is an example.  Group: the file.
- Simulated (``shotline.simulate``): random scenes of one source each among
  6 sensors, rendered at 12 kHz and 16 kHz (the firmware's rate) in turn;
  triggers assigned to impulses with the simulator's truth,
  located with ``shotline.locate``; levels from ``peak_dbfs`` and the INMP441
  calibration.  Group: the scene.
"""
import math
from dataclasses import dataclass

import numpy as np

from shotline import classify_features as cf
from shotline.classify import LOCATED_STATUSES

REAL_RATE_HZ = 12000
MATCH_S = 0.010         # a trigger within this of a reference arrival is that arrival
PREROLL_S = 0.5
PREROLL_DBFS = -70.0
MIN_LOCATE_SENSORS = 3

SIM_CLASS = {"gunshot": "gunshot", "firework": "firework", "backfire": "other_impulsive",
             "door_slam": "other_impulsive", "construction": "other_impulsive"}


@dataclass(frozen=True)
class Example:
    """One labelled event: features, class, the group held out whole, provenance."""

    features: dict
    label: str
    group: str
    source: str   # "pittsburgh", "confuser" or "simulated"
    view: str     # "located", "located_lone" or "single_sensor"
    detail: str = ""

    def to_dict(self):
        return {"features": {k: (None if not math.isfinite(v) else v)
                             for k, v in self.features.items()},
                "label": self.label, "group": self.group, "source": self.source,
                "view": self.view, "detail": self.detail}

    @classmethod
    def from_dict(cls, d):
        return cls({k: (math.nan if v is None else float(v)) for k, v in d["features"].items()},
                   d["label"], d["group"], d["source"], d["view"], d.get("detail", ""))


def _detect(audio_int16, rate_hz):
    from shotline.detect import ImpulseDetector

    return list(ImpulseDetector(rate_hz).process(np.ascontiguousarray(audio_int16, np.int16)))


def _locate(positions_m, times_s, temperature_c):
    """(position (3,), 95 % ellipse semi-major m, emission time s), or None.

    An ``ambiguous`` fix counts, with its best-fit solution (the one the
    locator puts first), as ``classify.event_position_m`` does.
    """
    from shotline.locate import locate

    try:
        fix = locate(np.asarray(positions_m, dtype=float), np.asarray(times_s, dtype=float),
                     temperature_c=temperature_c)
    except ValueError:
        return None
    if fix.status not in LOCATED_STATUSES or not np.all(np.isfinite(fix.position_m)):
        return None
    return np.asarray(fix.position_m, dtype=float), float(fix.ellipse95_m.major_m), fix.t_emit_s


def _single_sensor_bursts(times_s):
    """Burst member times per trigger for one sensor: grouping by time gap only."""
    times = np.asarray(times_s, dtype=float)
    labels = cf.group_bursts(times, [(0.0, 0.0, 0.0)] * len(times), radius_m=math.inf)
    members = {}
    for lab, t in zip(labels, times):
        members.setdefault(lab, []).append(t)
    return [members[lab] for lab in labels]


def _trigger_dict(trigger, **extra):
    d = trigger.to_dict() if hasattr(trigger, "to_dict") else dict(trigger)
    d.update(extra)
    return d


def event_views(reports, burst_times_s, located, rng, single_burst_times_s,
                temperature_c, relative_humidity_pct, **meta):
    """The examples of one event, one per view (see the module docstring).

    ``located`` (if it located), ``located_lone`` (the same with no burst
    context, as the first shot of a burst is seen in real time; only when the
    burst has more than one impulse) and ``single_sensor`` (one random sensor,
    its own trigger rhythm, no location).  ``reports``: SensorReport per
    contributing sensor; ``located``: the ``_locate`` result or None;
    ``single_burst_times_s``: per sensor, the burst member times that sensor
    saw; ``meta``: the other Example fields.
    """
    out = []
    if located is not None:
        pos, err, _ = located
        out.append(Example(cf.event_features(reports, pos, err, burst_times_s, temperature_c,
                                             relative_humidity_pct), view="located", **meta))
        if len(burst_times_s) > 1:
            out.append(Example(cf.event_features(reports, pos, err, (), temperature_c,
                                                 relative_humidity_pct),
                               view="located_lone", **meta))
    k = int(rng.integers(len(reports)))
    f = cf.event_features([reports[k]], None, math.nan, single_burst_times_s[k],
                          temperature_c, relative_humidity_pct)
    out.append(Example(f, view="single_sensor", **meta))
    return out


# -- Pittsburgh -----------------------------------------------------------------------------

def pittsburgh_examples(tests, seed=0):
    """Examples (class ``gunshot``) from Pittsburgh tests (``pittsburgh.iter_tests``)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    out = []
    for test in tests:
        pulses = test.pulse_by_uuid()
        trig_by_sensor = {}
        for rec in test.recordings:
            audio, rate = sf.read(str(rec.path), dtype="int16", always_2d=True)
            trigs = _detect(audio[:, 0], rate)
            trig_by_sensor[rec.sensor] = (rec, [(rec.start_utc_s + t.onset_s, t) for t in trigs])
        per_shot = []
        for shot in test.shots:
            reports, times, positions, sensors = [], [], [], []
            for uuid in shot:
                p = pulses.get(uuid)
                if p is None or p.sensor not in trig_by_sensor or p.sensor in sensors:
                    continue
                rec, trigs = trig_by_sensor[p.sensor]
                best = min(trigs, key=lambda tt: abs(tt[0] - p.arrival_utc_s), default=None)
                if best is None or abs(best[0] - p.arrival_utc_s) > MATCH_S:
                    continue
                reports.append(cf.sensor_report(_trigger_dict(best[1], level_db_spl=p.level_db_spl),
                                                rec.position_m))
                times.append(best[0])
                positions.append(rec.position_m)
                sensors.append(p.sensor)
            if reports:
                located = _locate(positions, times, test.temperature_c) \
                    if len(reports) >= MIN_LOCATE_SENSORS else None
                per_shot.append((reports, times, sensors, located))
        shot_times = [min(t) for _, t, _, _ in per_shot]
        for reports, times, sensors, located in per_shot:
            singles = []
            for s in sensors:
                all_times = [t for t, _ in trig_by_sensor[s][1]]
                mine = min(all_times, key=lambda t: abs(t - times[sensors.index(s)]))
                bursts = _single_sensor_bursts(all_times)
                singles.append(bursts[all_times.index(mine)])
            out += event_views(
                reports, shot_times, located, rng, singles, test.temperature_c,
                cf.DEFAULT_RELATIVE_HUMIDITY_PCT, label="gunshot",
                group=f"pittsburgh/{test.firing_position}", source="pittsburgh",
                detail=f"{test.name} {test.firearm}")
    return out


# -- real confusers -------------------------------------------------------------------------

def recording_int16(path, rate_hz=REAL_RATE_HZ, seed=0):
    """A recording as mono int16 at ``rate_hz``, with a quiet noise pre-roll."""
    import soundfile as sf
    from scipy.signal import resample_poly

    audio, rate = sf.read(str(path), dtype="float64", always_2d=True)
    mono = audio.mean(axis=1)
    g = math.gcd(int(rate), int(rate_hz))
    mono = resample_poly(mono, rate_hz // g, int(rate) // g)
    rng = np.random.default_rng(seed)
    pre = rng.normal(0.0, 10 ** (PREROLL_DBFS / 20), int(PREROLL_S * rate_hz))
    x = np.concatenate([pre, mono]) * 32767.0
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def confuser_examples(paths, rate_hz=REAL_RATE_HZ):
    """Single-sensor examples (class ``other_impulsive``), one per trigger of each file."""
    out = []
    for path in paths:
        trigs = _detect(recording_int16(path, rate_hz), rate_hz)
        times = [t.onset_s for t in trigs]
        bursts = _single_sensor_bursts(times)
        for trig, members in zip(trigs, bursts):
            f = cf.event_features([cf.sensor_report(_trigger_dict(trig))], None, math.nan, members)
            out.append(Example(f, "other_impulsive", f"confuser/{path.stem}", "confuser",
                               "single_sensor", path.stem))
    return out


# -- simulated ------------------------------------------------------------------------------

SIM_RATES_HZ = (12000, 16000)  # the Pittsburgh rate and the sensor firmware's rate, alternately
SIM_DURATION_S = 14.0
SIM_ORIGIN_LLH = (40.44, -79.99, 250.0)
SIM_N_SENSORS = 6
SIM_AREA_M = 600.0          # sensors uniform in a square of +-SIM_AREA_M, source inside
# Quiet kinds are only ever located near sensors: their scenes use a smaller square.
_QUIET_AREA_M = {"door_slam": 60.0, "backfire": 250.0, "jackhammer": 150.0, "pile_driver": 250.0}
MAX_EVENTS_PER_SCENE = 6    # so that a 100-click jackhammer does not swamp the set
# Round-robin over classes, then over the kinds of the class.
SIM_KINDS = (("handgun", "rifle"), ("firecracker", "firework_mortar"),
             ("backfire", "door_slam", "jackhammer", "pile_driver"))


def _sim_source_params(kind, rng):
    if kind == "handgun":
        return {"shots": int(rng.integers(1, 7)), "interval_s": float(rng.uniform(0.15, 1.2))}
    if kind == "rifle":
        if rng.random() < 0.5:  # automatic
            return {"shots": int(rng.integers(4, 21)), "interval_s": float(rng.uniform(0.06, 0.11))}
        return {"shots": int(rng.integers(1, 8)), "interval_s": float(rng.uniform(0.15, 1.0))}
    if kind == "firecracker":
        return {"span_s": float(rng.uniform(1.0, 5.0))}
    if kind == "jackhammer":
        return {"duration_s": float(rng.uniform(2.0, 8.0))}
    if kind == "pile_driver":
        return {"duration_s": float(rng.uniform(3.0, 10.0)),
                "interval_s": float(rng.uniform(0.8, 2.0))}
    return {}


def random_scene(index, seed=0):
    """A scenario document: ``SIM_N_SENSORS`` sensors and one source of a kind chosen
    round-robin (class, then kind) by ``index``, randomised by (seed, index)."""
    from shotline.geo import LocalFrame

    rng = np.random.default_rng([seed, index])
    frame = LocalFrame(*SIM_ORIGIN_LLH)
    kinds = SIM_KINDS[index % len(SIM_KINDS)]
    kind = kinds[(index // len(SIM_KINDS)) % len(kinds)]
    area = _QUIET_AREA_M.get(kind, SIM_AREA_M)
    sensors_enu = np.column_stack([rng.uniform(-area, area, (SIM_N_SENSORS, 2)),
                                   rng.uniform(4, 12, SIM_N_SENSORS)])
    src = rng.uniform(-area, area, 2)

    def llh(e, n, u):
        lat, lon, _ = frame.to_llh([e, n, u])
        return float(lat), float(lon)

    sensors = []
    for i, (e, n, u) in enumerate(sensors_enu):
        lat, lon = llh(e, n, u)
        sensors.append({"id": f"S{i + 1:02d}", "lat_deg": lat, "lon_deg": lon,
                        "height_m": float(u)})
    lat, lon = llh(src[0], src[1], 1.5)
    source = {"id": "E1", "kind": kind, "t_s": 1.5, "lat_deg": lat, "lon_deg": lon,
              "height_m": 1.5, **_sim_source_params(kind, rng)}
    return {
        "name": f"classify-{seed}-{index}", "start_utc": "2026-07-04T22:00:00Z",
        "duration_s": SIM_DURATION_S, "sample_rate_hz": SIM_RATES_HZ[index % len(SIM_RATES_HZ)],
        "seed": int(rng.integers(2 ** 31)),
        "weather": {"temperature_c": float(rng.uniform(-5, 30)),
                    "relative_humidity_pct": float(rng.uniform(30, 95)),
                    "wind_speed_m_s": float(rng.uniform(0, 6)),
                    "wind_from_deg": float(rng.uniform(0, 360))},
        "background": {"traffic_db_spl": float(rng.uniform(45, 62))},
        "origin": {"lat_deg": SIM_ORIGIN_LLH[0], "lon_deg": SIM_ORIGIN_LLH[1],
                   "alt_m": SIM_ORIGIN_LLH[2]},
        "sensors": sensors, "sources": [source],
    }


def scene_examples(doc, seed=0):
    """Examples from one rendered scene (see ``random_scene``)."""
    from shotline.simulate import parse_scenario, render
    from shotline.timeutil import parse_utc

    rendering = render(parse_scenario(doc))
    truth = rendering.truth
    rng = np.random.default_rng([seed, 7])
    weather = truth["weather"]
    temp, rh = weather["temperature_c"], weather["relative_humidity_pct"]
    tracks = {t.id: t for t in rendering.sensors}
    trig_by_sensor = {}
    for sid, tr in tracks.items():
        trigs = _detect(tr.audio, truth["sample_rate_hz"])
        trig_by_sensor[sid] = [(tr.reported_start_utc_s + t.onset_s, t) for t in trigs]
    singles = {sid: _single_sensor_bursts([t for t, _ in v]) for sid, v in trig_by_sensor.items()}
    source = truth["sources"][0]
    label = SIM_CLASS[source["class"]]
    events = []
    used = {sid: set() for sid in tracks}
    for imp in source["impulses"]:
        reports, times, positions, single = [], [], [], []
        for a in imp["arrivals"]:
            sid, t_true = a["sensor"], parse_utc(a["arrival_utc"])
            cands = [(abs(t - t_true), k) for k, (t, _) in enumerate(trig_by_sensor[sid])
                     if k not in used[sid] and abs(t - t_true) <= MATCH_S]
            if not cands:
                continue
            k = min(cands)[1]
            used[sid].add(k)
            t, trig = trig_by_sensor[sid][k]
            pos = tracks[sid].position_enu_m
            reports.append(cf.sensor_report(_trigger_dict(trig), pos))
            times.append(t)
            positions.append(pos)
            single.append(singles[sid][k])
        if not reports:
            continue
        located = _locate(positions, times, temp) if len(reports) >= MIN_LOCATE_SENSORS else None
        events.append((reports, times, located, single))
    # Bursts among the located events, as the pipeline would group them.
    loc = [e for e in events if e[2] is not None]
    loc_times = [e[2][2] if e[2][2] is not None else min(e[1]) for e in loc]
    labels = cf.group_bursts(loc_times, [e[2][0] for e in loc])
    members = {}
    for lab, t in zip(labels, loc_times):
        members.setdefault(lab, []).append(t)
    burst_of = {id(e): members[lab] for e, lab in zip(loc, labels)}
    if len(events) > MAX_EVENTS_PER_SCENE:
        keep = rng.choice(len(events), MAX_EVENTS_PER_SCENE, replace=False)
        events = [events[i] for i in sorted(keep)]
    out = []
    for e in events:
        reports, _, located, single = e
        out += event_views(reports, burst_of.get(id(e), ()), located, rng, single, temp, rh,
                           label=label, group=f"simulated/{doc['name']}", source="simulated",
                           detail=source["kind"])
    return out


def simulated_examples(n_scenes, seed=0, progress=None):
    """Examples from ``n_scenes`` random scenes (balanced over classes by construction)."""
    out = []
    for i in range(n_scenes):
        out += scene_examples(random_scene(i, seed), seed)
        if progress:
            progress(i + 1, n_scenes)
    return out
