#!/usr/bin/env python3
"""Association on real and synthetic data: prints the figures in docs/association.md.

(a) Pittsburgh 2018, every pulse in allpulses.json (echoes and all): events
    vs rounds fired, agreement with ShotSpotter's nlos-tuples selection,
    location error vs the survey per firing position.
(b) Pittsburgh 2018 from audio alone (``shotline process``, only the sensors
    with recordings): share of fired shots located within 15 m and 25 m,
    with the streaming associator alone and with the offline re-selection
    (the default; docs/process.md).
(c) Synthetic surge (1,500 sensors, 100 km^2, 50 impulses/s, echoes, misses):
    recall and false events.

Events are matched to shots by emission time: each shot's reference time
is the location module's fix of ShotSpotter's own pulse selection for it;
an event matches the unmatched shot whose reference is nearest, within
0.1 s.  Usage: ``eval/associate.py [--quick]`` (--quick: FP1 only, short surge).
Data: ShotSpotter, Inc. (now SoundThinking), CC BY 4.0, Tech Note 098.
"""
import argparse
import sys
import time

import numpy as np

from shotline.associate import Trigger, associate
from shotline.associate_synth import grid_sensors, make_scene, score
from shotline.datasets import pittsburgh
from shotline.locate import locate
from shotline.process import Manifest, Recording, process

MATCH_S = 0.1
# Parameters are tuned on FP1-FP3 only; FP4-FP6 are reported apart as held out.
TUNING, HELD_OUT = ("FP1", "FP2", "FP3"), ("FP4", "FP5", "FP6")
PULSES = {"tolerance_s": 0.02, "min_sensors": 6, "max_range_m": 1500.0}
AUDIO = {"max_range_m": 1500.0}   # process() defaults otherwise (0.03 s, 20 m ellipse gate)


def shot_references(test):
    """Emission time of each shot from ShotSpotter's own pulse selection."""
    by_uuid = test.pulse_by_uuid()
    refs = []
    for shot in test.shots:
        pulses = [by_uuid[u] for u in shot if u in by_uuid]   # a few listed pulses are absent
        fix = locate(np.array([p.position_m for p in pulses]), np.array([p.arrival_utc_s for p in pulses]),
                     temperature_c=test.temperature_c, gate_s=0.04)
        refs.append(fix.t_emit_s)
    return refs


def match(events, refs, rounds):
    """Per fired round: the matched event or None; plus the unmatched events."""
    taken, out = set(), [None] * rounds
    for k, ref in enumerate(refs[:rounds]):
        best = min((e for e in events if id(e) not in taken), default=None,
                   key=lambda e: abs(e.t_emit_s - ref))
        if best is not None and abs(best.t_emit_s - ref) <= MATCH_S:
            out[k] = best
            taken.add(id(best))
    # Rounds ShotSpotter's selection lacks (one test): the remaining events in time order.
    rest = sorted((e for e in events if id(e) not in taken), key=lambda e: e.t_emit_s)
    for k in range(len(refs), rounds):
        if rest:
            out[k] = rest.pop(0)
    return out, [e for e in events if id(e) not in taken and e not in out]


def horizontal_error_m(event, test):
    return float(np.hypot(*(np.asarray(event.position_m[:2]) - np.asarray(test.survey_m[:2]))))


