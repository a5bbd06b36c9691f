"""Location accuracy: synthetic cases against the Cramér–Rao bound, and the
real Pittsburgh live-fire data against the surveyed firing positions.

Part 1 — synthetic.  Street-grid sensors (a 4 x 4 grid, 300 m spacing, each
node jittered by up to ±50 m, so neighbours are 200–400 m apart over about
1 km²); each trial draws N of them (convex hull at least 0.2 km²), a source
inside the hull or 50–200 m outside it, Gaussian timing noise, and optionally
one arrival delayed by an echo path 5–80 m longer.  Sensors are on roofs
3–30 m up, the source at 1.5 m.  Scored: the robust locator
(:func:`shotline.locate.locate`), the same with the echo arrival removed
(``oracle``: what perfect rejection would give), and the vectorised batch path
(:func:`shotline.locate.locate_batch` with ``robust=False``: every arrival used).  Errors are horizontal
(3-D in 3d mode).  ``RMS/CRB`` is the RMS error over the RMS Cramér–Rao bound
of the same events; ``nRMS`` is the RMS of each error over its own bound.

Part 2 — Pittsburgh 2018 (ShotSpotter, CC BY 4.0; Tech Note 098).  Every shot
of FP1–FP6 located (a) from ShotSpotter's own pulse selection (nlos-tuples)
and (b) from all pulses of the test, several shots and their echoes mixed:
events are extracted one by one (the largest consistent set of arrivals, one
per sensor, then the next), up to the number of rounds fired.  2.5-D with the
source on the surveyed ground height, 0 °C (the test's weather record);
the timing error is estimated from the residuals, and the consistency gate is
shown at 4, 10 and 40 ms (pulse times are quantised to 1 ms; ShotSpotter chose
its pulse sets within 40 ms of a straight-line model).  The survey itself is
good to about 2.5 m (phone GPS).

Part 3 — the audio sensors alone (4–6 per test): why ShotSpotter's own pulse
selection, restricted to them and located as ``eval/associate.py --part b``
does (the association's oracle), puts only 92.6 % of fired rounds within
15 m.  Each round is classified by how many selected pulses fall on audio
sensors (>= 4 located, 3: a 2.5-D fix without redundancy, <= 2 or none: no
fix), and compared with the selection on all sensors, with every pulse
ShotSpotter's audio sensors reported and with our detector's onsets (both
taken within 50 ms of the straight-line prediction from the all-sensor fix,
i.e. a perfect association, and located with one arrival per sensor).

Part 4 — are the 95 % ellipses honest?  The share of fixes whose reported
ellipse contains the truth: synthetic (known Gaussian timing noise; sigma
given, or not given with the gate at 4 sigma or 2 ms) and Pittsburgh
(ShotSpotter's selection on all sensors and on the audio sensors, our event
extraction from all pulses), the latter also with each semi-axis grown by
the survey's own 2.5 m (phone GPS) in quadrature.

    .venv/bin/python eval/locate.py [--trials 100] [--skip-synthetic] [--skip-real] [--coverage-only]
"""
import argparse
import sys
import time

import numpy as np
from scipy.spatial import ConvexHull

from shotline.locate import cramer_rao_bound, locate, locate_batch

C_M_S = 343.0
SOURCE_UP_M = 1.5
NOISES_S = (20e-6, 100e-6, 1e-3)
GROSS_M = 100.0
CONFIGS = (("2d", 4), ("2d", 6), ("2d", 8), ("2.5d", 6), ("3d", 5), ("3d", 8))
FIRING_POSITIONS = ("FP1", "FP2", "FP3", "FP4", "FP5", "FP6")
# Tech Note 098, offline 2-D MLG with all participating sensors: per-FP RMS (m).
TN098_RMS_RANGE_M = (0.4, 6.4)
REAL_GATES_S = (4e-3, 10e-3, 40e-3)
POOL_GATE_S = 10e-3
POOL_MIN_SENSORS = 6
AUDIO_MIN_PULSES = 4     # the association oracle locates shots with >= 4 pulses on audio sensors
AUDIO_ORACLE_GATE_S = 40e-3
SURVEY95_M = 2.5          # the survey (phone GPS) is good to about 2.5 m: its 95 % radius
WITHIN_M = 15.0          # the target: >= 95 % of shots within 15 m
PICK_WINDOW_S = 50e-3
ORACLE_GATES_S = (10e-3, 20e-3, 30e-3, 40e-3, 60e-3)
PICK_GATE_S = 30e-3      # shotline process's association tolerance


