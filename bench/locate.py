"""Location speed on one core: the vectorised batch path, the robust per-event
path, and a plain ``scipy.optimize.least_squares`` localiser for scale.

Events: 2.5-D, street-grid sensors (3 x 3, 300 m apart, roofs 3-30 m), the
source anywhere inside, 100 us timing noise; "echo" delays one arrival by a
path 5-80 m longer.  Prints events per second (batch) and milliseconds per
event (per-event paths).

    .venv/bin/python bench/locate.py
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, as the targets are stated

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

from shotline.locate import locate, locate_batch  # noqa: E402

C_M_S = 343.0
SIGMA_S = 100e-6


def sensors(n, rng):
    xs, ys = np.meshgrid(np.arange(3) * 300.0, np.arange(3) * 300.0)
    grid = np.c_[xs.ravel(), ys.ravel(), rng.uniform(3, 30, 9)]
    return grid[:n]


def events(n_events, n_sensors, echo, rng):
    s = sensors(n_sensors, rng)
    src = np.c_[rng.uniform(0, 600, (n_events, 2)), np.full(n_events, 1.5)]
    t = 1.5e9 + np.linalg.norm(s[None] - src[:, None], axis=2) / C_M_S
    t += rng.normal(0, SIGMA_S, t.shape)
    if echo:
        t[np.arange(n_events), rng.integers(n_sensors, size=n_events)] += rng.uniform(5, 80, n_events) / C_M_S
    return s, src, t


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def scipy_locate(s, t):
    """The usual least-squares localiser: all arrivals, no outlier handling
    (source height given, as in 2.5-D)."""
    dt = t - t.min()

    def resid(x):
        return dt - x[2] - np.linalg.norm(s - np.r_[x[:2], 1.5], axis=1) / C_M_S

    x0 = np.r_[s[:, :2].mean(axis=0), 0.0]
    return least_squares(resid, x0, x_scale=[100.0, 100.0, 0.1]).x[:2]


def main():
    rng = np.random.default_rng(1)
    print(f"numpy {np.__version__}; one thread; 2.5-D, timing sigma {SIGMA_S * 1e6:.0f} us")
    print("batch path, clean events (vectorised Levenberg-Marquardt; robust='auto' re-solves "
          "only inconsistent events):")
    for n_sensors in (6, 9):
        for n_events in (10_000, 100_000):
            s, src, t = events(n_events, n_sensors, False, rng)
            for robust in (False, "auto"):
                elapsed, batch = best_of(lambda: locate_batch(s, t, speed_of_sound_m_s=C_M_S, robust=robust,
                                                              timing_sigma_s=SIGMA_S, source_up_m=1.5))
                err = np.linalg.norm(batch.position_m - src, axis=1)
                print(f"  {n_sensors} sensors, {n_events:6d} events, robust={robust!s:5}: "
                      f"{n_events / elapsed:7.0f} events/s ({elapsed / n_events * 1e6:5.1f} us/event), "
                      f"RMS error {np.sqrt(np.mean(err ** 2)):.3f} m")
    s, src, t = events(2_000, 9, True, rng)
    t[1::2] = 1.5e9 + np.linalg.norm(s[None] - src[1::2, None], axis=2) / C_M_S  # half the events clean
    elapsed, batch = best_of(lambda: locate_batch(s, t, speed_of_sound_m_s=C_M_S, timing_sigma_s=SIGMA_S,
                                                  source_up_m=1.5), repeats=1)
    err = np.linalg.norm(batch.position_m - src, axis=1)
    print(f"  9 sensors, 2000 events, half with an echo, robust=auto: {2000 / elapsed:7.0f} events/s, "
          f"p90 error {np.percentile(err, 90):.3f} m, gross (>100 m) {int(np.sum(err > 100))}")
    print("robust per-event path (consensus, echo rejection, uncertainty):")
    for n_sensors in (6, 9):
        for echo in (False, True):
            s, src, t = events(200, n_sensors, echo, rng)
            elapsed, fixes = best_of(lambda: [locate(s, t[i], speed_of_sound_m_s=C_M_S, timing_sigma_s=SIGMA_S,
                                                     source_up_m=1.5) for i in range(len(t))], repeats=2)
            err = np.array([np.linalg.norm(f.position_m - src[i]) for i, f in enumerate(fixes)])
            print(f"  {n_sensors} sensors, {'one echo' if echo else 'clean   '}: {elapsed / len(t) * 1e3:6.2f} ms/event, "
                  f"p90 error {np.percentile(err, 90):.3f} m, gross (>100 m) {int(np.sum(err > 100))}")
    print("scipy.optimize.least_squares per event (for scale; no outlier handling):")
    for echo in (False, True):
        s, src, t = events(200, 9, echo, rng)
        elapsed, pos = best_of(lambda: [scipy_locate(s, t[i]) for i in range(len(t))], repeats=2)
        err = np.linalg.norm(np.array(pos) - src[:, :2], axis=1)
        print(f"  9 sensors, {'one echo' if echo else 'clean   '}: {elapsed / len(t) * 1e3:6.2f} ms/event, "
              f"p90 error {np.percentile(err, 90):.3f} m")
    pulses = 150
    s = np.vstack([sensors(9, rng)] * (pulses // 9 + 1))[:pulses]
    ids = [i % 9 for i in range(pulses)]
    t = rng.uniform(0, 10, pulses)
    src = np.array([300.0, 300.0, 1.5])
    t[:9] = 5.0 + np.linalg.norm(s[:9] - src, axis=1) / C_M_S
    elapsed, fix = best_of(lambda: locate(s, t, speed_of_sound_m_s=C_M_S, source_up_m=1.5, gate_s=4e-3,
                                          sensor_ids=ids), repeats=2)
    print(f"pool of {pulses} pulses at 9 sensors (one impulse among clutter): {elapsed * 1e3:.1f} ms, "
          f"used {fix.n_used}, error {np.linalg.norm(fix.position_m - src):.3f} m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