def summarise(title, rows):
    """rows: (firing position, error_m or None per fired round)."""
    print(title)
    print(f"  {'FP':16} {'shots':>5} {'found':>5} {'<=15m':>6} {'<=25m':>6} {'median m':>8} {'RMS m':>6}")
    for fp in sorted({r[0] for r in rows}):
        errs = [e for f, e in rows if f == fp]
        found = np.array([e for e in errs if e is not None])
        print(f"  {fp:16} {len(errs):5d} {len(found):5d} {np.mean([e is not None and e <= 15 for e in errs]):6.1%} "
              f"{np.mean([e is not None and e <= 25 for e in errs]):6.1%} "
              f"{np.median(found) if len(found) else float('nan'):8.1f} "
              f"{np.sqrt(np.mean(found ** 2)) if len(found) else float('nan'):6.1f}")
    for name, fps in (("FP1-3 (tuning)", TUNING), ("FP4-6 (held out)", HELD_OUT), ("all", None)):
        errs = [e for f, e in rows if fps is None or f in fps]
        found = np.array([e for e in errs if e is not None])
        if not errs or not len(found):
            continue
        print(f"  {name:16} {len(errs):5d} {len(found):5d} {np.mean([e is not None and e <= 15 for e in errs]):6.1%} "
              f"{np.mean([e is not None and e <= 25 for e in errs]):6.1%} {np.median(found):8.1f} "
              f"{np.sqrt(np.mean(found ** 2)):6.1f}")


def eval_pulses(tests):
    rows, n_events, exact, jaccard, recovered, extra = [], 0, 0, [], [], 0
    for test in tests:
        triggers = [Trigger(p.sensor, p.position_m, p.arrival_utc_s, snr_db=p.snr_db,
                            level_db=p.level_db_spl, features={"uuid": p.uuid}) for p in test.pulses]
        sensors = {p.sensor: p.position_m for p in test.pulses}
        result = associate(triggers, temperature_c=test.temperature_c, sensors=sensors, **PULSES)
        n_events += len(result.events)
        exact += len(result.events) == test.rounds
        matched, unmatched = match(list(result.events), shot_references(test), test.rounds)
        extra += len(unmatched)
        for k, event in enumerate(matched):
            rows.append((test.firing_position, None if event is None else horizontal_error_m(event, test)))
            if event is not None and k < len(test.shots):
                mine = {t.features["uuid"] for t in event.triggers}
                theirs = set(test.shots[k])
                jaccard.append(len(mine & theirs) / len(mine | theirs))
                recovered.append(len(mine & theirs) / len(theirs))
    rounds = len(rows)
    print(f"(a) all pulses, {len(tests)} tests, {sum(len(t.pulses) for t in tests)} pulses, "
          f"options {PULSES}")
    print(f"  events {n_events} for {rounds} rounds fired; tests with exactly one event per round "
          f"{exact}/{len(tests)}; unmatched events {extra}")
    print(f"  agreement with ShotSpotter's nlos selection (matched shots): Jaccard mean "
          f"{np.mean(jaccard):.2f}, share of their pulses in our event {np.mean(recovered):.1%}")
    summarise("  location error vs survey (horizontal):", rows)