# ----------------------------------------------------------------------------
# Part 1: synthetic


def grid_sensors(rng):
    xs, ys = np.meshgrid(np.arange(4) * 300.0, np.arange(4) * 300.0)
    xy = np.c_[xs.ravel(), ys.ravel()] + rng.uniform(-50, 50, (16, 2))
    return np.c_[xy, rng.uniform(3.0, 30.0, 16)]


def draw_case(rng, n, where):
    """Sensors (n, 3) and a source (3,) inside their hull or 50–200 m outside it."""
    while True:
        sensors = grid_sensors(rng)[rng.choice(16, n, replace=False)]
        hull = ConvexHull(sensors[:, :2])
        if hull.volume >= 0.2e6:
            break
    eq = hull.equations  # unit outward normals: a x + b y + c = signed distance
    lo, hi = sensors[:, :2].min(axis=0) - 200, sensors[:, :2].max(axis=0) + 200
    while True:
        xy = rng.uniform(lo, hi)
        dist = np.max(eq[:, :2] @ xy + eq[:, 2])
        if (where == "inside" and dist < 0) or (where == "outside" and 50 <= dist <= 200):
            return sensors, np.r_[xy, SOURCE_UP_M]


def summarise(err):
    err = np.where(np.isfinite(err), err, np.inf)
    finite = err[np.isfinite(err)]
    # "higher": a lost event (inf) must not turn a percentile into inf - inf = NaN.
    return {"median_m": float(np.percentile(err, 50, method="higher")),
            "p90_m": float(np.percentile(err, 90, method="higher")),
            "rms_m": float(np.sqrt(np.mean(finite ** 2))) if len(finite) else float("nan"),
            "gross": int(np.sum(err > GROSS_M))}


def run_cases(mode, n, noise_s, echo, where, trials, rng):
    dims = 3 if mode == "3d" else 2
    up = SOURCE_UP_M if mode == "2.5d" else None
    sensors, sources, times, crb, echo_at = [], [], [], [], []
    for _ in range(trials):
        s, src = draw_case(rng, n, where)
        ss, sc = (s[:, :2], src[:2]) if mode == "2d" else (s, src)
        t = 1.5e9 + np.linalg.norm(ss - sc, axis=1) / C_M_S + rng.normal(0, noise_s, n)
        j = int(rng.integers(n))
        if echo:
            t[j] += rng.uniform(5, 80) / C_M_S
        sensors.append(ss)
        sources.append(sc)
        times.append(t)
        echo_at.append(j)
        crb.append(np.trace(cramer_rao_bound(ss, sc, noise_s, speed_of_sound_m_s=C_M_S, mode=mode)))
    sensors, sources, times, crb = np.array(sensors), np.array(sources), np.array(times), np.array(crb)
    kw = dict(speed_of_sound_m_s=C_M_S, timing_sigma_s=noise_s, mode=mode, source_up_m=up)
    t0 = time.perf_counter()
    fixes = [locate(sensors[i], times[i], **kw) for i in range(trials)]
    per_event_s = (time.perf_counter() - t0) / trials
    err = np.array([np.linalg.norm(f.position_m[:dims] - sources[i][:dims]) for i, f in enumerate(fixes)])
    oracle_err = err
    flagged = None
    if echo:
        oracle = []
        for i in range(trials):
            t = times[i].copy()
            t[echo_at[i]] = np.nan
            oracle.append(np.linalg.norm(locate(sensors[i], t, **kw).position_m[:dims] - sources[i][:dims]))
        oracle_err = np.array(oracle)
        flagged = float(np.mean([not f.used[echo_at[i]] for i, f in enumerate(fixes)]))
    batch = locate_batch(sensors, times, robust=False, **kw)
    err_b = np.linalg.norm(batch.position_m[:, :dims] - sources[:, :dims], axis=1)
    fin = np.isfinite(err)
    return {
        "robust": summarise(err), "oracle": summarise(oracle_err), "batch": summarise(err_b),
        "crb_rms_m": float(np.sqrt(np.mean(crb))),
        "nrms": float(np.sqrt(np.mean(err[fin] ** 2 / crb[fin]))),
        "ms_per_event": per_event_s * 1e3, "echo_flagged": flagged,
        "ambiguous": sum(f.status == "ambiguous" for f in fixes),
    }


