"""Offline pipeline: detect, associate and locate from synchronised recordings.

For forensic re-analysis and evaluation.  A *manifest* (JSON) lists the
recordings, each with its sensor id, audio file, the UTC time of its first
sample and the sensor position::

    {"temperature_c": 0.0,
     "recordings": [{"sensor": "S1", "path": "s1.flac", "start_utc": "2018-12-19T00:49:26Z",
                     "position_m": [x, y, z]}, ...]}

(``position_llh`` [lat, lon, alt] instead of ``position_m``; relative paths
resolve against the manifest's folder).  Each recording goes through the
detector (:func:`shotline.detect.detect_file`); a trigger's time is the start
time plus its onset; the triggers are then associated and located
(:func:`shotline.associate.associate`) with the sensor network known up front.
Offline, the streaming events then compete with every other candidate
(:mod:`shotline.process_select`): each set of at least four sensors that fits
one source, valued by how much its members look like direct sound and how
well they fit; the best disjoint set of events is kept.
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shotline.acoustics import DEFAULT_TEMPERATURE_C, speed_of_sound_m_s
from shotline.associate import Association, Event, Trigger, associate
from shotline.timeutil import parse_utc


# Defaults for detector onsets from real audio: street-level propagation
# (diffraction, 2.5-D height model) leaves arrivals up to ~30 ms off a
# straight-line model (Tech Note 098 selects pulses within 40 ms); a fix
# worse than 20 m (95 % ellipse) is taken for a chance fit of echoes.
AUDIO_TOLERANCE_S = 0.03
AUDIO_MAX_ELLIPSE_M = 20.0
# Offline re-selection: a streaming event's head start (log-likelihood ratio)
# over the offline candidates (chosen on the tuning half of the live-fire
# evaluation data; see docs/process.md).
STREAM_EVENT_BONUS = 6.0


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the entry."""


@dataclass(frozen=True)
class Recording:
    sensor: str
    path: Path
    start_utc_s: float
    position_m: tuple


@dataclass(frozen=True)
class Manifest:
    temperature_c: float
    recordings: tuple
    frame: object = None       # shotline.geo.LocalFrame when positions were WGS84


def load_manifest(path):
    """Read and check a manifest file; raises :class:`ManifestError`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {path} is not JSON: {exc.msg} (line {exc.lineno})") from None
    return parse_manifest(doc, path.parent)


def parse_manifest(doc, base_dir):
    """Check a manifest document; relative audio paths resolve against ``base_dir``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("recordings"), list) or not doc["recordings"]:
        raise ManifestError('manifest must be an object with a non-empty "recordings" list')
    try:
        temperature_c = float(doc.get("temperature_c", DEFAULT_TEMPERATURE_C))
    except (TypeError, ValueError):
        raise ManifestError("temperature_c must be a number") from None
    if not math.isfinite(temperature_c):
        raise ManifestError("temperature_c must be finite")
    frame = None
    recordings = []
    seen = set()
    for n, rec in enumerate(doc["recordings"]):
        where = f"recordings[{n}]"
        if not isinstance(rec, dict):
            raise ManifestError(f"{where} must be an object")
        missing = [k for k in ("sensor", "path", "start_utc") if k not in rec]
        if missing:
            raise ManifestError(f"{where} lacks {', '.join(missing)}")
        sensor = rec["sensor"]
        if not isinstance(sensor, str) or not sensor:
            raise ManifestError(f"{where}: sensor must be a non-empty string")
        if sensor in seen:
            raise ManifestError(f"{where}: sensor {sensor!r} listed twice")
        seen.add(sensor)
        audio = Path(rec["path"])
        audio = audio if audio.is_absolute() else Path(base_dir) / audio
        if not audio.is_file():
            raise ManifestError(f"{where}: audio file not found: {audio}")
        try:
            start = parse_utc(rec["start_utc"])
        except ValueError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        has_m, has_llh = "position_m" in rec, "position_llh" in rec
        if has_m == has_llh:
            raise ManifestError(f"{where}: give exactly one of position_m and position_llh")
        try:
            if has_m:
                position = rec["position_m"]
            else:
                llh = [float(v) for v in rec["position_llh"]]
                if frame is None:
                    from shotline.geo import LocalFrame

                    frame = LocalFrame(llh[0], llh[1], llh[2] if len(llh) > 2 else 0.0)
                position = frame.to_enu(llh).tolist()
            position = Trigger(sensor, position, 0.0).position_m
        except (TypeError, ValueError, IndexError) as exc:
            raise ManifestError(f"{where}: bad position: {exc}") from None
        recordings.append(Recording(sensor, audio, start, position))
    if frame is not None and any("position_m" in r for r in doc["recordings"]):
        raise ManifestError("use one kind of position (position_m or position_llh) for every recording")
    return Manifest(temperature_c, tuple(recordings), frame)


def detect_triggers(manifest, **detector_params):
    """Run the detector on every recording; returns association triggers in time order."""
    from shotline.detect import detect_file

    triggers = []
    for rec in manifest.recordings:
        for seq, det in enumerate(detect_file(rec.path, **detector_params)):
            triggers.append(Trigger(rec.sensor, rec.position_m, rec.start_utc_s + det.onset_s,
                                    snr_db=det.snr_db, level_db=det.peak_dbfs,
                                    features=det.to_dict(), seq=seq))
    triggers.sort(key=lambda t: t.time_utc_s)
    return triggers