def eval_audio(tests):
    for reselect in (False, True):
        rows, n_events, extra, seconds, recovered, dropped = [], 0, 0, 0.0, 0, 0
        for test in tests:
            manifest = Manifest(test.temperature_c, tuple(Recording(r.sensor, r.path, r.start_utc_s, r.position_m)
                                                          for r in test.recordings))
            t0 = time.perf_counter()
            result = process(manifest, reselect=reselect, **AUDIO)
            seconds += time.perf_counter() - t0
            n_events += len(result.events)
            recovered += result.stats.get("recovered", 0)
            dropped += result.stats.get("dropped", 0)
            matched, unmatched = match(list(result.events), shot_references(test), test.rounds)
            extra += len(unmatched)
            rows += [(test.firing_position, None if e is None else horizontal_error_m(e, test)) for e in matched]
        if not reselect:
            print(f"(b) audio alone via process ({sum(len(t.recordings) for t in tests)} recordings, "
                  f"options {AUDIO}, min_sensors 5 or 4 where a test has 4 recordings)")
            print(f"  streaming associator only (process(reselect=False)): events {n_events}, unmatched {extra}")
            summarise("  fired shots located (horizontal error vs survey):", rows)
        else:
            print(f"  with the offline re-selection (process default): events {n_events} ({recovered} new, "
                  f"{dropped} streaming events dropped) for {len(rows)} rounds fired; "
                  f"unmatched events {extra}; {seconds:.1f} s for detection + association")
            summarise("  fired shots located (horizontal error vs survey):", rows)
    # References on the same sensors: ShotSpotter's pulses instead of our detector, and
    # ShotSpotter's own per-shot selection (the association oracle) located directly.
    within, oracle, shots = 0, 0, 0
    for test in tests:
        audio = {r.sensor for r in test.recordings}
        triggers = [Trigger(p.sensor, p.position_m, p.arrival_utc_s, level_db=p.level_db_spl)
                    for p in test.pulses if p.sensor in audio]
        result = associate(triggers, temperature_c=test.temperature_c, min_sensors=4, tolerance_s=0.03,
                           max_ellipse_m=20.0, max_range_m=1500.0,
                           sensors={r.sensor: r.position_m for r in test.recordings})
        matched, _ = match(list(result.events), shot_references(test), test.rounds)
        within += sum(e is not None and horizontal_error_m(e, test) <= 15 for e in matched)
        by_uuid = test.pulse_by_uuid()
        for shot in test.shots:
            pulses = [by_uuid[u] for u in shot if u in by_uuid and by_uuid[u].sensor in audio]
            if len(pulses) >= 4:
                fix = locate(np.array([p.position_m for p in pulses]), np.array([p.arrival_utc_s for p in pulses]),
                             temperature_c=test.temperature_c, gate_s=0.04)
                oracle += bool(np.hypot(*(fix.position_m[:2] - np.asarray(test.survey_m[:2]))) <= 15)
        shots += test.rounds
    print(f"  same sensors, ShotSpotter's pulses associated here: {within / shots:.1%} of shots within 15 m; "
          f"ShotSpotter's own selection on them (>= 4 pulses) located: {oracle / shots:.1%}")


def eval_surge(duration_s):
    rng = np.random.default_rng(2026)
    sensors = grid_sensors(1500, 10_000.0, rng)
    scene = make_scene(sensors, n_impulses=int(50 * duration_s), duration_s=duration_s, rng=rng)
    t0 = time.perf_counter()
    result = associate(scene.triggers, temperature_c=scene.temperature_c, sensors=sensors,
                       tolerance_s=0.002, min_sensors=5, max_range_m=800.0, source_up_m=0.0)
    wall = time.perf_counter() - t0
    s = score(scene, result.events)
    err = np.array(s.errors_m)
    print(f"(c) synthetic surge: 1,500 sensors over 100 km^2, 50 impulses/s for {duration_s:.0f} s, "
          f"heard by 3-15, 20 % echoes, 2 % missed, 100 us timing noise: {len(scene.triggers)} triggers")
    print(f"  recall (impulses heard directly by >= 5 sensors) {s.recall:.2%} ({s.n_found}/{s.n_eligible}); "
          f"false events {s.false_rate:.2%} ({s.false_events}/{s.n_events}); "
          f"events holding a foreign trigger {s.mixed_events}")
    print(f"  location error median {np.median(err):.2f} m, 95th percentile {np.percentile(err, 95):.2f} m; "
          f"{len(scene.triggers) / wall:.0f} triggers/s in batch")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="FP1 only and a 10 s surge")
    parser.add_argument("--part", choices=("a", "b", "c"), action="append", help="run only these parts")
    args = parser.parse_args()
    parts = args.part or ["a", "b", "c"]
    if pittsburgh.root() is None:
        print("Pittsburgh data not found (set SHOTLINE_DATA): skipping (a) and (b)")
        tests = []
    else:
        tests = list(pittsburgh.iter_tests(firing_positions=["FP1"] if args.quick else None))
    if tests and "a" in parts:
        eval_pulses(tests)
    if tests and "b" in parts:
        eval_audio(tests)
    if "c" in parts:
        eval_surge(10.0 if args.quick else 60.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