def synthetic(trials, seed=7):
    rng = np.random.default_rng(seed)
    print(f"Part 1: synthetic, {trials} events per row; errors in m; c = {C_M_S} m/s known")
    print(f"{'mode':5} {'N':>2} {'noise':>6} {'where':7} {'echo':4} | {'median':>7} {'p90':>7} {'RMS':>7} "
          f"{'RMS/CRB':>7} {'nRMS':>5} {'gross':>5} {'amb':>3} {'flag':>5} | {'orc.p90':>7} | "
          f"{'bat.p90':>8} {'bat.gross':>9} | {'ms/ev':>5}")
    clean, failures = {}, []
    for mode, n in CONFIGS:
        for noise in NOISES_S:
            for where in ("inside", "outside"):
                for echo in (False, True):
                    r = run_cases(mode, n, noise, echo, where, trials, rng)
                    rb, ro, bb = r["robust"], r["oracle"], r["batch"]
                    ratio = rb["rms_m"] / r["crb_rms_m"]
                    flag = f"{r['echo_flagged'] * 100:4.0f}%" if echo else "    -"
                    print(f"{mode:5} {n:2d} {noise * 1e6:4.0f}us {where:7} {'yes' if echo else 'no':4} | "
                          f"{rb['median_m']:7.3f} {rb['p90_m']:7.3f} {rb['rms_m']:7.3f} {ratio:7.2f} "
                          f"{r['nrms']:5.2f} {rb['gross']:5d} {r['ambiguous']:3d} {flag} | "
                          f"{ro['p90_m']:7.3f} | {bb['p90_m']:8.3f} {bb['gross']:9d} | "
                          f"{r['ms_per_event']:5.2f}")
                    key = (mode, n, f"{noise * 1e6:.0f} us", where)
                    if not echo:
                        clean[key] = rb["p90_m"]
                        if where == "inside" and ratio > 1.1:
                            failures.append(f"{key}: clean RMS/CRB {ratio:.2f} > 1.1")
                        if where == "inside" and rb["gross"]:
                            failures.append(f"{key}: {rb['gross']} gross errors on clean data")
                    elif n >= 6 and rb["p90_m"] > 1.5 * clean[key]:
                        failures.append(f"{key}: echo p90 {rb['p90_m']:.3f} > 1.5 x clean p90 "
                                        f"{clean[key]:.3f} (oracle p90 {ro['p90_m']:.3f})")
    print("columns: amb = events reported ambiguous (primary solution scored); flag = share of events"
          " whose echo arrival was rejected; orc.p90 = p90 with the echo arrival removed by hand")
    print("targets: clean & inside: RMS <= 1.1 x CRB and no gross errors; "
          "one echo among N >= 6: p90 <= 1.5 x clean p90")
    print("all targets met" if not failures else "targets missed:\n  " + "\n  ".join(failures))


# ----------------------------------------------------------------------------
# Part 2: Pittsburgh


def _shot_arrays(test, uuids):
    by_id = test.pulse_by_uuid()
    pulses = [by_id[u] for u in uuids if u in by_id]
    return (np.array([p.position_m for p in pulses]), np.array([p.arrival_utc_s for p in pulses]),
            len(uuids) - len(pulses))


def _pool_events(test, gate_s):
    """Extract up to ``rounds`` events from all pulses of a test, largest set first."""
    pulses = sorted(test.pulses, key=lambda p: p.arrival_utc_s)
    S = np.array([p.position_m for p in pulses])
    T = np.array([p.arrival_utc_s for p in pulses])
    ids = [p.sensor for p in pulses]
    free = np.ones(len(pulses), dtype=bool)
    fixes = []
    for _ in range(test.rounds):
        fix = locate(S, np.where(free, T, np.nan), temperature_c=test.temperature_c,
                     source_up_m=test.survey_m[2], gate_s=gate_s,
                     sensor_ids=ids)
        if fix.status not in ("ok", "ambiguous") or fix.n_used < POOL_MIN_SENSORS:
            break
        fixes.append(fix)
        # Remove every pulse this event explains (its arrivals and near-duplicates).
        free &= ~(np.abs(np.nan_to_num(fix.residuals_s, nan=np.inf)) <= gate_s)
    return fixes, len(pulses)


