"""Detector configuration: human parameters -> the fixed-point impulse_config_t.

The single source of truth for the impulse detector's defaults, read by the
firmware (packed into the natmod's struct) and by the host (shotline.detect,
through cffi).  Valid MicroPython and CPython; no numpy.

``config(sample_rate_hz, **params)`` returns the int32 fields of
``impulse_config_t`` (native/impulse.h) as a tuple, in ``FIELDS`` order.
Time constants become powers of two (shifts), levels become Q8/Q16 integers,
filter coefficients Q14, so the C never divides or uses floats.

Frequency bands of the band-energy features (one-pole crossovers, so the
edges are -3 dB points with gentle slopes; all below 4 kHz so 8 kHz works):
low = high-pass corner .. ``band_edges_hz[0]``, mid = ``[0]`` .. ``[1]``,
high = ``[1]`` .. ``[2]``.
"""
import math

RATE_MIN_HZ = 8000
RATE_MAX_HZ = 48000
RING_N = 512  # IMPULSE_RING_N in native/impulse.h
COEF_ONE = 16384  # Q14
ENV_ONE = 65536  # Q16: one LSB of mean |y|
FULL_SCALE = 32768

FIELDS = (
    "hp_pole_q14", "sta_shift", "lta_shift", "ratio_q8", "floor_q16",
    "holdoff_n", "warmup_n", "lookback_n", "post_n", "measure_n", "zc_max_n",
    "band_lp1_q14", "band_lp2_q14", "band_lp3_q14", "width_q8", "decay_q8",
    "mask_shift", "peak_ratio_q4", "supersede_q8",
)

DEFAULTS = {
    "highpass_hz": 200.0,        # DC/rumble removal corner (two one-pole sections)
    "sta_s": 0.001,              # short-term average time constant
    "lta_s": 0.5,                # long-term (background) average time constant
    "ratio_db": 10.0,            # STA/LTA trigger ratio, 20 log10 of the amplitude ratio
    "peak_ratio_db": 20.0,       # or one |y| this far above the background mean |y|
    "floor_dbfs": -70.0,         # absolute floor on STA (mean |y|, re 32768)
    "holdoff_s": 0.050,          # no re-trigger within this after a trigger (echoes)
    "warmup_s": 0.25,            # no trigger until this much live (non-constant) input
    "lookback_s": 0.008,         # onset searched this far before the trigger
    "post_s": 0.002,             # ... and this far after it (both shrink to fit the ring)
    "measure_s": 0.040,          # features measured over this window
    "zc_max_s": 0.001,           # zero crossing searched this far before the rise
    "band_edges_hz": (500.0, 2000.0, 4000.0),
    "width_db": -6.0,            # pulse width: envelope above this re its peak
    "decay_db": -20.0,           # decay time: from peak until envelope falls below this
    "echo_mask_s": 0.030,        # after a trigger, the reference level decays from its peak
    "supersede_db": 2.0,         # a pulse this much stronger inside the hold-off re-triggers
}


def _shift(tau_s, rate_hz):
    n = tau_s * rate_hz
    if n < 1:
        return 0
    return min(24, int(math.log(n) / math.log(2) + 0.5))


def _samples(t_s, rate_hz):
    return int(t_s * rate_hz + 0.5)


def _q(value, one, lo, hi, name):
    v = int(value * one + 0.5)
    if v < lo or v > hi:
        raise ValueError("%s out of range" % name)
    return v


def check_rate(sample_rate_hz):
    """Return the rate as an int, or raise ValueError outside 8000..48000 Hz."""
    rate = int(sample_rate_hz)
    if rate != sample_rate_hz or rate < RATE_MIN_HZ or rate > RATE_MAX_HZ:
        raise ValueError("sample rate must be an integer from %d to %d Hz, got %r"
                         % (RATE_MIN_HZ, RATE_MAX_HZ, sample_rate_hz))
    return rate


def params(**overrides):
    """DEFAULTS updated with overrides; unknown names raise ValueError."""
    p = dict(DEFAULTS)
    for k in overrides:
        if k not in p:
            raise ValueError("unknown detector parameter %r" % k)
        p[k] = overrides[k]
    return p


