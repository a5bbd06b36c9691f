"""Source models: gunshot muzzle blasts and the confusers a city makes.

These are MODELS, not recordings: simple waveforms with the durations, levels
and repetition patterns reported for each kind of sound, good enough to
exercise detection, association and location.  They are not evidence of how
a classifier behaves on real fireworks or backfires.

Every source expands into ``Impulse`` s: a short pressure waveform in pascals as
it would be measured 1 m from the source (free field), its time after the
source time, and its displacement from the source position (a firework
mortar bursts ~100 m up).  Levels are peak sound pressure levels (dB re
20 µPa) at 1 m before band-limiting to the sample rate.

- Muzzle blast (handgun, rifle): a Friedlander wave
  ``p(t) = P (1 - t/T) exp(-b t/T)`` with positive-phase duration ``T`` of
  0.3-0.6 ms (handgun) or 0.6-1.2 ms (rifle), i.e. a Weber-type spectrum
  peaking near ``1/(2T)``; 150-160 dB (handgun) and 160-170 dB (rifle) at 1 m;
  directivity ±6 dB (forward/back) when ``aim_deg`` is given.
- Firecracker string: 15-40 small blasts (T 0.1-0.25 ms, 138-148 dB) at random
  intervals over ``span_s``.
- Firework mortar: a launch thump (125 dB, T 4 ms) then ``delay_s`` later a
  burst 100-150 m up (150 dB, T 2-4 ms) and a crackle tail.
- Vehicle backfire: 1-2 pops (130-140 dB, T 1.5-3 ms) ringing in the exhaust
  (a damped 80-150 Hz resonance).
- Door slam: a 60-120 Hz thud decaying in ~40 ms with a weak click, 100-110 dB.
- Construction: jackhammer (metallic 1.5-3 kHz clicks at 15-25 Hz in bursts,
  ~120 dB) and pile driver (a heavy thump every ~1.2 s, ~130 dB).

Each kind is an entry of ``KINDS``: ``check(params)`` validates the
kind-specific scenario fields and ``impulses(params, fs, rng)`` returns the
impulses (randomised within the ranges above by ``rng``).
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

P_REF_PA = 20e-6
LEAD_SAMPLES = 32      # samples of every waveform before the source instant
_OVERSAMPLE = 8        # waveforms are synthesised at 8x and band-limited down


@dataclass(frozen=True)
class Impulse:
    """One acoustic impulse of a source.

    ``waveform_pa[LEAD_SAMPLES]`` is the instant ``t_s`` after the source time;
    ``offset_enu_m`` is the displacement from the source position; ``aim_deg``
    (azimuth clockwise from north, or None) makes the level directional.
    """
    t_s: float
    offset_enu_m: tuple
    waveform_pa: np.ndarray
    level_db_spl: float
    aim_deg: float = None


def db_to_pa(level_db_spl):
    return P_REF_PA * 10.0 ** (level_db_spl / 20.0)


def pa_to_db(pressure_pa):
    return 20.0 * math.log10(max(abs(pressure_pa), 1e-12) / P_REF_PA)


def _bandlimit(hi, fs):
    """Waveform synthesised at ``_OVERSAMPLE * fs`` (with lead) -> at ``fs``."""
    return resample_poly(hi, 1, _OVERSAMPLE).astype(np.float64)


def _time_axis(length_s, fs):
    fs_hi = fs * _OVERSAMPLE
    n = int(round(length_s * fs_hi))
    t = (np.arange(n + LEAD_SAMPLES * _OVERSAMPLE) - LEAD_SAMPLES * _OVERSAMPLE) / fs_hi
    return t


def friedlander(level_db_spl, t_plus_s, fs, b=1.0, length_s=None):
    """Friedlander blast wave at 1 m, band-limited to ``fs``: Pa, with lead."""
    length_s = length_s or max(12 * t_plus_s / b, 0.01)
    t = _time_axis(length_s, fs)
    x = np.where(t >= 0, (1 - t / t_plus_s) * np.exp(-b * np.clip(t, 0, None) / t_plus_s), 0.0)
    return _bandlimit(db_to_pa(level_db_spl) * x, fs)


def damped_sine(level_db_spl, freq_hz, decay_s, fs, rise_s=0.002, length_s=None):
    """A ringing resonance ``sin(2 pi f t) exp(-t/decay)`` with a raised-cosine onset."""
    length_s = length_s or 6 * decay_s
    t = _time_axis(length_s, fs)
    tt = np.clip(t, 0, None)
    onset = np.where(tt < rise_s, 0.5 - 0.5 * np.cos(np.pi * tt / rise_s), 1.0)
    x = np.where(t >= 0, onset * np.sin(2 * np.pi * freq_hz * tt) * np.exp(-tt / decay_s), 0.0)
    return _bandlimit(db_to_pa(level_db_spl) * x, fs)


def _mix(*waves):
    n = max(len(w) for w in waves)
    out = np.zeros(n)
    for w in waves:
        out[:len(w)] += w
    return out


def _check(params, allowed):
    unknown = set(params) - set(allowed)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; this kind takes {sorted(allowed)}")
    for key, (low, high) in allowed.items():
        if key in params and params[key] is not None:
            value = params[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not low <= value <= high:
                raise ValueError(f"{key}={value!r} must be a number in [{low}, {high}]")


def _level(params, rng, low, high):
    if params.get("level_db_spl") is not None:
        return float(params["level_db_spl"])
    return float(rng.uniform(low, high))


class _Kind:
    label = "unknown"   # coarse class: gunshot, firework, backfire, door_slam, construction
    fields = {}

    def check(self, params):
        _check(params, self.fields)


class MuzzleBlast(_Kind):
    """Handgun or rifle: ``shots`` at ``interval_s`` (±10 % jitter)."""
    label = "gunshot"

    def __init__(self, level_range_db, t_plus_range_s, interval_s):
        self.level_range_db = level_range_db
        self.t_plus_range_s = t_plus_range_s
        self.interval_s = interval_s
        self.fields = {"shots": (1, 100), "interval_s": (0.03, 10.0),
                       "level_db_spl": (100, 190), "aim_deg": (-360, 360)}

    def impulses(self, params, fs, rng):
        shots = int(params.get("shots", 1))
        interval = float(params.get("interval_s", self.interval_s))
        level = _level(params, rng, *self.level_range_db)
        t_plus = rng.uniform(*self.t_plus_range_s)
        out, t = [], 0.0
        for _ in range(shots):
            shot_level = level + rng.normal(0, 0.5)
            wave = friedlander(shot_level, t_plus * rng.uniform(0.95, 1.05), fs, b=1.2)
            out.append(Impulse(t, (0.0, 0.0, 0.0), wave, shot_level, params.get("aim_deg")))
            t += interval * rng.uniform(0.9, 1.1)
        return out


class Firecracker(_Kind):
    label = "firework"
    fields = {"pops": (1, 500), "span_s": (0.05, 60.0), "level_db_spl": (100, 170)}

    def impulses(self, params, fs, rng):
        pops = int(params.get("pops") or rng.integers(15, 41))
        span = float(params.get("span_s", 2.0))
        times = np.sort(rng.uniform(0, span, pops))
        times -= times[0]
        out = []
        for t in times:
            level = _level(params, rng, 138, 148) + rng.normal(0, 1.5)
            wave = friedlander(level, rng.uniform(0.1e-3, 0.25e-3), fs, b=1.5)
            offset = tuple(rng.normal(0, 0.5, 3) * (1, 1, 0))
            out.append(Impulse(float(t), offset, wave, level))
        return out


class FireworkMortar(_Kind):
    label = "firework"
    fields = {"delay_s": (0.5, 8.0), "burst_height_m": (20, 400), "level_db_spl": (100, 180)}

    def impulses(self, params, fs, rng):
        delay = float(params.get("delay_s", rng.uniform(2.0, 3.0)))
        height = float(params.get("burst_height_m", rng.uniform(100, 150)))
        level = _level(params, rng, 147, 153)
        drift = rng.normal(0, 10, 2)
        launch = friedlander(125.0, 4e-3, fs, b=1.0)
        out = [Impulse(0.0, (0.0, 0.0, 0.0), launch, 125.0),
               Impulse(delay, (drift[0], drift[1], height),
                       friedlander(level, rng.uniform(2e-3, 4e-3), fs, b=1.0), level)]
        for t in np.sort(rng.uniform(0.3, 1.8, int(rng.integers(10, 30)))):
            pop_level = 120.0 + rng.normal(0, 3)
            spread = rng.normal(0, 15, 3)
            out.append(Impulse(delay + float(t), (drift[0] + spread[0], drift[1] + spread[1],
                                                  height + spread[2]),
                               friedlander(pop_level, 0.2e-3, fs, b=1.5), pop_level))
        return out


class Backfire(_Kind):
    label = "backfire"
    fields = {"pops": (1, 10), "level_db_spl": (100, 160)}

    def impulses(self, params, fs, rng):
        pops = int(params.get("pops") or rng.integers(1, 3))
        level = _level(params, rng, 130, 140)
        out, t = [], 0.0
        for _ in range(pops):
            blast = friedlander(level, rng.uniform(1.5e-3, 3e-3), fs, b=0.8)
            ring = damped_sine(level - 8, rng.uniform(80, 150), rng.uniform(0.02, 0.04), fs)
            out.append(Impulse(t, (0.0, 0.0, 0.0), _mix(blast, ring), level))
            t += rng.uniform(0.08, 0.4)
        return out


class DoorSlam(_Kind):
    label = "door_slam"
    fields = {"level_db_spl": (80, 130)}

    def impulses(self, params, fs, rng):
        level = _level(params, rng, 100, 110)
        thud = damped_sine(level, rng.uniform(60, 120), rng.uniform(0.03, 0.05), fs, rise_s=0.004)
        click = friedlander(level - 10, 0.3e-3, fs, b=1.5)
        return [Impulse(0.0, (0.0, 0.0, 0.0), _mix(thud, click), level)]


class Jackhammer(_Kind):
    """Bursts (1-3 s on, 0.5-1 s off) of metallic clicks at ``rate_hz``."""
    label = "construction"
    fields = {"duration_s": (0.5, 600), "rate_hz": (5, 40), "level_db_spl": (90, 140)}

    def impulses(self, params, fs, rng):
        duration = float(params.get("duration_s", 6.0))
        rate = float(params.get("rate_hz", rng.uniform(15, 25)))
        level = _level(params, rng, 117, 123)
        click = _mix(damped_sine(level, rng.uniform(1500, 3000), 0.003, fs, rise_s=1e-4),
                     friedlander(level - 6, 0.5e-3, fs, b=1.0))
        out, t = [], 0.0
        while t < duration:
            burst_end = min(duration, t + rng.uniform(1.0, 3.0))
            while t < burst_end:
                gain = 10 ** (rng.normal(0, 1.0) / 20)
                out.append(Impulse(t, (0.0, 0.0, 0.0), click * gain, level))
                t += (1.0 / rate) * rng.uniform(0.95, 1.05)
            t += rng.uniform(0.5, 1.0)
        return out


class PileDriver(_Kind):
    label = "construction"
    fields = {"duration_s": (0.5, 600), "interval_s": (0.3, 10), "level_db_spl": (100, 150)}

    def impulses(self, params, fs, rng):
        duration = float(params.get("duration_s", 10.0))
        interval = float(params.get("interval_s", 1.2))
        level = _level(params, rng, 127, 133)
        thump = _mix(friedlander(level, 5e-3, fs, b=1.0),
                     damped_sine(level - 10, rng.uniform(40, 70), 0.08, fs))
        return [Impulse(float(t), (0.0, 0.0, 0.0), thump, level)
                for t in np.arange(0.0, duration, interval)]


KINDS = {
    "handgun": MuzzleBlast((150, 160), (0.3e-3, 0.6e-3), 0.3),
    "rifle": MuzzleBlast((160, 170), (0.6e-3, 1.2e-3), 0.12),
    "firecracker": Firecracker(),
    "firework_mortar": FireworkMortar(),
    "backfire": Backfire(),
    "door_slam": DoorSlam(),
    "jackhammer": Jackhammer(),
    "pile_driver": PileDriver(),
}


def directivity_db(aim_deg, azimuth_to_sensor_deg):
    """Muzzle-blast directivity: +6 dB on the line of fire, -6 dB behind, 0 when unaimed."""
    if aim_deg is None:
        return 0.0
    return 6.0 * math.cos(math.radians(azimuth_to_sensor_deg - aim_deg))