def _errors_line(label, pos, survey_xy, n_used, extra=""):
    pos = np.asarray(pos)
    err = np.linalg.norm(pos - survey_xy, axis=1)
    centroid = pos.mean(axis=0)
    spread = np.sqrt(np.mean(np.sum((pos - centroid) ** 2, axis=1)))
    print(f"  {label:26} n {len(pos):3d} | RMS {np.sqrt(np.mean(err ** 2)):5.2f}  median "
          f"{np.median(err):5.2f}  p90 {np.percentile(err, 90):5.2f}  max {err.max():6.2f} | centroid off "
          f"{np.linalg.norm(centroid - survey_xy):5.2f}  spread {spread:5.2f} | sensors used "
          f"{np.mean(n_used):4.1f}{extra}")
    return err


def pittsburgh():
    from shotline.datasets import pittsburgh as pb

    if pb.root() is None:
        print("Part 2: Pittsburgh data not found (set SHOTLINE_DATA); skipped")
        return
    tests = list(pb.iter_tests())
    print(f"\nPart 2: Pittsburgh 2018, {len(tests)} tests, FP1-FP6; horizontal error from the survey point (m)")
    print(f"  Tech Note 098 (offline, 2-D MLG, all participating sensors): per-FP RMS "
          f"{TN098_RMS_RANGE_M[0]}-{TN098_RMS_RANGE_M[1]} m; survey accurate to about 2.5 m")
    summary = {}
    t_start = time.perf_counter()
    for fp in FIRING_POSITIONS:
        fp_tests = [t for t in tests if t.firing_position == fp]
        survey_xy = np.array(fp_tests[0].survey_m[:2])
        print(f"{fp} ({len(fp_tests)} tests, {sum(len(t.shots) for t in fp_tests)} shots in nlos-tuples)")
        missing = 0
        for gate in REAL_GATES_S:
            pos, used = [], []
            for test in fp_tests:
                for shot in test.shots:
                    S, T, n_missing = _shot_arrays(test, shot)
                    missing += n_missing if gate == REAL_GATES_S[0] else 0
                    fix = locate(S, T, temperature_c=test.temperature_c, source_up_m=test.survey_m[2],
                                 gate_s=gate)
                    pos.append(fix.position_m[:2])
                    used.append(f"{fix.n_used}/{len(T)}")
            n_used = [int(u.split("/")[0]) for u in used]
            n_all = [int(u.split("/")[1]) for u in used]
            err = _errors_line(f"(a) SST pulses, gate {gate * 1e3:.0f} ms", pos, survey_xy, n_used,
                               f" of {np.mean(n_all):4.1f}")
            summary.setdefault(("a", gate), []).append(np.sqrt(np.mean(err ** 2)))
        pos, used, found, expected, pulses = [], [], 0, 0, []
        for test in fp_tests:
            fixes, n_pulses = _pool_events(test, POOL_GATE_S)
            pulses.append(n_pulses)
            found += len(fixes)
            expected += len(test.shots)
            pos += [f.position_m[:2] for f in fixes]
            used += [f.n_used for f in fixes]
        err = _errors_line(f"(b) all pulses, gate {POOL_GATE_S * 1e3:.0f} ms", pos, survey_xy, used,
                           f" | events {found} (SST shots {expected}), {np.mean(pulses):.0f} pulses/test")
        summary.setdefault("b", []).append(np.sqrt(np.mean(err ** 2)))
        if missing:
            print(f"  note: {missing} pulse ids in nlos-tuples are absent from allpulses.json and were skipped")
    print("per-FP RMS (m), FP1..FP6:")
    for key, values in summary.items():
        label = "(b) all pulses" if key == "b" else f"(a) gate {key[1] * 1e3:.0f} ms"
        print(f"  {label:16} " + "  ".join(f"{v:5.2f}" for v in values))
    print(f"  Tech Note 098    {TN098_RMS_RANGE_M[0]}-{TN098_RMS_RANGE_M[1]} (range over FPs)")
    print(f"Part 2 took {time.perf_counter() - t_start:.1f} s")