def config(sample_rate_hz, **overrides):
    """The int32 fields of impulse_config_t for this rate, in FIELDS order."""
    rate = check_rate(sample_rate_hz)
    p = params(**overrides)
    nyq = rate / 2
    hp = float(p["highpass_hz"])
    if not 0 < hp < nyq:
        raise ValueError("highpass_hz must be within (0, %g)" % nyq)
    edges = [float(e) for e in p["band_edges_hz"]]
    if len(edges) != 3 or not (0 < edges[0] < edges[1] < edges[2] <= nyq):
        raise ValueError("band_edges_hz must be 3 increasing frequencies up to %g Hz" % nyq)
    sta_shift = _shift(float(p["sta_s"]), rate)
    lta_shift = _shift(float(p["lta_s"]), rate)
    if not 0 <= sta_shift < lta_shift <= 20:
        raise ValueError("need sta_s < lta_s and lta_s up to 2^20 samples")
    post_s = float(p["post_s"])
    lookback_s = float(p["lookback_s"])
    if post_s <= 0 or lookback_s <= 0:
        raise ValueError("post_s and lookback_s must be positive")
    scale = min(1.0, (RING_N - 1) / ((post_s + lookback_s) * rate))
    post_n = max(1, int(post_s * scale * rate))
    lookback_n = max(4, int(lookback_s * scale * rate))
    if lookback_n + post_n > RING_N - 1:
        raise ValueError("lookback_s + post_s too long for the %d-sample ring" % RING_N)
    holdoff_n = _samples(float(p["holdoff_s"]), rate)
    measure_n = _samples(float(p["measure_s"]), rate)
    if holdoff_n < post_n + 1:
        raise ValueError("holdoff_s must exceed post_s")
    if not post_n <= measure_n <= holdoff_n:
        raise ValueError("measure_s must be from post_s to holdoff_s")
    ratio = 10 ** (float(p["ratio_db"]) / 20)
    floor_amp = FULL_SCALE * 10 ** (float(p["floor_dbfs"]) / 20)
    return (
        _q(math.exp(-2 * math.pi * hp / rate), COEF_ONE, 0, COEF_ONE - 1, "highpass_hz"),
        sta_shift,
        lta_shift,
        _q(ratio, 256, 257, 4095, "ratio_db"),
        _q(floor_amp, ENV_ONE, 0, (1 << 31) - 1, "floor_dbfs"),
        holdoff_n,
        max(0, _samples(float(p["warmup_s"]), rate)),
        lookback_n,
        post_n,
        measure_n,
        max(1, min(lookback_n, _samples(float(p["zc_max_s"]), rate))),
        _lp(edges[0], rate),
        _lp(edges[1], rate),
        _lp(edges[2], rate),
        _q(10 ** (float(p["width_db"]) / 20), 256, 1, 255, "width_db"),
        _q(10 ** (float(p["decay_db"]) / 20), 256, 1, 255, "decay_db"),
        _shift(float(p["echo_mask_s"]), rate),
        _q(10 ** (float(p["peak_ratio_db"]) / 20), 16, 17, 4095, "peak_ratio_db"),
        _q(10 ** (float(p["supersede_db"]) / 20), 256, 256, 4095, "supersede_db"),
    )


def _lp(fc_hz, rate_hz):
    """One-pole low-pass coefficient 1 - exp(-2 pi fc / fs), Q14."""
    return _q(1 - math.exp(-2 * math.pi * fc_hz / rate_hz), COEF_ONE, 1, COEF_ONE, "band_edges_hz")


def config_dict(sample_rate_hz, **overrides):
    """config() as a dict keyed by FIELDS."""
    return dict(zip(FIELDS, config(sample_rate_hz, **overrides)))


# Fields of impulse_trigger_t (native/impulse.h), integers as the C reports them.
RAW_FIELDS = (
    "onset_sample", "trigger_sample", "peak_sample", "band_energy",
    "onset_frac_q16", "peak_abs", "noise_q16", "sta_peak_q16", "sta_trigger_q16",
    "width_n", "decay_n", "measure_n", "clipped",
)

# Feature names shared by firmware records, the collector store and the classifier.
FEATURES = (
    "onset_sample", "onset_frac", "onset_s", "peak_dbfs", "noise_dbfs", "snr_db",
    "rise_time_s", "width_s", "decay_s", "band_low_db", "band_mid_db", "band_high_db",
    "sta_lta", "trigger_s", "clipped",
)

_GAUSS_RMS_PER_MEAN_ABS = 1.2533141373155  # sqrt(pi / 2)
_MIN_DB = -200.0


def _db20(amplitude):
    return 20 * math.log10(amplitude) if amplitude > 0 else _MIN_DB


def features(raw, sample_rate_hz):
    """Convert one raw trigger (dict keyed by RAW_FIELDS) to the named features.

    Levels are dB re full scale 32768: ``peak_dbfs`` from the largest
    high-passed sample, ``noise_dbfs`` the background RMS (Gaussian estimate
    from the mean |y| the LTA tracks), ``band_*_db`` the mean-square level of
    each band over the measure window.  Times in seconds from the first sample.
    """
    rate = float(sample_rate_hz)
    frac = raw["onset_frac_q16"] / 65536
    # Sample indices pass 2**24 within minutes, beyond single precision (the
    # board's float): differences are taken in integers before any float.
    onset = raw["onset_sample"] + frac
    peak_dbfs = _db20(raw["peak_abs"] / FULL_SCALE)
    noise_mean = max(raw["noise_q16"], 1) / ENV_ONE
    noise_dbfs = _db20(noise_mean * _GAUSS_RMS_PER_MEAN_ABS / FULL_SCALE)
    n = max(raw["measure_n"], 1)
    bands = []
    for e in raw["band_energy"]:
        ms = e / n / (FULL_SCALE * FULL_SCALE)
        bands.append(10 * math.log10(ms) if ms > 0 else _MIN_DB)
    return {
        "onset_sample": raw["onset_sample"],
        "onset_frac": frac,
        "onset_s": onset / rate,
        "peak_dbfs": peak_dbfs,
        "noise_dbfs": noise_dbfs,
        "snr_db": peak_dbfs - noise_dbfs,
        "rise_time_s": max(0.0, (raw["peak_sample"] - raw["onset_sample"]) - frac) / rate,
        "width_s": raw["width_n"] / rate,
        "decay_s": raw["decay_n"] / rate,
        "band_low_db": bands[0],
        "band_mid_db": bands[1],
        "band_high_db": bands[2],
        "sta_lta": raw["sta_peak_q16"] / max(raw["noise_q16"], 1),
        "trigger_s": raw["trigger_sample"] / rate,
        "clipped": bool(raw["clipped"]),
    }
