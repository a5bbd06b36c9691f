"""Synthetic muzzle-blast-like pulses in noise, with known onsets (detector tests and eval).

Pressures are in int16 counts; times in seconds from the start of the signal.
"""
import numpy as np


def friedlander(n, rate_hz, onset_s, amplitude, duration_s=0.002, rise_s=0.0):
    """Friedlander wave p(t) = A (1 - t/T) exp(-t/T) for t >= onset, sampled exactly.

    ``rise_s`` > 0 gives a linear rise from 0 (a band-limited shock front).
    """
    t = np.arange(n) / rate_hz - onset_s
    tt = np.maximum(t, 0.0)
    p = amplitude * (1 - tt / duration_s) * np.exp(-tt / duration_s)
    if rise_s > 0:
        p = p * np.clip(t / rise_s, 0.0, 1.0)
    return np.where(t >= 0, p, 0.0)


def noise(kind, n, rate_hz, rng):
    """Unit-RMS noise: 'white', 'pink' (1/f power), or 'traffic' (rumble below ~300 Hz
    plus a weaker broadband hiss and slow amplitude modulation)."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / rate_hz)
        spec[1:] /= np.sqrt(f[1:])
        spec[0] = 0
        x = np.fft.irfft(spec, n)
    elif kind == "traffic":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / rate_hz)
        spec *= 1 / (1 + (f / 150.0) ** 2)
        x = np.fft.irfft(spec, n)
        x /= np.std(x)
        x *= 1 + 0.3 * np.sin(2 * np.pi * 0.7 * np.arange(n) / rate_hz)
        x += 0.2 * rng.standard_normal(n)
    else:
        raise ValueError(kind)
    return x / np.std(x)


def scene(kind, rate_hz, onsets_s, snr_db, seconds=1.5, noise_rms=200.0, seed=0, rise_s=0.0):
    """int16 signal: noise of ``noise_rms`` plus pulses with peak/noise-RMS = snr_db."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    x = noise_rms * noise(kind, n, rate_hz, rng)
    amp = noise_rms * 10 ** (snr_db / 20)
    for t0 in onsets_s:
        x = x + friedlander(n, rate_hz, t0, amp, rise_s=rise_s)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)
