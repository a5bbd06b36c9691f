"""Synthetic labelled examples for the classifier tests (no audio, no detector)."""
import math

import numpy as np

from shotline import classify_features as cf
from shotline.classify_data import Example

# Per class: (source level mean dB, log10 rise time mean, burst size range)
_CLASS = {"gunshot": (152.0, -3.5, (1, 6)), "firework": (142.0, -3.8, (10, 40)),
          "other_impulsive": (112.0, -2.5, (1, 3))}


def synthetic_examples(n_per_class, n_groups=10, seed=0, noise_db=6.0, p_missing=0.3,
                       level_only=False):
    """Feature dicts drawn from class-conditional Gaussians; some lack a location.

    ``level_only``: only the source level differs between classes (so the
    classes overlap and the right probabilities are far from 0 and 1).
    """
    rng = np.random.default_rng(seed)
    out = []
    for label, (level, rise, burst) in _CLASS.items():
        if level_only:
            rise, burst, p_missing = -3.0, (1, 10), 0.0
        for i in range(n_per_class):
            f = dict.fromkeys(cf.FEATURE_NAMES, math.nan)
            f["log10_rise_time_s"] = rng.normal(rise, 0.3)
            f["log10_width_s"] = rng.normal(-3.0, 0.3)
            f["n_sensors"] = float(rng.integers(3, 8))
            n = int(rng.integers(*burst))
            f["log2_burst_n"] = math.log2(n)
            if rng.random() > p_missing:
                f["source_level_db"] = rng.normal(level, noise_db)
                f["source_level_spread_db"] = abs(rng.normal(0, 2))
            out.append(Example(f, label, f"synthetic/{i % n_groups}", "simulated",
                               "located" if math.isfinite(f["source_level_db"]) else "single_sensor"))
    return out