def process(manifest, *, detector_params=None, reselect=True, **options):
    """Detect, associate and locate; returns :class:`shotline.associate.Association`.

    ``options`` go to :class:`shotline.associate.Associator`; the temperature
    defaults to the manifest's, the network to the manifest's sensors,
    ``min_sensors`` to 5 (4 when there are only 4 recordings), and the
    tolerance and ellipse gate to the values below.  With ``reselect`` the
    streaming events compete with every offline candidate
    (:func:`reselect_events`); ``stats`` then counts ``recovered`` (new)
    and ``dropped`` (streaming) events.
    """
    triggers = detect_triggers(manifest, **(detector_params or {}))
    offline_min_sensors = options.get("min_sensors", 4)     # the caller's, else 4 (see reselect_events)
    options.setdefault("temperature_c", manifest.temperature_c)
    options.setdefault("sensors", {r.sensor: r.position_m for r in manifest.recordings})
    options.setdefault("min_sensors", max(4, min(5, len(manifest.recordings))))
    options.setdefault("tolerance_s", AUDIO_TOLERANCE_S)
    options.setdefault("max_ellipse_m", AUDIO_MAX_ELLIPSE_M)
    result = associate(triggers, **options)
    if not reselect:
        return result
    events = reselect_events(triggers, result.events, options, min_sensors=offline_min_sensors)
    kept = {id(e) for e in result.events} & {id(e) for e in events}
    used = {id(t) for e in events for t in e.triggers}
    stats = dict(result.stats, events=len(events), recovered=len(events) - len(kept),
                 dropped=len(result.events) - len(kept))
    unexplained = tuple(t for t in triggers if id(t) not in used)
    stats["unexplained"] = len(unexplained)
    return Association(events, unexplained, stats)


def reselect_events(triggers, stream_events, options, min_sensors=4):
    """The best disjoint events among the streaming ones and every offline candidate.

    ``triggers``: every trigger (their history gives the direct-sound
    evidence, :func:`shotline.process_select.weights`); ``stream_events``:
    the streaming associator's events over them, which compete with the
    candidates of :func:`shotline.process_select.associate_offline` (at
    least ``min_sensors`` each: four, where the streaming stage by default
    asks five, as the evidence per trigger and the global choice keep out
    the chance fits) with a head start of ``STREAM_EVENT_BONUS``;
    ``options``: the association options (``sensors``, ``temperature_c``,
    ``tolerance_s``, ``max_range_m``, ``source_up_m``, ``max_ellipse_m``).
    Streaming events kept are returned as they are; new ones are numbered
    after them.  Returns the events in emission order.
    """
    from shotline.process_select import associate_offline, weights

    if not triggers:
        return tuple(stream_events)
    sensors = options["sensors"]
    names = sorted(sensors)
    index = {name: k for k, name in enumerate(names)}
    unknown = sorted({t.sensor for t in triggers} - set(index))
    if unknown:
        raise ValueError(f"trigger from sensor {unknown[0]!r} not in the sensor network")
    sensors_m = np.array([Trigger(n, sensors[n], 0.0).position_m for n in names])
    times = np.array([t.time_utc_s for t in triggers])
    which = np.array([index[t.sensor] for t in triggers])
    levels = np.array([np.nan if t.level_db is None else t.level_db for t in triggers], dtype=float)
    sta_lta = np.array([(t.features or {}).get("sta_lta", 1.0) for t in triggers], dtype=float)
    position = {id(t): k for k, t in enumerate(triggers)}
    given = [(e.fix, [position[id(t)] for t in e.triggers], np.asarray(e.residuals_s)) for e in stream_events]
    temperature_c = options.get("temperature_c", DEFAULT_TEMPERATURE_C)
    source_up_m = options.get("source_up_m")
    if source_up_m is None:
        source_up_m = float(np.median(sensors_m[:, 2]))
    found = associate_offline(times, which, sensors_m, weights(times, which, levels, sta_lta),
                              c_m_s=speed_of_sound_m_s(temperature_c), temperature_c=temperature_c,
                              tolerance_s=options.get("tolerance_s", AUDIO_TOLERANCE_S), min_sensors=min_sensors,
                              source_up_m=source_up_m, max_range_m=options.get("max_range_m", 1000.0),
                              max_ellipse_m=options.get("max_ellipse_m"), given=given,
                              given_bonus=STREAM_EVENT_BONUS)
    by_fix = {id(e.fix): e for e in stream_events}
    next_id = 1 + max((e.event_id for e in stream_events), default=0)
    events = []
    for fix, members in found:
        if id(fix) in by_fix:
            events.append(by_fix[id(fix)])
            continue
        chosen = [triggers[i] for i in members]
        resid = np.asarray(fix.residuals_s)[fix.used]
        order = np.argsort([t.time_utc_s for t in chosen], kind="stable")
        end = max(t.time_utc_s for t in chosen)
        events.append(Event(next_id, 0, fix, tuple(chosen[k] for k in order),
                            tuple(float(resid[k]) for k in order), (), end, end))
        next_id += 1
    return tuple(sorted(events, key=lambda e: e.t_emit_s))
