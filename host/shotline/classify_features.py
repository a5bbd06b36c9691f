"""Event-level features for the classifier, from what the sensors reported.

An *event* is one impulse located from several sensors' triggers.  The
features combine the detector's per-trigger features (never audio) with what
the location makes possible:

- ``source_level_db``: each sensor's received peak level (dB SPL) propagated
  back to 1 m from the located source, then the median across sensors::

      L_1m = L_received + 20 log10(r / 1 m) + alpha(f_ref) * (r - 1 m)

  with ``alpha`` the ISO 9613-1 absorption (``shotline.acoustics``) at
  ``LEVEL_REFERENCE_HZ``.  A muzzle blast (about 140-165 dB at 1 m) is far
  louder at the source than a door slam or a clap (about 100-125 dB).
- ``source_level_spread_db``: median absolute deviation of those estimates
  (consistency of the propagation model with the location).
- pulse shape: median rise time, width and decay across sensors (log10 s).
- spectral balance: median ``band_high_db - band_low_db`` as received, and
  the same corrected for the extra absorption the high band suffers over the
  path (``spectral_tilt_at_source_db``); ``band_mid_db - band_low_db``.
- ``n_sensors`` that heard it and ``log10_location_error_m`` (how consistent
  the location is).
- burst pattern: impulses from the same place in quick succession:
  ``log2_burst_n``, median spacing ``log10_burst_interval_s`` and its
  coefficient of variation ``burst_interval_cv`` (semi-automatic fire is
  fairly regular, a jackhammer is a metronome, firework crackle is random).

Features that need a location or a burst are NaN when it is absent; the model
has a missing indicator for each of them.

Microphone calibration: the INMP441 gives -26 dBFS at 94 dB SPL (data
sheet, 1 kHz sine, dBFS as RMS re a full-scale sine), so a full-scale sine
is 120 dB SPL RMS: the firmware's ``full_scale_db_spl`` default
(``shotline_fw.config``, see ``hardware/README.md``), read from there.  A
full-scale *peak* (32768 counts) is then 120 + 3.01 = 123.01 dB SPL peak, and
a trigger's ``peak_dbfs`` (peak re 32768) becomes ``peak_dbfs +
FULL_SCALE_PEAK_DB_SPL``.  A trigger that already carries ``level_db_spl``
(calibrated elsewhere, e.g. ShotSpotter's own pulse levels) is used as it is.
"""
import math
from dataclasses import dataclass

import numpy as np
from shotline_fw.config import DEFAULTS as _SENSOR_DEFAULTS
from shotline.acoustics import DEFAULT_TEMPERATURE_C
from shotline.acoustics import STANDARD_PRESSURE_KPA as DEFAULT_PRESSURE_KPA

# RMS SPL of a full-scale sine (INMP441: -26 dBFS at 94 dB SPL -> 120 dB SPL).
FULL_SCALE_DB_SPL = float(_SENSOR_DEFAULTS["full_scale_db_spl"])
FULL_SCALE_PEAK_DB_SPL = FULL_SCALE_DB_SPL + 20.0 * math.log10(math.sqrt(2.0))

# Frequency at which the broadband peak level is corrected for absorption: the
# muzzle blast's energy is concentrated around 0.5-2 kHz in the far field.
LEVEL_REFERENCE_HZ = 1000.0


def _band_centres_hz():
    """Geometric centre of each detector band (``shotline_fw.detconfig`` edges)."""
    from shotline_fw.detconfig import DEFAULTS

    lo, mid, hi = DEFAULTS["band_edges_hz"]
    hp = DEFAULTS["highpass_hz"]
    return {"low": math.sqrt(hp * lo), "mid": math.sqrt(lo * mid), "high": math.sqrt(mid * hi)}


# Representative frequencies of the detector's bands (about 316, 1000, 2828 Hz).
BAND_CENTRES_HZ = _band_centres_hz()

DEFAULT_RELATIVE_HUMIDITY_PCT = 70.0

# Burst rhythm feature: impulses from within RHYTHM_RADIUS_M of each other (one
# shooter's place, tighter than an incident's shotline.incidents.BURST_RADIUS_M),
# each no more than RHYTHM_GAP_S after the previous one, are one burst.
RHYTHM_GAP_S = 2.0
RHYTHM_RADIUS_M = 40.0

# (name, needs): needs is "" (always available), "location" or "burst".
FEATURES = (
    ("source_level_db", "location"),
    ("source_level_spread_db", "location"),
    ("spectral_tilt_at_source_db", "location"),
    ("log10_location_error_m", "location"),
    ("log10_rise_time_s", ""),
    ("log10_width_s", ""),
    ("log10_decay_s", ""),
    ("spectral_tilt_db", ""),
    ("mid_minus_low_db", ""),
    ("n_sensors", ""),
    ("log2_burst_n", ""),
    ("log10_burst_interval_s", "burst"),
    ("burst_interval_cv", "burst"),
)
FEATURE_NAMES = tuple(name for name, _ in FEATURES)
LOCATION_FEATURES = tuple(name for name, needs in FEATURES if needs == "location")


