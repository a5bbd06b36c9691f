"""Render a scenario: per-sensor 16-bit audio and the truth for scoring.

Per sensor the pressure at the microphone is background noise (microphone
self noise, traffic-like rumble, gusty wind) plus every source impulse
carried along its paths (:mod:`.propagation`).  The microphone then turns
pascals into counts: its full scale is ``full_scale_db_spl`` as the RMS of a
sine (INMP441: -26 dBFS at 94 dB SPL, so 0 dBFS = 120 dB SPL, peak 28.3 Pa),
times the unit's gain (``gain_db``, drawn with ``gain_spread_db`` unless
given), clipped to int16.

Each sensor's clock is off by ``clock_error_s`` (drawn with the microphone's
``clock_error_s`` standard deviation unless given): the recording REALLY
starts at ``start_utc_s`` but the sensor stamps it ``start_utc_s +
clock_error_s``.  The truth keeps both.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from shotline.acoustics import speed_of_sound_m_s
from shotline.geo import LocalFrame

from .propagation import Propagator, paths
from .sources import KINDS, LEAD_SAMPLES, db_to_pa, directivity_db, pa_to_db

FULL_SCALE_COUNTS = 32767


@dataclass(frozen=True)
class SensorTrack:
    """One simulated sensor: where it is, its unit errors and its audio (int16)."""
    id: str
    position_llh: tuple
    position_enu_m: tuple
    gain_db: float
    clock_error_s: float
    start_utc_s: float          # true time of sample 0
    reported_start_utc_s: float  # what the sensor's clock says sample 0 was
    audio: np.ndarray


@dataclass(frozen=True)
class Rendering:
    scenario: object
    frame: LocalFrame
    speed_of_sound_m_s: float
    sensors: tuple
    truth: dict


def full_scale_pa(full_scale_db_spl):
    """Peak pressure (Pa) at 0 dBFS for a full-scale sine of RMS ``full_scale_db_spl``."""
    return db_to_pa(full_scale_db_spl) * math.sqrt(2.0)


def _scaled(x, level_db_spl):
    rms = float(np.sqrt(np.mean(x * x))) or 1.0
    return x * (db_to_pa(level_db_spl) / rms)


def _smooth_envelope(n, fs, timescale_s, rng):
    """A positive random envelope (mean 1) varying over ``timescale_s``."""
    step = max(1, int(timescale_s * fs / 4))
    knots = rng.uniform(0.2, 1.8, n // step + 2)
    return np.interp(np.arange(n), np.arange(len(knots)) * step, knots)


def background(n, fs, bg, weather, rng):
    """Background pressure (Pa) of ``n`` samples: self noise + traffic + wind."""
    out = rng.normal(0.0, db_to_pa(bg.self_noise_db_spl), n)
    if bg.traffic_db_spl > 0:
        sos = butter(2, [30, min(1000, fs * 0.45)], btype="bandpass", fs=fs, output="sos")
        traffic = sosfilt(sos, rng.normal(0, 1, n)) * _smooth_envelope(n, fs, 6.0, rng)
        out += _scaled(traffic, bg.traffic_db_spl)
    if bg.wind_noise and weather.wind_speed_m_s > 0:
        sos = butter(2, 120, btype="lowpass", fs=fs, output="sos")
        gusts = _smooth_envelope(n, fs, 1.5, rng) ** 2
        wind = sosfilt(sos, rng.normal(0, 1, n)) * gusts
        out += _scaled(wind, 30 + 25 * math.log10(1 + weather.wind_speed_m_s))
    return out


def _azimuth_deg(src, rcv):
    return math.degrees(math.atan2(rcv[0] - src[0], rcv[1] - src[1])) % 360.0


def render(scenario, progress=None):
    """Scenario -> ``Rendering`` (audio per sensor and the truth dict).

    ``progress(done, total)`` is called after each sensor if given.
    """
    sc = scenario
    fs = sc.sample_rate_hz
    frame = LocalFrame(*sc.origin_llh)
    w = sc.weather
    c = float(speed_of_sound_m_s(w.temperature_c, w.relative_humidity_pct, w.pressure_kpa))
    wind = w.wind_enu_m_s
    prop = Propagator(fs, w)
    n = int(round(sc.duration_s * fs))
    rng = np.random.default_rng([sc.seed, 0])
    p_fs = full_scale_pa(sc.microphone.full_scale_db_spl)

    # Sources -> impulses (shared by every sensor).
    expanded = []
    for k, src in enumerate(sc.sources):
        pos = frame.to_enu([src.lat_deg, src.lon_deg, sc.origin_llh[2] + src.height_m])
        imps = KINDS[src.kind].impulses(src.params, fs, np.random.default_rng([sc.seed, 1, k]))
        expanded.append((src, pos, imps))

    tracks, arrivals = [], {}
    for i, s in enumerate(sc.sensors):
        srng = np.random.default_rng([sc.seed, 2, i])
        llh = (s.lat_deg, s.lon_deg, sc.origin_llh[2] + s.height_m)
        pos = frame.to_enu(llh)
        gain_db = s.gain_db if s.gain_db is not None else \
            float(srng.normal(0, sc.microphone.gain_spread_db))
        clock = s.clock_error_s if s.clock_error_s is not None else \
            float(srng.normal(0, sc.microphone.clock_error_s))
        x = background(n, fs, sc.background, w, srng)
        for k, (src, src_pos, imps) in enumerate(expanded):
            for j, imp in enumerate(imps):
                ipos = src_pos + np.asarray(imp.offset_enu_m)
                prng = np.random.default_rng([sc.seed, 3, i, k, j])
                plist = paths(ipos, pos, c, wind, sc.propagation, prng)
                t_rel = (src.time_utc_s + imp.t_s - sc.start_utc_s) * fs
                i0 = int(math.floor(t_rel))
                frac_s = (t_rel - i0) / fs
                plist = [type(p)(p.distance_m, p.travel_s + frac_s, p.gain) for p in plist]
                gain = 10 ** (directivity_db(imp.aim_deg, _azimuth_deg(ipos, pos)) / 20)
                shift, sig = prop.apply(imp.waveform_pa, plist, gain)
                at = i0 - LEAD_SAMPLES + shift
                lo, hi = max(at, 0), min(at + len(sig), n)
                if hi > lo:
                    x[lo:hi] += sig[lo - at:hi - at]
                direct = prop.apply(imp.waveform_pa, plist[:1], gain)[1]
                peak_pa = float(np.max(np.abs(direct)))
                arrivals[(i, k, j)] = {
                    "sensor": s.id,
                    "arrival_utc_s": src.time_utc_s + imp.t_s + plist[0].travel_s - frac_s,
                    "distance_m": plist[0].distance_m,
                    "peak_db_spl": round(pa_to_db(peak_pa), 2),
                }
        counts = x * (10 ** (gain_db / 20) / p_fs * FULL_SCALE_COUNTS)
        clipped = np.abs(counts) > FULL_SCALE_COUNTS
        audio = np.clip(np.round(counts), -32768, 32767).astype(np.int16)
        for (ii, k, j), a in arrivals.items():
            if ii == i:
                at = int((a["arrival_utc_s"] - sc.start_utc_s) * fs)
                a["peak_dbfs"] = round(a["peak_db_spl"] + gain_db - sc.microphone.full_scale_db_spl
                                       - 20 * math.log10(math.sqrt(2)), 2)
                a["clipped"] = bool(clipped[max(at, 0):max(at, 0) + fs // 100].any())
        tracks.append(SensorTrack(
            id=s.id, position_llh=llh, position_enu_m=tuple(float(v) for v in pos),
            gain_db=gain_db, clock_error_s=clock, start_utc_s=sc.start_utc_s,
            reported_start_utc_s=sc.start_utc_s + clock, audio=audio))
        if progress:
            progress(i + 1, len(sc.sensors))
    truth = _truth(sc, frame, c, expanded, tracks, arrivals)
    return Rendering(scenario=sc, frame=frame, speed_of_sound_m_s=c, sensors=tuple(tracks),
                     truth=truth)


def _truth(sc, frame, c, expanded, tracks, arrivals):
    from shotline.timeutil import format_utc

    sources = []
    for k, (src, pos, imps) in enumerate(expanded):
        impulses = []
        for j, imp in enumerate(imps):
            ipos = pos + np.asarray(imp.offset_enu_m)
            per_sensor = []
            for i, _ in enumerate(tracks):
                a = dict(arrivals[(i, k, j)])
                a["arrival_utc"] = format_utc(a.pop("arrival_utc_s"))
                a["distance_m"] = round(a["distance_m"], 3)
                per_sensor.append(a)
            impulses.append({
                "time_utc": format_utc(src.time_utc_s + imp.t_s),
                "position_llh": [round(v, 8) for v in frame.to_llh(ipos).tolist()],
                "position_enu_m": [round(v, 3) for v in ipos.tolist()],
                "level_db_spl_1m": round(imp.level_db_spl, 2),
                "arrivals": per_sensor,
            })
        label = KINDS[src.kind].label
        sources.append({
            "id": src.id, "kind": src.kind, "class": label, "is_gunshot": label == "gunshot",
            "time_utc": format_utc(src.time_utc_s),
            "position_llh": [round(v, 8) for v in frame.to_llh(pos).tolist()],
            "position_enu_m": [round(v, 3) for v in pos.tolist()],
            "n_impulses": len(imps), "params": src.params, "impulses": impulses,
        })
    w = sc.weather
    return {
        "scenario": sc.name,
        "start_utc": format_utc(sc.start_utc_s),
        "duration_s": sc.duration_s,
        "sample_rate_hz": sc.sample_rate_hz,
        "origin_llh": list(sc.origin_llh),
        "speed_of_sound_m_s": round(c, 3),
        "weather": {"temperature_c": w.temperature_c, "relative_humidity_pct":
                    w.relative_humidity_pct, "pressure_kpa": w.pressure_kpa,
                    "wind_speed_m_s": w.wind_speed_m_s, "wind_from_deg": w.wind_from_deg},
        "sensors": [{
            "sensor": t.id, "position_llh": [round(v, 8) for v in t.position_llh],
            "position_enu_m": [round(v, 3) for v in t.position_enu_m],
            "gain_db": round(t.gain_db, 3), "clock_error_s": t.clock_error_s,
            "start_utc": format_utc(t.start_utc_s, 9),
            "reported_start_utc": format_utc(t.reported_start_utc_s, 9),
        } for t in tracks],
        "sources": sources,
    }