# ----------------------------------------------------------------------------
# Part 3: the audio sensors alone (the oracle of eval/associate.py --part b)


def _fix_error_m(fix, survey_m):
    """Horizontal error of the first solution and the smallest over all solutions (m)."""
    errs = [float(np.hypot(*(f.position_m[:2] - np.asarray(survey_m[:2])))) for f in (fix,) + fix.alternatives]
    errs = [e if np.isfinite(e) else np.inf for e in errs]
    return errs[0], min(errs)


def _detections(test):
    """Our detector's onsets (POSIX s) per audio sensor of a test."""
    from shotline.detect import detect_file

    return {r.sensor: (r.position_m, np.array([r.start_utc_s + t.onset_s for t in detect_file(r.path)]))
            for r in test.recordings}


def _audio_round(test, k, detections):
    """One fired round on the audio sensors: what ShotSpotter's selection and our
    detector's picks give.  Returns a dict (errors in m, inf when not located)."""
    out = {"fp": test.firing_position, "n_sel": 0, "oracle": np.inf, "first3": np.inf, "any3": np.inf,
           "all": np.inf, "reported": np.inf, "picks": np.inf}
    if k >= len(test.shots):
        out["n_sel"] = None  # ShotSpotter's selection lists fewer shots than rounds fired
        return out
    by_id = test.pulse_by_uuid()
    pulses = [by_id[u] for u in test.shots[k] if u in by_id]
    audio = [p for p in pulses if p.sensor in detections]
    out["n_sel"] = len(audio)
    kw = dict(temperature_c=test.temperature_c)   # as eval/associate.py: 2.5-D on the median sensor height
    ref = locate([p.position_m for p in pulses], [p.arrival_utc_s for p in pulses], gate_s=AUDIO_ORACLE_GATE_S, **kw)
    out["all"] = _fix_error_m(ref, test.survey_m)[0]
    if len(audio) >= 3:
        fix = locate([p.position_m for p in audio], [p.arrival_utc_s for p in audio], gate_s=AUDIO_ORACLE_GATE_S, **kw)
        first, best = _fix_error_m(fix, test.survey_m)
        out.update({"oracle": first} if len(audio) >= 4 else {"first3": first, "any3": best})
    # Every pulse ShotSpotter's sensors reported, and our detector's picks, within
    # PICK_WINDOW_S of the straight-line prediction from the all-sensor fix (a perfect
    # association), located as the association would.
    # (ShotSpotter's pulses carry their own sensor positions, which differ from the
    # recordings' by 5 m (median); each source of times is located with its own.)
    reported = {s: (np.median([p.position_m for p in test.pulses if p.sensor == s], axis=0),
                    np.array([p.arrival_utc_s for p in test.pulses if p.sensor == s]))
                for s in detections if any(p.sensor == s for p in test.pulses)}
    for key, arrivals in (("reported", reported), ("picks", detections)):
        rows, times, ids = [], [], []
        for sensor, (pos, onsets) in arrivals.items():
            predicted = ref.t_emit_s + np.linalg.norm(np.asarray(pos) - ref.position_m) / ref.speed_of_sound_m_s
            for t in onsets[np.abs(onsets - predicted) <= PICK_WINDOW_S]:
                rows.append(pos), times.append(t), ids.append(sensor)
        if len(set(ids)) >= 3:
            fix = locate(rows, times, gate_s=PICK_GATE_S, sensor_ids=ids, **kw)
            if fix.n_used >= AUDIO_MIN_PULSES:
                out[key] = _fix_error_m(fix, test.survey_m)[0]
    return out


