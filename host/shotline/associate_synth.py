"""Synthetic trigger streams with known truth, to test and measure association.

A city of sensors on a jittered grid; impulses at random places and times,
each heard directly by its nearest 3..15 sensors (straight-line travel at the
speed of sound, Gaussian timing noise), some direct triggers missed, extra
*echo* triggers (a reflection arrives after the direct path on a sensor that
heard it), and the scoring of associated events against the truth.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> sensors = grid_sensors(16, 1000.0, rng)
>>> scene = make_scene(sensors, n_impulses=5, duration_s=2.0, rng=rng)
>>> len(scene.impulses), len(scene.triggers) > 15
(5, True)
"""
from dataclasses import dataclass

import numpy as np

from shotline.acoustics import DEFAULT_TEMPERATURE_C, speed_of_sound_m_s
from shotline.associate import Trigger


@dataclass(frozen=True)
class Impulse:
    source_m: tuple
    t_emit_s: float
    heard: tuple          # sensors with a direct trigger (after misses)


@dataclass(frozen=True)
class Scene:
    """Triggers in time order, the impulses, and each trigger's truth.

    ``truth[(sensor, time_utc_s)] = (impulse index, "direct" | "echo")``.
    """

    sensors: dict
    impulses: tuple
    triggers: tuple
    truth: dict
    temperature_c: float


def grid_sensors(n_sensors, side_m, rng, jitter=0.35, height_m=(3.0, 20.0)):
    """About ``n_sensors`` on a square ``side_m`` wide: a grid jittered by ``jitter`` spacings."""
    per_side = int(round(np.sqrt(n_sensors)))
    spacing = side_m / per_side
    ij = np.stack(np.meshgrid(np.arange(per_side), np.arange(per_side)), axis=-1).reshape(-1, 2)
    xy = (ij + 0.5 + rng.uniform(-jitter, jitter, ij.shape)) * spacing
    z = rng.uniform(*height_m, len(xy))
    return {f"S{k:05d}": (float(x), float(y), float(h)) for k, ((x, y), h) in enumerate(zip(xy, z))}


def make_scene(sensors, *, n_impulses, duration_s, rng, t0_s=1.7e9, heard=(3, 15),
               echo_fraction=0.2, miss_fraction=0.02, timing_sigma_s=100e-6,
               echo_delay_s=(0.01, 0.5), temperature_c=DEFAULT_TEMPERATURE_C, sources_m=None, t_emit_s=None):
    """Random impulses over the sensors' extent (or at ``sources_m`` / ``t_emit_s``).

    Each impulse is heard directly by its nearest ``k`` sensors, ``k`` uniform
    in ``heard``; each direct trigger is dropped with ``miss_fraction``;
    ``echo_fraction`` times as many echoes as direct triggers are added, each
    ``echo_delay_s`` after a direct arrival on the same sensor.
    """
    names = list(sensors)
    pos = np.array([sensors[n] for n in names])
    c = speed_of_sound_m_s(temperature_c)
    lo, hi = pos[:, :2].min(axis=0), pos[:, :2].max(axis=0)
    if sources_m is None:
        sources = np.column_stack([rng.uniform(lo, hi, (n_impulses, 2)), np.zeros(n_impulses)])
    else:
        sources = np.asarray(sources_m, dtype=float).reshape(-1, 3)
    times = (np.sort(rng.uniform(0.0, duration_s, len(sources))) if t_emit_s is None
             else np.asarray(t_emit_s, dtype=float) - t0_s)
    triggers, truth, impulses, direct = [], {}, [], []
    for k, (src, te) in enumerate(zip(sources, times)):
        dist = np.linalg.norm(pos - src, axis=1)
        n_heard = int(rng.integers(heard[0], heard[1] + 1))
        nearest = np.argsort(dist)[:n_heard]
        kept = nearest[rng.random(len(nearest)) >= miss_fraction]
        for j in kept:
            t = t0_s + te + dist[j] / c + rng.normal(0.0, timing_sigma_s)
            direct.append((k, j, t))
        impulses.append(Impulse(tuple(src), t0_s + te, tuple(names[j] for j in kept)))
    n_echo = int(round(echo_fraction * len(direct)))
    for e in rng.choice(len(direct), size=min(n_echo, len(direct)), replace=n_echo > len(direct)):
        k, j, t = direct[e]
        direct.append((k, j, t + rng.uniform(*echo_delay_s)))
    for n, (k, j, t) in enumerate(direct):
        kind = "direct" if n < len(direct) - n_echo else "echo"
        trig = Trigger(names[j], sensors[names[j]], t, snr_db=20.0, seq=n)
        if (trig.sensor, trig.time_utc_s) in truth:
            continue
        truth[(trig.sensor, trig.time_utc_s)] = (k, kind)
        triggers.append(trig)
    triggers.sort(key=lambda t: t.time_utc_s)
    return Scene(dict(sensors), tuple(impulses), tuple(triggers), truth, temperature_c)


@dataclass(frozen=True)
class Score:
    """Events against truth.  ``recall`` counts impulses with at least
    ``min_heard`` direct triggers that got an event; ``false_events`` are
    events matching no impulse or a second event for one; ``mixed_events``
    hold a trigger of another impulse or an echo; ``errors_m`` are horizontal
    location errors of the matched events."""

    n_events: int
    n_eligible: int
    n_found: int
    false_events: int
    mixed_events: int
    errors_m: tuple

    @property
    def recall(self):
        return self.n_found / self.n_eligible if self.n_eligible else float("nan")

    @property
    def false_rate(self):
        return self.false_events / self.n_events if self.n_events else 0.0


def score(scene, events, min_heard=5):
    """Match each event to the impulse most of its triggers came from directly."""
    matched, false, mixed, errors = set(), 0, 0, []
    for event in events:
        labels = [scene.truth.get((t.sensor, t.time_utc_s), (-1, "unknown")) for t in event.triggers]
        direct = [k for k, kind in labels if kind == "direct"]
        if len({k for k, _ in labels}) > 1 or any(kind != "direct" for _, kind in labels):
            mixed += 1
        if not direct:
            false += 1
            continue
        values, counts = np.unique(direct, return_counts=True)
        k = int(values[np.argmax(counts)])
        if counts.max() * 2 <= len(labels) or k in matched:
            false += 1
            continue
        matched.add(k)
        src = np.asarray(scene.impulses[k].source_m)
        errors.append(float(np.hypot(*(np.asarray(event.position_m[:2]) - src[:2]))))
    eligible = {k for k, imp in enumerate(scene.impulses) if len(imp.heard) >= min_heard}
    return Score(len(events), len(eligible), len(eligible & matched), false, mixed, tuple(errors))
