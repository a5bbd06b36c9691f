"""Evaluate the impulse detector on real recordings (make eval).

1. ShotSpotter Pittsburgh 2018 (FP1-FP6): for every pulse in ShotSpotter's own
   nlos-tuples.json whose sensor has audio, is there a trigger within +-5 ms of
   ShotSpotter's arrival time (recall)?  Onset error = our onset - their
   arrival (theirs: 1 ms precision, "zero crossing at start of pulse", bias
   about -316 us vs truth).  Triggers per minute of live audio outside the
   shot windows (100 ms before the first pulse to 1.5 s after the last pulse
   of each recording) are false alarms.
2. Confusers: triggers per file and their features.
3. Synthetic 2 ms Friedlander pulses (one-sample rise) at a known onset, in
   white, pink and traffic noise at 12, 16 and 48 kHz, peak/noise-RMS 20 dB
   and 10 dB (the protocol of tests/test_detect.py): |onset error| in samples
   (max and median over matched pulses) and the pulses missed.

    python eval/detector.py [--fp FP1 FP2 ...] [--json]
"""
import argparse
import json
import statistics
import sys

import numpy as np

from shotline.datasets import data_dir, pittsburgh
from shotline.detect import ImpulseDetector, read_audio
from shotline.synthetic import scene

TOLERANCE_S = 0.005
NEAR_S = 0.05  # triggers this close to a pulse count as that pulse's triggers
WINDOW_BEFORE_S = 0.1
WINDOW_AFTER_S = 1.5


def detect_recording(path, **params):
    """(triggers, live_seconds, sample_rate_hz, samples) for one file; live = not
    digital silence (some recordings start with, or drop out to, exact zeros)."""
    det = None
    triggers = []
    blocks = []
    rate = None
    for rate, block in read_audio(path):
        if det is None:
            det = ImpulseDetector(rate, **params)
        triggers += det.process(block)
        blocks.append(block)
    x = np.concatenate(blocks)
    return triggers, np.count_nonzero(np.diff(x)) / rate, rate, x


def _silent(x, rate, t_s, half_s=0.05):
    i = int(t_s * rate)
    seg = x[max(0, i - int(half_s * rate)):i + int(half_s * rate)]
    return len(seg) < 2 or np.count_nonzero(np.diff(seg)) < len(seg) // 2


def score_test(test, **params):
    """Per-test results: matched pulse errors, misses, false alarms, live minutes."""
    by_uuid = test.pulse_by_uuid()
    wanted = {}
    for shot in test.shots:
        for uuid in shot:
            p = by_uuid.get(uuid)  # a few nlos uuids have no allpulses record
            if p is None:
                continue
            wanted.setdefault(p.sensor, []).append(p.arrival_utc_s)
    errors, misses, silent, near = [], [], 0, []
    false_alarms = 0
    outside_s = 0.0
    for rec in test.recordings:
        triggers, live_s, rate, x = detect_recording(rec.path, **params)
        onsets = np.array([rec.start_utc_s + t.onset_s for t in triggers])
        arrivals = sorted(wanted.get(rec.sensor, []))
        for arrival in arrivals:
            if _silent(x, rate, arrival - rec.start_utc_s):
                silent += 1  # the sensor's audio is digital silence there
                continue
            near.append(int(np.sum(np.abs(onsets - arrival) < NEAR_S)) if len(onsets) else 0)
            if len(onsets):
                d = onsets - arrival
                k = int(np.argmin(np.abs(d)))
                if abs(d[k]) <= TOLERANCE_S:
                    errors.append(float(d[k]))
                    continue
            misses.append((test.name, rec.sensor, arrival - rec.start_utc_s))
        if arrivals:
            lo = arrivals[0] - WINDOW_BEFORE_S
            hi = arrivals[-1] + WINDOW_AFTER_S
            false_alarms += int(np.sum((onsets < lo) | (onsets > hi)))
            outside_s += max(0.0, live_s - (hi - lo))
        else:
            false_alarms += len(onsets)
            outside_s += live_s
    heard = {rec.sensor for rec in test.recordings}
    theirs = sum(1 for p in test.pulses if p.sensor in heard)
    return {"errors_s": errors, "misses": misses, "silent": silent, "near": near,
            "their_pulses_per_round": theirs / max(1, len(heard) * test.rounds),
            "false_alarms": false_alarms,
            "outside_s": outside_s}


def summarize(results):
    errors = [e for r in results for e in r["errors_s"]]
    misses = [m for r in results for m in r["misses"]]
    n = len(errors) + len(misses)
    outside_min = sum(r["outside_s"] for r in results) / 60
    fa = sum(r["false_alarms"] for r in results)
    abs_us = [abs(e) * 1e6 for e in errors]
    bias_s = statistics.median(errors) if errors else 0.0
    return {
        "pulses": n,
        "silent": sum(r["silent"] for r in results),
        "matched": len(errors),
        "recall": len(errors) / n if n else float("nan"),
        "median_abs_error_us": statistics.median(abs_us) if abs_us else float("nan"),
        "mean_error_us": statistics.fmean(errors) * 1e6 if errors else float("nan"),
        "median_error_us": bias_s * 1e6,
        "median_abs_error_after_bias_us": statistics.median(abs(e - bias_s) * 1e6 for e in errors)
        if errors else float("nan"),
        "p90_abs_error_us": float(np.percentile(abs_us, 90)) if abs_us else float("nan"),
        "triggers_per_pulse": statistics.fmean(n for r in results for n in r["near"]),
        "their_pulses_per_sensor_round": statistics.fmean(
            r["their_pulses_per_round"] for r in results),
        "false_alarms": fa,
        "outside_minutes": outside_min,
        "false_alarms_per_min": fa / outside_min if outside_min else float("nan"),
        "misses": misses,
    }