def _oracle_kept(test, gate_s):
    """How many of the oracle's shots are located within WITHIN_M from at least
    AUDIO_MIN_PULSES arrivals with this consistency gate."""
    audio = {r.sensor for r in test.recordings}
    by_id = test.pulse_by_uuid()
    kept = 0
    for shot in test.shots:
        pulses = [by_id[u] for u in shot if u in by_id and by_id[u].sensor in audio]
        if len(pulses) >= AUDIO_MIN_PULSES:
            fix = locate([p.position_m for p in pulses], [p.arrival_utc_s for p in pulses],
                         temperature_c=test.temperature_c, gate_s=gate_s)
            kept += fix.n_used >= AUDIO_MIN_PULSES and _fix_error_m(fix, test.survey_m)[0] <= WITHIN_M
    return kept


def _oracle_on_recording_positions(test):
    """Errors (m) of the oracle's shots (>= 4 selected pulses on audio sensors) when
    the sensors are placed where their recordings say, as ``shotline process`` does."""
    where = {r.sensor: r.position_m for r in test.recordings}
    by_id = test.pulse_by_uuid()
    errors = []
    for shot in test.shots:
        audio = [by_id[u] for u in shot if u in by_id and by_id[u].sensor in where]
        if len(audio) >= AUDIO_MIN_PULSES:
            fix = locate([where[p.sensor] for p in audio], [p.arrival_utc_s for p in audio],
                         temperature_c=test.temperature_c, gate_s=AUDIO_ORACLE_GATE_S)
            errors.append(_fix_error_m(fix, test.survey_m)[0])
    return errors


def audio_sensors():
    from shotline.datasets import pittsburgh as pb

    if pb.root() is None:
        print("Part 3: Pittsburgh data not found (set SHOTLINE_DATA); skipped")
        return
    t_start = time.perf_counter()
    rounds, offsets_m, with_recording_positions, by_gate = [], [], [], {g: 0 for g in ORACLE_GATES_S}
    for test in pb.iter_tests():
        detections = _detections(test)
        rounds += [_audio_round(test, k, detections) for k in range(test.rounds)]
        offsets_m += [np.linalg.norm(np.asarray(r.position_m) - p.position_m)
                      for r in test.recordings for p in test.pulses if p.sensor == r.sensor]
        with_recording_positions += _oracle_on_recording_positions(test)
        for gate in ORACLE_GATES_S:
            by_gate[gate] += _oracle_kept(test, gate)
    w = WITHIN_M
    print(f"\nPart 3: only the sensors with audio (4-6 per test); share of fired rounds located within {w:.0f} m")
    print(f"  oracle = ShotSpotter's selection on those sensors, >= {AUDIO_MIN_PULSES} pulses, gate "
          f"{AUDIO_ORACLE_GATE_S * 1e3:.0f} ms (eval/associate.py --part b)")
    print(f"  {'':9} {'rounds':>6} | {'>=4 sel':>7} {'<=15m':>5} {'max m':>5} | {'3 sel':>5} {'first':>5} "
          f"{'any':>4} | {'<=2':>3} {'none':>4} | {'all SST':>7} | {'reported':>8} {'det picks':>9}")
    groups = [(fp, (fp,)) for fp in FIRING_POSITIONS] + [("FP1-3", FIRING_POSITIONS[:3]),
                                                          ("FP4-6", FIRING_POSITIONS[3:]), ("all", FIRING_POSITIONS)]
    for name, fps in groups:
        rr = [r for r in rounds if r["fp"] in fps]
        four = [r for r in rr if r["n_sel"] is not None and r["n_sel"] >= 4]
        three = [r for r in rr if r["n_sel"] == 3]
        max_err = max((r["oracle"] for r in four), default=np.nan)
        n = len(rr)
        line = (f"  {name:9} {n:6d} | {len(four):7d} {sum(r['oracle'] <= w for r in four):5d} {max_err:5.1f} | "
                f"{len(three):5d} {sum(r['first3'] <= w for r in three):5d} {sum(r['any3'] <= w for r in three):4d} | "
                f"{sum(r['n_sel'] is not None and r['n_sel'] <= 2 for r in rr):3d} "
                f"{sum(r['n_sel'] is None for r in rr):4d} | {sum(r['all'] <= w for r in rr):7d} | "
                f"{sum(r['reported'] <= w for r in rr):8d} {sum(r['picks'] <= w for r in rr):9d}")
        if len(fps) > 1:
            oracle = sum(r["oracle"] <= w for r in rr)
            line += (f"\n  {'':9} oracle {oracle / n:.1%}; with 3-pulse fixes {(oracle + sum(r['first3'] <= w for r in rr)) / n:.1%} "
                     f"(best solution {(oracle + sum(r['any3'] <= w for r in rr)) / n:.1%}); all SST sensors "
                     f"{sum(r['all'] <= w for r in rr) / n:.1%}; reported pulses {sum(r['reported'] <= w for r in rr) / n:.1%}; "
                     f"detector picks {sum(r['picks'] <= w for r in rr) / n:.1%}")
        print(line)
    print(f"  columns: >=4 sel = rounds whose selection has >= 4 pulses on audio sensors, located; 3 sel: "
          f"3 pulses (2.5-D fix: first solution / any solution within {w:.0f} m); <=2, none: cannot be located "
          f"(none = fewer selections than rounds); all SST = the selection on all sensors; reported = every "
          f"pulse ShotSpotter's audio sensors reported, det picks = our detector's onsets, each within "
          f"{PICK_WINDOW_S * 1e3:.0f} ms of the all-sensor prediction, gate {PICK_GATE_S * 1e3:.0f} ms, "
          f">= {AUDIO_MIN_PULSES} used")
    print(f"  the oracle's shots still located within {w:.0f} m from >= {AUDIO_MIN_PULSES} arrivals at other gates: "
          + ", ".join(f"{g * 1e3:.0f} ms {n}" for g, n in by_gate.items()))
    e = np.array(with_recording_positions)
    print(f"  sensor positions: the recordings' differ from those on ShotSpotter's pulses by "
          f"{np.median(offsets_m):.1f} m (median), {np.percentile(offsets_m, 90):.1f} m (p90), "
          f"{np.max(offsets_m):.1f} m (max); the oracle's shots on the recordings' positions: "
          f"{np.sum(e <= w)}/{len(e)} within {w:.0f} m, max {e.max():.1f} m")
    print(f"Part 3 took {time.perf_counter() - t_start:.1f} s")


