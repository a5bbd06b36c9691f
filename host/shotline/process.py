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
Offline, the triggers no streaming event took get a second, global look
(:mod:`shotline.process_select`): every set of at least four sensors that
fits one source is a candidate, valued by how much its members look like
direct sound and how well they fit, and the best disjoint candidates become
events too.
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


def process(manifest, *, detector_params=None, recover=True, **options):
    """Detect, associate and locate; returns :class:`shotline.associate.Association`.

    ``options`` go to :class:`shotline.associate.Associator`; the temperature
    defaults to the manifest's, the network to the manifest's sensors,
    ``min_sensors`` to 5 (4 when there are only 4 recordings), and the
    tolerance and ellipse gate to the values below.  With ``recover`` the
    triggers left unexplained get the global offline selection
    (:func:`recover_events`); ``stats["recovered"]`` counts its events.
    """
    triggers = detect_triggers(manifest, **(detector_params or {}))
    options.setdefault("temperature_c", manifest.temperature_c)
    options.setdefault("sensors", {r.sensor: r.position_m for r in manifest.recordings})
    options.setdefault("min_sensors", max(4, min(5, len(manifest.recordings))))
    options.setdefault("tolerance_s", AUDIO_TOLERANCE_S)
    options.setdefault("max_ellipse_m", AUDIO_MAX_ELLIPSE_M)
    result = associate(triggers, **options)
    if not recover:
        return result
    extra, left = recover_events(triggers, result.unexplained, options,
                                 first_id=1 + max((e.event_id for e in result.events), default=0))
    stats = dict(result.stats, recovered=len(extra), unexplained=len(left))
    return Association(tuple(sorted(result.events + extra, key=lambda e: e.t_emit_s)), left, stats)


def recover_events(triggers, unexplained, options, first_id=1):
    """Events among ``unexplained`` by the global offline selection.

    ``triggers``: every trigger (their history gives the direct-sound
    evidence); ``options``: the association options (``sensors``,
    ``temperature_c``, ``tolerance_s``, ``max_range_m``, ``source_up_m``,
    ``max_ellipse_m``).  At least four sensors per event: the evidence per
    trigger and the global choice keep out the chance fits that make the
    streaming associator ask for five.  Returns ``(events, still_unexplained)``.
    """
    from shotline.process_select import associate_offline, weights

    sensors = options["sensors"]
    names = sorted(sensors)
    index = {name: k for k, name in enumerate(names)}
    sensors_m = np.array([Trigger(n, sensors[n], 0.0).position_m for n in names])
    left = {id(t) for t in unexplained}
    if not triggers or len(left) < 4:
        return (), tuple(unexplained)
    times = np.array([t.time_utc_s for t in triggers])
    which = np.array([index[t.sensor] for t in triggers])
    levels = np.array([np.nan if t.level_db is None else t.level_db for t in triggers], dtype=float)
    sta_lta = np.array([(t.features or {}).get("sta_lta", 1.0) for t in triggers], dtype=float)
    w = weights(times, which, levels, sta_lta)
    pool = np.flatnonzero([id(t) in left for t in triggers])
    temperature_c = options.get("temperature_c", DEFAULT_TEMPERATURE_C)
    source_up_m = options.get("source_up_m")
    if source_up_m is None:
        source_up_m = float(np.median(sensors_m[:, 2]))
    found = associate_offline(times[pool], which[pool], sensors_m, w[pool],
                              c_m_s=speed_of_sound_m_s(temperature_c), temperature_c=temperature_c,
                              tolerance_s=options.get("tolerance_s", AUDIO_TOLERANCE_S), min_sensors=4,
                              source_up_m=source_up_m, max_range_m=options.get("max_range_m", 1000.0),
                              max_ellipse_m=options.get("max_ellipse_m"))
    events, used = [], set()
    for n, (fix, members) in enumerate(found):
        chosen = [triggers[pool[i]] for i in members]
        resid = np.asarray(fix.residuals_s)[fix.used]
        order = np.argsort([t.time_utc_s for t in chosen], kind="stable")
        end = max(t.time_utc_s for t in chosen)
        events.append(Event(first_id + n, 0, fix, tuple(chosen[k] for k in order),
                            tuple(float(resid[k]) for k in order), (), end, end))
        used.update(id(t) for t in chosen)
    return tuple(events), tuple(t for t in unexplained if id(t) not in used)
