#!/usr/bin/env python3
"""Association speed and decision latency under a synthetic surge (one core).

1,500 sensors over 100 km^2, 50 impulses/s city-wide, each heard by its
nearest 3-15 sensors, 20 % extra echo triggers, 2 % missed, 100 µs timing
noise (see ``shotline.associate_synth``).  The triggers are fed in time order:

* streaming, one ``push`` per trigger (as the collector does): sustained
  triggers/s, and the decision latency beyond the physical wait, i.e. for
  each event ``(stream clock at decision - earliest moment physics allowed
  it) + the time the deciding push took``, as if the triggers arrived in
  real time;
* in 100 ms batches with ``push_many`` (as a collector reading a serial
  buffer does): sustained triggers/s.

Both print triggers per wall-clock second and per CPU-second of this process
(``time.process_time``): the machine may be shared, and the CPU figure is
the honest "one core" one.  The streaming run is repeated (``--runs``, each
on a new associator) and the median printed too: one run is only ~0.5 s of
CPU, and a busy neighbour on a shared core moves it by up to ~1.5x.

Usage: ``bench/associate.py [--seconds 20] [--runs 3]``.
"""
import argparse
import sys
import time

import numpy as np

from shotline.associate import Associator
from shotline.associate_synth import grid_sensors, make_scene, score

OPTIONS = {"tolerance_s": 0.002, "min_sensors": 5, "max_range_m": 800.0, "source_up_m": 0.0}


def stream(scene, sensors):
    assoc = Associator(temperature_c=scene.temperature_c, sensors=sensors, **OPTIONS)
    lags, events = [], {}
    start, cpu = time.perf_counter(), time.process_time()
    for trigger in scene.triggers:
        t0 = time.perf_counter()
        decided = assoc.push(trigger)
        took = time.perf_counter() - t0
        for event in decided:
            lags.append(event.decided_s - event.deadline_s + took)
            events[event.event_id] = event
    for event in assoc.flush():
        events[event.event_id] = event
    return time.perf_counter() - start, time.process_time() - cpu, np.array(lags), list(events.values())


def batched(scene, sensors, chunk_s=0.1):
    assoc = Associator(temperature_c=scene.temperature_c, sensors=sensors, **OPTIONS)
    times = np.array([t.time_utc_s for t in scene.triggers])
    edges = np.arange(times[0], times[-1] + chunk_s, chunk_s)
    cuts = np.searchsorted(times, edges)
    start, cpu = time.perf_counter(), time.process_time()
    n_events = 0
    for a, b in zip(cuts[:-1], cuts[1:]):
        n_events += len(assoc.push_many(scene.triggers[a:b]))
    n_events += len(assoc.push_many(scene.triggers[cuts[-1]:]))
    n_events += len(assoc.flush())
    return time.perf_counter() - start, time.process_time() - cpu, n_events


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="stream length (default 20 s)")
    parser.add_argument("--runs", type=int, default=3, help="streaming runs (default 3)")
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    sensors = grid_sensors(1500, 10_000.0, rng)
    scene = make_scene(sensors, n_impulses=int(50 * args.seconds), duration_s=args.seconds, rng=rng)
    n = len(scene.triggers)
    print(f"surge: {len(sensors)} sensors, 100 km^2, 50 impulses/s for {args.seconds:.0f} s: "
          f"{len(scene.impulses)} impulses, {n} triggers ({n / args.seconds:.0f}/s offered)")
    rates = []
    for _ in range(max(args.runs, 1)):
        wall, cpu, lags, events = stream(scene, sensors)
        rates.append((n / cpu, n / wall))
        s = score(scene, events)
        print(f"streaming push: {n / wall:.0f} triggers/s sustained, {n / cpu:.0f} per CPU-second "
              f"({wall:.1f} s wall, {cpu:.1f} s CPU for {args.seconds:.0f} s of stream, flush included); "
              f"{len(events)} events, recall {s.recall:.2%}, false {s.false_rate:.2%}")
        print(f"decision latency beyond the physical wait: median {np.median(lags) * 1e3:.1f} ms, "
              f"p99 {np.percentile(lags, 99) * 1e3:.1f} ms, max {lags.max() * 1e3:.1f} ms")
    per_cpu, per_wall = np.median(rates, axis=0)
    print(f"streaming push, median of {len(rates)} runs: {per_cpu:.0f} per CPU-second, {per_wall:.0f} per wall second")
    wall_b, cpu_b, n_events = batched(scene, sensors)
    print(f"100 ms batches (push_many): {n / wall_b:.0f} triggers/s sustained, {n / cpu_b:.0f} per CPU-second; "
          f"{n_events} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
