"""Classifier accuracy and calibration with splits that cannot leak (``make eval``).

Held out whole: each Pittsburgh firing position (FP1-FP6), each real confuser
file, and the simulated scenes in five folds.  Reported separately:

- real only: trained and scored on real recordings (no fireworks exist among them);
- real + simulated: fireworks, backfire, door slam and construction come
  from the simulator's MODELS, so every figure of this part depends on
  simulated data.

Features are cached in eval-out/classify-cache (extracting them runs the
detector over every recording and simulated scene).
"""
import math
import sys
import time
from dataclasses import replace

import numpy as np

from shotline import train

SIM_SCENES = 150


def main():
    t0 = time.monotonic()
    examples = train.gather_examples(sim_scenes=SIM_SCENES, seed=0,
                                     cache_dir="eval-out/classify-cache",
                                     progress=lambda m: print("  " + m))
    if not any(e.source == "pittsburgh" for e in examples):
        print("real recordings not found: set SHOTLINE_DATA", file=sys.stderr)
        return 1
    print(f"examples ready in {time.monotonic() - t0:.0f} s")
    report = train.evaluation_report(examples, threshold=0.5)
    model = train.fit(examples)
    print(train.format_summary({"out": "(not saved)", "model_version": model["model_version"],
                                "temperature": model["temperature"], **model["training"],
                                "evaluation": report}))
    # What the physics buys: the same evaluation with the source-level features removed.
    dropped = ("source_level_db", "source_level_spread_db", "spectral_tilt_at_source_db")
    ablated = [replace(e, features={k: (math.nan if k in dropped else v)
                                    for k, v in e.features.items()}) for e in examples]
    p = train.out_of_group_predictions(ablated, train.split_groups(ablated))
    print("ablation, real + SIMULATED, without source level (" + ", ".join(dropped) + "):")
    for name, keep in (("located_all", lambda e: e.view == "located"),
                       ("located_simulated",
                        lambda e: e.view == "located" and e.source == "simulated")):
        idx = [i for i, e in enumerate(ablated) if keep(e)]
        y = np.array([train.CLASSES.index(ablated[i].label) for i in idx])
        print(train.format_scores(name, train.scores(p[idx], y)))
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