class FeatureError(ValueError):
    """An event that cannot be turned into features (says what is wrong)."""


@dataclass(frozen=True)
class SensorReport:
    """What one sensor reported about one impulse.

    ``level_db_spl`` is the received peak level; ``position_m`` the sensor's
    local ENU position (metres) or ``None``; times in seconds; band levels in dB.
    """

    level_db_spl: float
    position_m: tuple = None
    rise_time_s: float = math.nan
    width_s: float = math.nan
    decay_s: float = math.nan
    band_low_db: float = math.nan
    band_mid_db: float = math.nan
    band_high_db: float = math.nan


def _get(obj, key, default=None):
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _float(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def sensor_report(trigger, position_m=None):
    """A ``SensorReport`` from a trigger (``detect.Trigger`` or its dict).

    The level is ``level_db_spl`` when present, else ``peak_dbfs`` plus the
    microphone's full-scale peak level (``FULL_SCALE_PEAK_DB_SPL``).  The
    sensor position comes from ``position_m`` or the trigger's
    ``sensor_position_m``.
    """
    level = _float(_get(trigger, "level_db_spl"))
    if math.isnan(level):
        level = _float(_get(trigger, "peak_dbfs")) + FULL_SCALE_PEAK_DB_SPL
    if position_m is None:
        position_m = _get(trigger, "sensor_position_m")
    pos = None if position_m is None else tuple(float(v) for v in position_m)
    return SensorReport(
        level_db_spl=level,
        position_m=pos,
        rise_time_s=_float(_get(trigger, "rise_time_s")),
        width_s=_float(_get(trigger, "width_s")),
        decay_s=_float(_get(trigger, "decay_s")),
        band_low_db=_float(_get(trigger, "band_low_db")),
        band_mid_db=_float(_get(trigger, "band_mid_db")),
        band_high_db=_float(_get(trigger, "band_high_db")),
    )


def absorption_db_per_m(frequency_hz, temperature_c, relative_humidity_pct,
                        pressure_kpa=DEFAULT_PRESSURE_KPA):
    """ISO 9613-1 pure-tone absorption (dB/m), from ``shotline.acoustics``."""
    from shotline.acoustics import absorption_db_per_m as iso9613

    return float(iso9613(frequency_hz, temperature_c, relative_humidity_pct, pressure_kpa))


def propagation_loss_db(distance_m, frequency_hz, temperature_c=DEFAULT_TEMPERATURE_C,
                        relative_humidity_pct=DEFAULT_RELATIVE_HUMIDITY_PCT):
    """Loss from 1 m to ``distance_m``: spherical spreading plus absorption (dB).

    ``20 log10(r / 1 m) + alpha(f) (r - 1 m)``; ``r`` is clipped to >= 1 m.
    Works on scalars and arrays.
    """
    r = np.maximum(np.asarray(distance_m, dtype=float), 1.0)
    alpha = absorption_db_per_m(frequency_hz, temperature_c, relative_humidity_pct)
    return 20.0 * np.log10(r) + alpha * (r - 1.0)


def source_levels_db(received_db_spl, distances_m, temperature_c=DEFAULT_TEMPERATURE_C,
                     relative_humidity_pct=DEFAULT_RELATIVE_HUMIDITY_PCT,
                     frequency_hz=LEVEL_REFERENCE_HZ):
    """Each sensor's received level propagated back to 1 m (dB SPL at 1 m)."""
    received = np.asarray(received_db_spl, dtype=float)
    return received + propagation_loss_db(distances_m, frequency_hz, temperature_c,
                                          relative_humidity_pct)


def robust_source_level_db(received_db_spl, distances_m, **kwargs):
    """(median, median absolute deviation) of the back-propagated levels, dB.

    The median resists a sensor that heard only an echo or a diffracted,
    shadowed arrival (a few dB to 20 dB low) or clipped.
    """
    levels = source_levels_db(received_db_spl, distances_m, **kwargs)
    levels = levels[np.isfinite(levels)]
    if levels.size == 0:
        return math.nan, math.nan
    median = float(np.median(levels))
    return median, float(np.median(np.abs(levels - median)))


def burst_pattern(times_s):
    """(n impulses, median spacing s, spacing coefficient of variation).

    Spacing is NaN for a single impulse; the CV needs three impulses.
    """
    t = np.sort(np.asarray(times_s, dtype=float))
    n = int(t.size)
    if n < 2:
        return n, math.nan, math.nan
    gaps = np.diff(t)
    median = float(np.median(gaps))
    cv = float(np.std(gaps) / np.mean(gaps)) if n >= 3 and np.mean(gaps) > 0 else math.nan
    return n, median, cv


# Durations are floored at about one sample at 12-16 kHz before taking logs:
# a detector reports 0 s when the peak is the onset sample.
MIN_DURATION_S = 5e-5


def _log10_duration(x_s):
    return math.log10(max(x_s, MIN_DURATION_S)) if math.isfinite(x_s) else math.nan


def _log10(x):
    return math.log10(x) if x > 0 and math.isfinite(x) else math.nan


def _median(values):
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    return float(np.median(v)) if v.size else math.nan


def event_features(reports, source_position_m=None, location_error_m=math.nan,
                   burst_times_s=(), temperature_c=DEFAULT_TEMPERATURE_C,
                   relative_humidity_pct=DEFAULT_RELATIVE_HUMIDITY_PCT):
    """Feature dict (``FEATURE_NAMES`` -> float, NaN = missing) for one event.

    ``reports``: the ``SensorReport`` of every sensor that heard the impulse.
    ``source_position_m``: located source (ENU metres) or ``None``.
    ``location_error_m``: a size of the location uncertainty (e.g. the 95 %
    ellipse semi-major axis), NaN if unknown.  ``burst_times_s``: times of all
    impulses in this event's burst (including itself); empty = just this one.
    """
    reports = list(reports)
    if not reports:
        raise FeatureError("an event needs at least one sensor report")
    f = dict.fromkeys(FEATURE_NAMES, math.nan)
    located = [r for r in reports if r.position_m is not None and math.isfinite(r.level_db_spl)]
    if source_position_m is not None and located:
        src = np.asarray(source_position_m, dtype=float)
        if src.shape != (3,) or not np.all(np.isfinite(src)):
            raise FeatureError(
                f"source position must be 3 finite metres, got {source_position_m!r}")
        sensors = np.asarray([r.position_m for r in located], dtype=float)
        dist = np.linalg.norm(sensors - src, axis=1)
        level, spread = robust_source_level_db(
            [r.level_db_spl for r in located], dist,
            temperature_c=temperature_c, relative_humidity_pct=relative_humidity_pct)
        f["source_level_db"] = level
        f["source_level_spread_db"] = spread
        air = (temperature_c, relative_humidity_pct)
        extra_db = (absorption_db_per_m(BAND_CENTRES_HZ["high"], *air)
                    - absorption_db_per_m(BAND_CENTRES_HZ["low"], *air))
        f["spectral_tilt_at_source_db"] = _median(
            r.band_high_db - r.band_low_db + extra_db * d for r, d in zip(located, dist))
        f["log10_location_error_m"] = _log10(max(_float(location_error_m), 1.0)) \
            if math.isfinite(_float(location_error_m)) else math.nan
    f["log10_rise_time_s"] = _log10_duration(_median(r.rise_time_s for r in reports))
    f["log10_width_s"] = _log10_duration(_median(r.width_s for r in reports))
    f["log10_decay_s"] = _log10_duration(_median(r.decay_s for r in reports))
    f["spectral_tilt_db"] = _median(r.band_high_db - r.band_low_db for r in reports)
    f["mid_minus_low_db"] = _median(r.band_mid_db - r.band_low_db for r in reports)
    f["n_sensors"] = float(len(reports))
    n, interval, cv = (burst_pattern(burst_times_s) if len(burst_times_s)
                       else (1, math.nan, math.nan))
    f["log2_burst_n"] = math.log2(max(n, 1))
    f["log10_burst_interval_s"] = _log10_duration(interval)
    f["burst_interval_cv"] = cv
    return f


def group_bursts(times_s, positions_m, gap_s=RHYTHM_GAP_S, radius_m=RHYTHM_RADIUS_M):
    """Burst label per event: same place, each within ``gap_s`` of the last.

    ``positions_m``: per event a 3-vector (ENU m) or ``None``; an event with no
    position is a burst of its own.  Returns a list of ints (burst index per
    event, in input order).
    """
    order = np.argsort(np.asarray(times_s, dtype=float), kind="stable")
    labels = [0] * len(order)
    bursts = []  # [last time, position, label]
    for i in order:
        t, p = float(times_s[i]), positions_m[i]
        match = None
        if p is not None:
            p = np.asarray(p, dtype=float)
            for b in bursts:
                if (b[1] is not None and t - b[0] <= gap_s
                        and float(np.linalg.norm(p - b[1])) <= radius_m):
                    match = b
                    break
        if match is None:
            match = [t, p, len(bursts)]
            bursts.append(match)
        match[0] = t
        labels[i] = match[2]
    return labels