# ----------------------------------------------------------------------------
# Part 4: do the 95 % ellipses cover the truth?


def covers(fix, truth_xy, grow_m=0.0):
    """Whether the truth (east, north, m) lies in the fix's 95 % ellipse, each
    semi-axis grown in quadrature by ``grow_m`` (the truth's own uncertainty)."""
    ell = fix.ellipse95_m
    if not (fix.status in ("ok", "ambiguous") and np.isfinite(ell.major_m)):
        return False
    az = np.radians(ell.azimuth_deg)
    d = np.asarray(truth_xy, float)[:2] - fix.position_m[:2]
    along = d @ np.array([np.sin(az), np.cos(az)])
    across = d @ np.array([np.cos(az), -np.sin(az)])
    return bool(along ** 2 / (ell.major_m ** 2 + grow_m ** 2)
                + across ** 2 / (max(ell.minor_m, 1e-12) ** 2 + grow_m ** 2) <= 1.0)


def _coverage_row(label, fixes, truths, grow_m=0.0):
    fixes = list(fixes)
    raw = np.mean([covers(f, t) for f, t in zip(fixes, truths)]) if fixes else np.nan
    grown = np.mean([covers(f, t, grow_m) for f, t in zip(fixes, truths)]) if fixes else np.nan
    majors = [f.ellipse95_m.major_m for f in fixes]
    err = [np.hypot(*(f.position_m[:2] - np.asarray(t)[:2])) for f, t in zip(fixes, truths)]
    extra = f"  +survey {grown:6.1%}" if grow_m else ""
    print(f"  {label:34} n {len(fixes):4d} | covered {raw:6.1%}{extra} | major median "
          f"{np.nanmedian(majors):8.2f} m  p90 {np.nanpercentile(majors, 90):8.2f} m | error median "
          f"{np.nanmedian(err):6.2f} m")
    return raw


