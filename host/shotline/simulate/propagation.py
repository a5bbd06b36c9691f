"""Sound paths from a source to a microphone, applied in the frequency domain.

A path has a length ``r`` (m), a travel time and a gain.  Its transfer
function at frequency ``f`` is

    H(f) = g / r * 10 ** (-alpha(f) * r / 20) * exp(-2 pi i f tau)

(spherical spreading from the 1 m reference, ISO 9613-1 absorption ``alpha``
from :mod:`shotline.acoustics`, a delay ``tau`` that need not be a whole
sample).  Travel time uses the effective speed ``c + w . u``: the speed of
sound for the temperature plus the wind component along the path.

Each source-sensor pair gets the direct path, a ground reflection (image
source below the ground, pressure reflection coefficient ``R``) and a few
random wall echoes 5-80 ms later and 3-12 dB weaker; the pair also loses a
random 0..``excess_attenuation_db`` on every path (buildings, barriers), so an
echo is never louder than the direct sound (line of sight is assumed).  The
echoes are a statistical model of a street, not ray tracing.
"""
import math
from dataclasses import dataclass

import numpy as np

from shotline.acoustics import absorption_db_per_m


@dataclass(frozen=True)
class Path:
    """One propagation path: length (m), travel time (s) and linear gain (besides 1/r)."""
    distance_m: float
    travel_s: float
    gain: float


def travel_time_s(src_enu_m, rcv_enu_m, speed_m_s, wind_en_m_s=(0.0, 0.0)):
    """Straight-ray travel time (s) and distance (m) with the wind along the ray."""
    d = np.asarray(rcv_enu_m, float) - np.asarray(src_enu_m, float)
    r = float(np.linalg.norm(d))
    if r == 0.0:
        return 0.0, 0.0
    along = (wind_en_m_s[0] * d[0] + wind_en_m_s[1] * d[1]) / r
    return r / (speed_m_s + along), r


def paths(src_enu_m, rcv_enu_m, speed_m_s, wind_en_m_s, propagation, rng):
    """The direct path (first), a ground reflection and ``propagation.echoes`` echoes."""
    src = np.asarray(src_enu_m, float)
    rcv = np.asarray(rcv_enu_m, float)
    excess = 10 ** (-rng.uniform(0, propagation.excess_attenuation_db) / 20)
    t0, r0 = travel_time_s(src, rcv, speed_m_s, wind_en_m_s)
    r0 = max(r0, 1.0)
    out = [Path(r0, t0, excess)]
    if propagation.ground_reflection > 0 and src[2] > 0 and rcv[2] > 0:
        image = src * (1, 1, -1)
        tg, rg = travel_time_s(image, rcv, speed_m_s, wind_en_m_s)
        out.append(Path(rg, tg, propagation.ground_reflection * excess))
    for _ in range(propagation.echoes):
        extra_s = rng.uniform(0.005, 0.080)
        loss = 10 ** (-rng.uniform(3, 12) / 20)
        out.append(Path(r0 + extra_s * speed_m_s, t0 + extra_s, loss * excess))
    return out


class Propagator:
    """Applies paths to 1 m waveforms at one sample rate and weather."""

    def __init__(self, sample_rate_hz, weather):
        self.fs = sample_rate_hz
        self.weather = weather
        self._alpha = {}

    def _alpha_db_per_m(self, n_fft):
        if n_fft not in self._alpha:
            f = np.fft.rfftfreq(n_fft, 1.0 / self.fs)
            w = self.weather
            self._alpha[n_fft] = np.asarray(absorption_db_per_m(
                f, w.temperature_c, w.relative_humidity_pct, w.pressure_kpa))
        return self._alpha[n_fft]

    def apply(self, waveform_pa, path_list, gain=1.0):
        """Pressure (Pa) at the microphone from ``waveform_pa`` (1 m, with its lead).

        Returns ``(shift, signal)``: ``signal[k]`` is heard ``shift`` samples
        after ``waveform_pa[k]`` would be at the source (``shift`` is the
        direct travel time rounded down to a sample; the rest of every delay
        is applied as a phase shift).
        """
        direct = path_list[0].travel_s
        base = int(math.floor(direct * self.fs))
        span_s = max(p.travel_s for p in path_list) - base / self.fs
        n = len(waveform_pa) + int(math.ceil(span_s * self.fs)) + 64
        n_fft = 1 << (n - 1).bit_length()
        f = np.fft.rfftfreq(n_fft, 1.0 / self.fs)
        alpha = self._alpha_db_per_m(n_fft)
        h = np.zeros(len(f), complex)
        for p in path_list:
            tau = p.travel_s - base / self.fs
            h += (gain * p.gain / p.distance_m) * 10 ** (-alpha * p.distance_m / 20) \
                * np.exp(-2j * np.pi * f * tau)
        out = np.fft.irfft(np.fft.rfft(waveform_pa, n_fft) * h, n_fft)[:n]
        return base, out