def confusers(**params):
    folder = data_dir() / "confusers"
    out = []
    for path in sorted(folder.glob("*.flac")):
        triggers, live_s, rate, _ = detect_recording(path, **params)
        out.append({"file": path.name, "rate_hz": rate, "seconds": round(live_s, 1),
                    "triggers": len(triggers),
                    "median_snr_db": round(statistics.median([t.snr_db for t in triggers]), 1)
                    if triggers else None})
    return out


SYNTH_RATES_HZ = (12000, 16000, 48000)
SYNTH_NOISES = ("white", "pink", "traffic")
SYNTH_SNRS_DB = (20, 10)
SYNTH_SEEDS = 8  # two pulses per seed


def synthetic_onsets(rate_hz, kind, snr_db, seeds=SYNTH_SEEDS):
    """Onset errors (samples) of the matched synthetic pulses, and the pulses missed."""
    rng = np.random.default_rng(rate_hz)
    errors, missed = [], 0
    for seed in range(seeds):
        onsets = [0.5 + rng.uniform(0, 0.01), 0.9 + rng.uniform(0, 0.01)]
        x = scene(kind, rate_hz, onsets, snr_db, seed=seed, rise_s=1.0 / rate_hz)
        triggers = ImpulseDetector(rate_hz).process(x)
        for t0 in onsets:
            e = [t.onset_sample + t.onset_frac - t0 * rate_hz for t in triggers]
            e = [v for v in e if abs(v) <= TOLERANCE_S * rate_hz]
            if e:
                errors.append(min(e, key=abs))
            else:
                missed += 1
    return errors, missed


def synthetic():
    out = []
    for snr_db in SYNTH_SNRS_DB:
        for rate_hz in SYNTH_RATES_HZ:
            for kind in SYNTH_NOISES:
                errors, missed = synthetic_onsets(rate_hz, kind, snr_db)
                abs_e = [abs(e) for e in errors]
                out.append({"snr_db": snr_db, "rate_hz": rate_hz, "noise": kind,
                            "pulses": len(errors) + missed, "missed": missed,
                            "max_abs_error_samples": max(abs_e) if abs_e else None,
                            "median_abs_error_samples": statistics.median(abs_e)
                            if abs_e else None})
    return out


def _print_synthetic(rows):
    print("Synthetic 2 ms pulses (one-sample rise), %d per case: |onset error| in samples"
          % (2 * SYNTH_SEEDS))
    print("%6s %7s %-8s %7s %7s %9s" % ("SNR dB", "rate", "noise", "missed", "max", "median"))
    for r in rows:
        fmt = lambda v: "-" if v is None else "%.3f" % v  # noqa: E731
        print("%6d %7d %-8s %3d/%-3d %7s %9s" % (
            r["snr_db"], r["rate_hz"], r["noise"], r["missed"], r["pulses"],
            fmt(r["max_abs_error_samples"]), fmt(r["median_abs_error_samples"])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp", nargs="*", help="firing positions (default all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    synth = synthetic()
    if pittsburgh.root() is None:
        if args.json:
            print(json.dumps({"synthetic": synth}))
        else:
            _print_synthetic(synth)
            print("eval/detector.py: %s not found under %s; no real-data evaluation"
                  % (pittsburgh.NAME, data_dir()))
        return 0
    per_fp = {}
    for test in pittsburgh.iter_tests(firing_positions=args.fp):
        per_fp.setdefault(test.firing_position, []).append(score_test(test))
    rows = {fp: summarize(rs) for fp, rs in per_fp.items()}
    total = summarize([r for rs in per_fp.values() for r in rs])
    conf = confusers() if (data_dir() / "confusers").is_dir() else []
    if args.json:
        print(json.dumps({"pittsburgh": {"total": total, "per_fp": rows}, "confusers": conf,
                          "synthetic": synth}))
        return 0
    _print_synthetic(synth)
    print("Pittsburgh 2018 (ShotSpotter nlos pulses with audio), tolerance +-%.0f ms"
          % (TOLERANCE_S * 1e3))
    print("%-6s %6s %8s %10s %10s %14s %9s %6s %8s %7s" % (
        "fp", "pulses", "recall", "median|e|", "median e", "|e-bias| med", "p90|e|", "FA",
        "out min", "FA/min"))
    for fp, s in list(rows.items()) + [("all", total)]:
        print("%-6s %6d %7.2f%% %8.0fus %8.0fus %12.0fus %7.0fus %6d %8.2f %7.2f" % (
            fp, s["pulses"], 100 * s["recall"], s["median_abs_error_us"], s["median_error_us"],
            s["median_abs_error_after_bias_us"], s["p90_abs_error_us"], s["false_alarms"],
            s["outside_minutes"], s["false_alarms_per_min"]))
    print("e = our onset - ShotSpotter arrival; bias = median e (a constant offset cancels in TDOA)")
    print("%d pulses excluded: the sensor's audio is digital silence at the arrival"
          % total["silent"])
    print("triggers within +-%.0f ms of a pulse: %.2f per pulse (ShotSpotter's own sensors "
          "report %.2f pulses per sensor per round in allpulses.json)"
          % (NEAR_S * 1e3, total["triggers_per_pulse"], total["their_pulses_per_sensor_round"]))
    print("outside-window live audio: %.1f min" % total["outside_minutes"])
    for m in total["misses"][:30]:
        print("  missed %s %s at %.3f s" % m)
    if conf:
        print("Confusers (not gunshots): triggers per file")
        for c in conf:
            print("  %-32s %6d Hz %6.1f s %4d triggers  median SNR %s dB"
                  % (c["file"], c["rate_hz"], c["seconds"], c["triggers"], c["median_snr_db"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