def coverage_synthetic(trials, seed=11):
    """Coverage on synthetic events, where the timing error is Gaussian and known."""
    rng = np.random.default_rng(seed)
    sigma = 100e-6
    print(f"\nPart 4a: 95 % ellipse coverage, synthetic ({trials} events per row, sources inside, "
          f"Gaussian timing noise {sigma * 1e6:.0f} us, 2-D street grid / 2.5-D roofs)")
    cases = (("sigma given", {"timing_sigma_s": sigma}),
             ("gate 4 sigma (prior = truth)", {"gate_s": 4 * sigma}),
             ("gate 2 ms (prior 5 x truth)", {}))
    for mode in ("2d", "2.5d"):
        for n in range(3, 9):
            events = []
            for _ in range(trials):
                s, src = draw_case(rng, n, "inside")
                ss, sc = (s[:, :2], src[:2]) if mode == "2d" else (s, src)
                t = 1.5e9 + np.linalg.norm(ss - sc, axis=1) / C_M_S + rng.normal(0, sigma, n)
                events.append((ss, sc, t))
            for label, kw in cases:
                fixes = [locate(ss, t, speed_of_sound_m_s=C_M_S, mode=mode,
                                source_up_m=SOURCE_UP_M if mode == "2.5d" else None, **kw)
                         for ss, sc, t in events]
                _coverage_row(f"{mode:4} N={n} {label}", fixes, [sc for _, sc, _ in events])


def coverage_real():
    """Coverage on Pittsburgh: ShotSpotter's pulse selection against the survey."""
    from shotline.datasets import pittsburgh as pb

    if pb.root() is None:
        print("Part 4b: Pittsburgh data not found (set SHOTLINE_DATA); skipped")
        return
    t_start = time.perf_counter()
    print(f"\nPart 4b: 95 % ellipse coverage, Pittsburgh 2018 (truth = survey point; '+survey' grows each "
          f"semi-axis by the survey's own 95 % radius, {SURVEY95_M:.1f} m, in quadrature)")
    sets = {}
    for test in pb.iter_tests():
        audio = {r.sensor for r in test.recordings}
        by_id = test.pulse_by_uuid()
        for shot in test.shots:
            pulses = [by_id[u] for u in shot if u in by_id]
            fix = locate([p.position_m for p in pulses], [p.arrival_utc_s for p in pulses],
                         temperature_c=test.temperature_c, source_up_m=test.survey_m[2], gate_s=40e-3)
            sets.setdefault("all sensors, gate 40 ms", []).append((fix, test.survey_m))
            sel = [p for p in pulses if p.sensor in audio]
            if len(sel) >= 3:
                fix = locate([p.position_m for p in sel], [p.arrival_utc_s for p in sel],
                             temperature_c=test.temperature_c, gate_s=AUDIO_ORACLE_GATE_S)
                key = f"audio, {min(fix.n_used, 6)} used" if fix.n_used >= 4 else "audio, 3 used"
                sets.setdefault(key, []).append((fix, test.survey_m))
                if fix.n_used >= 4:
                    sets.setdefault("audio, >= 4 used (oracle)", []).append((fix, test.survey_m))
        for fix in _pool_events(test, POOL_GATE_S)[0]:
            sets.setdefault(f"all pulses extracted, gate {POOL_GATE_S * 1e3:.0f} ms", []).append((fix, test.survey_m))
    for key in ("all sensors, gate 40 ms", f"all pulses extracted, gate {POOL_GATE_S * 1e3:.0f} ms",
                "audio, >= 4 used (oracle)", "audio, 6 used", "audio, 5 used", "audio, 4 used", "audio, 3 used"):
        rows = sets.get(key, [])
        _coverage_row(key, [f for f, _ in rows], [s for _, s in rows], SURVEY95_M)
    print(f"Part 4b took {time.perf_counter() - t_start:.1f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="synthetic events per row")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--coverage-only", action="store_true", help="only part 4 (95 %% ellipse coverage)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.coverage_only:
        coverage_synthetic(args.trials)
        coverage_real()
        return 0
    if not args.skip_synthetic:
        synthetic(args.trials)
        print(f"Part 1 took {time.perf_counter() - t0:.1f} s")
    if not args.skip_real:
        pittsburgh()
        audio_sensors()
    if not args.skip_synthetic:
        coverage_synthetic(args.trials)
    if not args.skip_real:
        coverage_real()
    return 0


if __name__ == "__main__":
    sys.exit(main())
