"""Classifier speed: inference per event and model fitting (``make bench``).

Prints events classified per second (features + inference from the shipped
JSON model) and the time to fit and calibrate a model on synthetic examples
of the size ``shotline train`` uses (about 2000 examples).
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from classify_helpers import synthetic_examples  # noqa: E402

from shotline import train  # noqa: E402
from shotline.classify import classify_event, classify_events, load_model  # noqa: E402


def _event(rng, t):
    sensors = rng.uniform(-600, 600, (6, 3)) * (1, 1, 0.01)
    trig = {"peak_dbfs": -25.0, "rise_time_s": 4e-4, "width_s": 4e-3, "decay_s": 0.02,
            "band_low_db": -30.0, "band_mid_db": -31.0, "band_high_db": -42.0}
    return {"time_utc_s": t, "position_m": [0.0, 0.0, 1.5], "location_error_m": 5.0,
            "triggers": [dict(trig, sensor_position_m=s.tolist()) for s in sensors]}


def main():
    rng = np.random.default_rng(0)
    model = load_model()
    events = [_event(rng, 100.0 + 0.5 * i) for i in range(2000)]
    t0 = time.perf_counter()
    for e in events:
        classify_event(e, model)
    dt = time.perf_counter() - t0
    print(f"classify_event: {len(events) / dt:.0f} events/s ({1e3 * dt / len(events):.2f} ms each)")
    t0 = time.perf_counter()
    classify_events(events, model)
    dt = time.perf_counter() - t0
    print(f"classify_events (with burst grouping): {len(events) / dt:.0f} events/s")
    examples = synthetic_examples(700, n_groups=20, seed=1)
    t0 = time.perf_counter()
    fitted = train.fit(examples)
    dt = time.perf_counter() - t0
    print(f"fit + calibrate on {len(examples)} examples: {dt:.1f} s "
          f"(temperature {fitted['temperature']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
