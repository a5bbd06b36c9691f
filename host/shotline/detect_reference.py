"""Plain-NumPy float twin of the fixed-point C impulse detector (a test oracle).

Same algorithm and same configuration (``shotline_fw.detconfig``) as
``native/impulse.c``, in float64 without rounding, for whole signals only.
It returns raw trigger dicts in the C's units (so ``detconfig.features``
converts both); the C agrees with it to within its fixed-point rounding
(tests: onset within 0.1 sample, levels within 0.5 dB on clean pulses).
"""
import numpy as np
from scipy.signal import lfilter

from shotline_fw import detconfig

_Q16 = 65536.0


def _aic_pick(w):
    """Index k (1..len-1) minimising nL log2 var[:k] + nR log2 var[k:] (variance floor 1)."""
    e = w * w
    left = np.cumsum(e)[:-1]
    total = e.sum()
    nl = np.arange(1, len(w), dtype=float)
    nr = len(w) - nl
    aic = nl * np.log2((left + nl) / nl) + nr * np.log2((total - left + nr) / nr)
    return int(np.argmin(aic)) + 1


def _refine(y, s0, e, k, zc_max_n):
    """Steepest rise towards the largest |y| near k, extended back to zero (float sample)."""
    lo = max(k - 2, s0 + 1)
    hi = min(k + zc_max_n, e - 1)
    seg = np.abs(y[lo:hi + 1])
    mp = lo + int(np.argmax(seg))
    sgn = -1.0 if y[mp] < 0 else 1.0
    d = sgn * (y[lo:mp + 1] - y[lo - 1:mp])
    if len(d) == 0 or d.max() <= 0:
        return float(k)
    j = lo + int(np.argmax(d))
    a = sgn * y[j - 1]
    step = d.max()
    back = a / step
    if a > 0:
        back = min(back, zc_max_n)
        pos = j - 1 - back
    else:
        pos = j - 1 + min(-back, 65535 / 65536)
    return max(pos, float(s0))


def detect(samples, sample_rate_hz, **params):
    """Raw trigger dicts (C units, float values) for a whole int16 signal."""
    c = detconfig.config_dict(sample_rate_hz, **params)
    x = np.asarray(samples, dtype=np.int16).astype(np.float64)
    p = c["hp_pole_q14"] / 16384
    h = np.clip(lfilter([1, -1], [1, -p], x), -32767, 32767)
    y = np.clip(lfilter([1, -1], [1, -p], h), -32767, 32767)
    env = np.abs(y) * _Q16
    a = 2.0 ** -c["sta_shift"]
    sta = lfilter([a], [1, -(1 - a)], env)
    live = np.concatenate([[x[0] != 0], x[1:] != x[:-1]]) if len(x) else np.zeros(0, bool)
    ratio = c["ratio_q8"] / 256
    mask_decay = 1 - 2.0 ** -c["mask_shift"]
    lta = mask = 0.0
    lta_k = live_n = 0
    armed = False
    last_trigger = -(1 << 62)
    idle_since = 0
    n = 0
    out = []
    N = len(x)
    while n < N:
        mask *= mask_decay
        if live[n]:
            live_n += 1
            lta += (env[n] - lta) * 2.0 ** -lta_k
            if lta_k < c["lta_shift"] and live_n >= 1 << (lta_k + 1):
                lta_k += 1
        ref = max(lta, mask)
        above = sta[n] > c["floor_q16"] and sta[n] > ref and (
            sta[n] > ref * ratio or env[n] > ref * c["peak_ratio_q4"] / 16)
        if not above:
            armed = True
            n += 1
            continue
        if not (armed and live_n >= c["warmup_n"] and n - last_trigger >= c["holdoff_n"]):
            n += 1
            continue
        # a trigger at n: the event runs until measure_n or a much stronger pulse
        while True:
            trig = n
            last_trigger = trig
            armed = False
            pick_end = trig + c["post_n"]          # one past the last sample seen by the pick
            end = min(trig + c["measure_n"], N)
            if pick_end > N:
                return out
            s0 = max(trig - c["lookback_n"], idle_since, 0)
            k = s0 + _aic_pick(y[s0:pick_end])
            pos = _refine(y, s0, pick_end, k, c["zc_max_n"])
            onset = int(np.floor(pos))
            # STA peak and mask over the event, decaying as in the C
            ev_sta = sta[trig:end]
            ref_pick = ev_sta[:c["post_n"]].max()
            stronger = np.nonzero((ev_sta > ref_pick)
                                  & (ev_sta > ref_pick * c["supersede_q8"] / 256))[0]
            stronger = stronger[stronger >= c["post_n"] - 1]
            if len(stronger):
                close = trig + int(stronger[0])
            elif trig + c["measure_n"] <= N:
                close = trig + c["measure_n"] - 1
            else:
                return out  # incomplete at the end of the signal: the C has not emitted it
            seg = sta[trig:close + 1]
            ipk = int(np.argmax(seg))
            peak_sta = seg[ipk]
            after = seg[ipk:]
            unit = np.floor(peak_sta / 256)
            below_w = np.nonzero(after < unit * c["width_q8"])[0]
            below_d = np.nonzero(after < unit * c["decay_q8"])[0]
            width_end = trig + ipk + int(below_w[0]) if len(below_w) else close + 1
            decay_end = trig + ipk + int(below_d[0]) if len(below_d) else close + 1
            ay = np.abs(y[onset:close + 1])
            bands = _bands(y, s0, trig, close + 1, c)
            out.append({
                "onset_sample": onset,
                "onset_frac_q16": (pos - onset) * 65536,
                "trigger_sample": trig,
                "peak_sample": onset + int(np.argmax(ay)),
                "peak_abs": float(ay.max()),
                "noise_q16": lta,
                "sta_peak_q16": peak_sta,
                "sta_trigger_q16": sta[trig],
                "width_n": max(width_end, onset) - onset,
                "decay_n": decay_end - (trig + ipk),
                "measure_n": close + 1 - trig,
                "band_energy": bands,
                "clipped": int(np.any(np.abs(x[trig:close + 1]) >= 32767)),
            })
            idle_since = close + 1
            for v in sta[trig + 1:close + 1]:  # the mask follows the event's STA
                mask = max(mask * mask_decay, v)
            if len(stronger):
                n = close
                continue
            n = close + 1
            break
    return out


def _bands(y, s0, trig, stop, c):
    """Band energies (LSB^2 like the C) over [trig, stop), filters primed from s0."""
    coefs = [(c[k] >> 4) / 1024 for k in ("band_lp1_q14", "band_lp2_q14", "band_lp3_q14")]
    seg = y[s0:stop]
    lps = [lfilter([k], [1, -(1 - k)], seg) for k in coefs]
    bands = (lps[0], lps[1] - lps[0], lps[2] - lps[1])
    i = trig - s0
    return tuple(float(np.sum(b[i:] ** 2)) for b in bands)


def features(samples, sample_rate_hz, **params):
    """Named features (as ``shotline.detect.Trigger`` fields) from the float twin."""
    return [detconfig.features(r, sample_rate_hz) for r in detect(samples, sample_rate_hz, **params)]
