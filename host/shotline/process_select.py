"""Offline association for a small network: every candidate event, then the best disjoint set.

The streaming associator (:mod:`shotline.associate`) decides anchor by anchor
as triggers arrive.  Offline, with the whole record in hand and a handful of
sensors, the choice can be global instead:

1. **Evidence per trigger** (:func:`weights`, :func:`evidence`): how much a
   trigger looks like the direct sound of an impulse rather than its
   reverberation, from the detector's STA/LTA and its level against the
   triggers just before it and against the sensor's loudest, as a
   log-likelihood ratio.
2. **Every candidate** (:func:`candidate_sets`).  Each triple of triggers on
   three different sensors that physics allows together (``|t_i - t_j| <=
   d_ij / c + tolerance``) fixes up to two sources on the ground plane in
   closed form (:func:`shotline.locate.minimal_solutions`, vectorised over
   all triples).  Each source takes, per other sensor, the trigger within
   ``tolerance_s`` of its predicted arrival with the most evidence (and, as
   variants, each sensor's runner-up); every
   subset of at least ``min_sensors`` that keeps the triple is a candidate
   (a member may belong to another event).  A candidate's value is the sum
   of its members' evidence plus the timing evidence of the redundant
   arrivals (:func:`timing_evidence`: Gaussian about the model vs uniform
   within the tolerance).
3. **Best disjoint set** (:func:`select`): the candidates with no trigger in
   common and the largest total value minus ``EVENT_COST`` each, found
   exactly as an integer program (:func:`scipy.optimize.milp`, HiGHS).  The
   chosen ones are located (:func:`shotline.locate.locate`, robust), valued
   again from their fit, and the selection repeated until it holds.
   Exclusivity does what a greedy choice cannot: a chance fit that mixes the
   direct sounds of two shots uses triggers that the two real events need,
   and loses to them.
4. **Burst support** (:func:`burst_support`): shots of a burst come from one
   place.  A candidate near a chosen event that stands on its own gains
   ``BURST_BONUS``, unless a chosen event there lies within the echo window
   of it; the selection is repeated until the support holds.  The later
   shots of a burst, whose arrivals sit in the previous shot's
   reverberation and look no more direct than echoes, win that way.

Events found otherwise (the streaming associator's) can compete as given
candidates with a head start (``given``, ``given_bonus``).
"""
import itertools
import logging
import math

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from shotline.locate import locate, locate_batch, minimal_solutions

# Evidence (direct sound vs reverberation): a logistic model of three detector
# features, fitted on the tuning half of the live-fire evaluation data
# (docs/process.md: the reference's per-shot pulse selection against our other
# triggers): ln(STA/LTA);
# level above the loudest trigger on the sensor in the ECHO_WINDOW_S before
# (clipped to +-20 dB; +20 without one); level below the sensor's loudest
# trigger of the record (clipped to -30..0 dB).
ECHO_WINDOW_S = 0.3
DIRECT_COEF = (0.9516, 0.1819, 0.2308)
DIRECT_INTERCEPT = -4.3236
DIRECT_PRIOR = 0.15       # share of direct arrivals among triggers there
LLR_CLIP = (-3.0, 5.0)    # per-member evidence bounds (natural log)
TIMING_SIGMA_S = 0.008    # spread of a direct arrival about the straight-line model
EVENT_COST = 5.0          # evidence (log-likelihood ratio) an event must exceed
MAX_SUBSET_SENSORS = 8    # candidate subsets for networks up to this size
# Shots of a burst come from one place: a candidate within BURST_RADIUS_M
# (horizontal) and BURST_WINDOW_S of another chosen event gains BURST_BONUS,
# unless it lies within ECHO_WINDOW_S of an event there (in its reverberation,
# where chance fits of the echoes lie, or a split of the same shot; so fire faster than
# 200 rounds/min gets no such help).
BURST_RADIUS_M = 25.0
BURST_WINDOW_S = 10.0
BURST_BONUS = 8.0
MAX_ROUNDS = 20           # select, locate the chosen, re-value them, select again

log = logging.getLogger(__name__)


class SelectionError(RuntimeError):
    """The integer program choosing the events failed (a solver failure, not bad input)."""


def weights(times_s, sensor_idx, levels_db, sta_lta):
    """Direct-sound evidence per trigger (probability 0..1); arrays in any order.

    ``levels_db`` any consistent dB scale per sensor (e.g. peak dBFS);
    ``sta_lta`` the detector's peak STA/LTA (linear); NaN where unknown.
    """
    times_s = np.asarray(times_s, dtype=float)
    sensor_idx = np.asarray(sensor_idx)
    levels = np.asarray(levels_db, dtype=float)
    known = np.where(np.isfinite(levels), levels, -np.inf)          # for the maxima
    above_prev = np.full(len(times_s), 20.0)
    below_max = np.zeros(len(times_s))
    for s in np.unique(sensor_idx):
        idx = np.flatnonzero(sensor_idx == s)
        idx = idx[np.argsort(times_s[idx], kind="stable")]
        below_max[idx] = levels[idx] - known[idx].max()
        ts = times_s[idx]
        start = np.searchsorted(ts, ts - ECHO_WINDOW_S)        # first trigger within the window before each
        for n in np.flatnonzero(start < np.arange(len(idx))):
            above_prev[idx[n]] = levels[idx[n]] - known[idx[start[n]:n]].max()
    # An unknown level or STA/LTA (NaN) counts as neutral: no louder trigger, the loudest, no onset.
    with np.errstate(invalid="ignore"):
        x = (np.log(np.maximum(np.nan_to_num(np.asarray(sta_lta, dtype=float), nan=1.0), 1.0)),
             np.clip(np.nan_to_num(above_prev, nan=0.0), -20.0, 20.0),
             np.clip(np.nan_to_num(below_max, nan=0.0), -30.0, 0.0))
    z = DIRECT_INTERCEPT + sum(c * v for c, v in zip(DIRECT_COEF, x))
    return 1.0 / (1.0 + np.exp(-z))


def evidence(p_direct):
    """Log-likelihood ratio per trigger: direct arrival vs any trigger (clipped)."""
    p = np.clip(np.asarray(p_direct, dtype=float), 1e-6, 1 - 1e-6)
    llr = np.log(p / (1 - p)) - math.log(DIRECT_PRIOR / (1 - DIRECT_PRIOR))
    return np.clip(llr, *LLR_CLIP)


def timing_evidence(residual_s, tolerance_s):
    """Log-likelihood ratio of a residual: Gaussian about the model vs uniform within the tolerance."""
    r = np.asarray(residual_s, dtype=float)
    return (math.log(2 * tolerance_s / (math.sqrt(2 * math.pi) * TIMING_SIGMA_S))
            - 0.5 * (r / TIMING_SIGMA_S) ** 2)


def exact_fit_evidence(tolerance_s):
    """Timing evidence of the three arrivals that fix a source (they fit it exactly): subtracted from every value."""
    return 3 * math.log(2 * tolerance_s / (math.sqrt(2 * math.pi) * TIMING_SIGMA_S))


def _consistent_triples(times_s, by_sensor, sensors_m, c_m_s, tolerance_s, block=64):
    """All (i, j, k) trigger triples on three sensors that physics allows together.

    Work is bounded by the triggers near each other in time: the first
    sensor's triggers go in blocks of ``block``, each against the other two
    sensors' triggers within reach of the block only.
    """
    out = []
    order = [idx[np.argsort(times_s[idx], kind="stable")] for idx in by_sensor]
    for a, b, d in itertools.combinations(range(len(by_sensor)), 3):
        ia, ib, id_ = order[a], order[b], order[d]
        if not (len(ia) and len(ib) and len(id_)):
            continue
        lim_ab, lim_ad, lim_bd = (np.linalg.norm(sensors_m[p] - sensors_m[q]) / c_m_s + tolerance_s
                                  for p, q in ((a, b), (a, d), (b, d)))
        tb, td = times_s[ib], times_s[id_]
        for start in range(0, len(ia), block):
            xa = ia[start:start + block]
            ta = times_s[xa]
            xb = ib[np.searchsorted(tb, ta[0] - lim_ab):np.searchsorted(tb, ta[-1] + lim_ab, side="right")]
            xd = id_[np.searchsorted(td, ta[0] - lim_ad):np.searchsorted(td, ta[-1] + lim_ad, side="right")]
            if not (len(xb) and len(xd)):
                continue
            ab = np.abs(ta[:, None] - times_s[xb][None, :]) <= lim_ab
            ad = np.abs(ta[:, None] - times_s[xd][None, :]) <= lim_ad
            bd = np.abs(times_s[xb][:, None] - times_s[xd][None, :]) <= lim_bd
            x, y, z = np.nonzero(ab[:, :, None] & ad[:, None, :] & bd[None, :, :])
            if len(x):
                out.append(np.stack([xa[x], xb[y], xd[z]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)


def candidate_sets(times_s, sensor_idx, sensors_m, weights_, c_m_s, *, tolerance_s, min_sensors,
                   source_up_m, max_range_m):
    """Distinct member sets that fit one source, and their values.

    ``times_s`` relative to any reference (s); ``sensor_idx`` index into
    ``sensors_m`` (S, 3) local metres; ``weights_`` per trigger (0..1).
    Returns ``members`` (U, S) trigger index per sensor (-1: none),
    ``value`` (U,): the best over the closed-form sources that make the set
    (members' evidence plus the timing evidence of the redundant arrivals),
    and ``where`` (U, 4): that source's position (m, the frame of
    ``sensors_m``) and emission time (s, the reference of ``times_s``).
    """
    times_s = np.asarray(times_s, dtype=float)
    sensor_idx = np.asarray(sensor_idx, dtype=np.int64)
    sensors_m = np.asarray(sensors_m, dtype=float)
    llr = evidence(weights_)
    n_sensors = len(sensors_m)
    empty = np.zeros((0, n_sensors), dtype=np.int64), np.zeros(0), np.zeros((0, 4))
    by_sensor = [np.flatnonzero(sensor_idx == s) for s in range(n_sensors)]
    triples = _consistent_triples(times_s, by_sensor, sensors_m, c_m_s, tolerance_s)
    if not len(triples):
        return empty
    offset = np.array([*sensors_m[:, :2].mean(axis=0), source_up_m])
    S = sensors_m[sensor_idx[triples]] - offset                  # (C, 3, 3)
    P, t0, valid = minimal_solutions(S, times_s[triples], 2, c_m_s)
    P, t0 = P[valid], t0[valid]                                 # (H, 3), (H,)
    if not len(P):
        return empty
    # Predicted arrival at every sensor; the nearest trigger there within the tolerance.
    dist = np.linalg.norm(P[:, None, :] - (sensors_m - offset)[None, :, :], axis=2)   # (H, S)
    predicted = t0[:, None] + dist / c_m_s
    members = np.full(predicted.shape, -1, dtype=np.int64)
    value = np.zeros(predicted.shape)           # per hypothesis and sensor: the member's evidence
    second = np.full(predicted.shape, -1, dtype=np.int64)     # the runner-up trigger there, and its evidence
    value2 = np.zeros(predicted.shape)
    for s, idx in enumerate(by_sensor):
        if not len(idx):
            continue
        order = idx[np.argsort(times_s[idx])]
        ts = times_s[order]
        near = np.searchsorted(ts, predicted[:, s])[:, None] + np.arange(-2, 2)[None, :]   # 2 each side
        near = np.clip(near, 0, len(ts) - 1)
        r = ts[near] - predicted[:, s, None]
        gain = np.where(np.abs(r) <= tolerance_s, llr[order[near]] + timing_evidence(r, tolerance_s), -np.inf)
        gain[:, 1:][near[:, 1:] == near[:, :-1]] = -np.inf           # clipped duplicates at the ends
        ranked = np.argsort(-gain, axis=1, kind="stable")
        in_range = dist[:, s] <= max_range_m
        for out_m, out_v, j in ((members, value, ranked[:, 0]), (second, value2, ranked[:, 1])):
            g = gain[np.arange(len(j)), j]
            ok = np.isfinite(g) & in_range
            out_m[ok, s] = order[near[ok, j[ok]]]
            out_v[ok, s] = g[ok]
    value = np.where(members >= 0, value, 0.0)
    exact = exact_fit_evidence(tolerance_s)
    # Every subset that keeps the triple: a member may belong to another event.
    in_triple = np.zeros(members.shape, dtype=bool)
    tri_sensors = sensor_idx[triples[np.nonzero(valid)[0]]]
    for col in range(3):
        in_triple[np.arange(len(P)), tri_sensors[:, col]] = True
    hyp = np.arange(len(P))
    # The best trigger per sensor is a greedy choice: a reverberation trigger
    # nearer the prediction can hide the direct one; try each runner-up too.
    m_x, v_x, t_x, h_x = [members], [value], [in_triple], [hyp]
    for s in range(n_sensors):
        has = (second[:, s] >= 0) & ~in_triple[:, s]
        if has.any():
            m = members[has].copy()
            v = value[has].copy()
            m[:, s], v[:, s] = second[has, s], value2[has, s]
            m_x.append(m), v_x.append(v), t_x.append(in_triple[has]), h_x.append(hyp[has])
    members, value, in_triple, hyp = (np.concatenate(x) for x in (m_x, v_x, t_x, h_x))
    subsets = n_sensors <= MAX_SUBSET_SENSORS      # else only each source's full set
    masks = ([np.array([(m >> b) & 1 for b in range(n_sensors)], dtype=bool) for m in range(2 ** n_sensors)]
             if subsets else [np.ones(n_sensors, dtype=bool)])
    all_rows, all_values, all_hyp = [], [], []
    for mask in masks:
        if mask.sum() < min_sensors:
            continue
        if subsets:
            ok = np.all(~in_triple | mask, axis=1) & np.all((members >= 0) | ~mask, axis=1)
        else:
            ok = (members >= 0).sum(axis=1) >= min_sensors
        if not ok.any():
            continue
        all_rows.append(np.where(mask, members[ok], -1))
        all_values.append((value[ok] * mask).sum(axis=1) - exact)
        all_hyp.append(hyp[ok])
    if not all_rows:
        return empty
    rows, inverse = np.unique(np.concatenate(all_rows), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    values = np.concatenate(all_values)
    top = np.lexsort((-values, inverse))                  # per distinct set, its best source first
    first = top[np.r_[True, inverse[top][1:] != inverse[top][:-1]]]
    h = np.concatenate(all_hyp)[first]
    return rows, values[first], np.column_stack([P[h] + offset, t0[h]])


def select(values, member_sets):
    """Indices of the disjoint member sets with the largest total value (exact).

    Sets of positive value that share no trigger, directly or through others,
    are independent problems: each such group is one integer program
    (:func:`scipy.optimize.milp`), so a long record costs what its busy
    stretches cost.
    """
    values = np.asarray(values, dtype=float)
    keep = np.flatnonzero(values > 0)
    if not len(keep):
        return []
    rows, cols = [], []
    index = {}
    for col, e in enumerate(keep):
        for trig in member_sets[e]:
            rows.append(index.setdefault(trig, len(index)))
            cols.append(col)
    A = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(index), len(keep)))
    _, group = connected_components(A.T @ A, directed=False)
    chosen = []
    for g in np.unique(group):
        cols_g = np.flatnonzero(group == g)
        if len(cols_g) == 1:
            chosen.append(int(keep[cols_g[0]]))
            continue
        A_g = A[:, cols_g]
        A_g = A_g[np.flatnonzero(A_g.getnnz(axis=1))]
        res = milp(-values[keep[cols_g]], constraints=LinearConstraint(A_g, 0, 1),
                   integrality=np.ones(len(cols_g)), bounds=Bounds(0, 1))
        if res.x is None:
            raise SelectionError(f"event selection failed: {res.message}")
        chosen += [int(keep[cols_g[j]]) for j in np.flatnonzero(res.x > 0.5)]
    return sorted(chosen)


def burst_support(where, sets, chosen, strong, bonus):
    """Per candidate: ``bonus`` where a ``strong`` chosen event sharing no trigger
    with it lies within ``BURST_RADIUS_M`` (horizontal) and ``BURST_WINDOW_S``,
    and no other ``chosen`` one there within ``ECHO_WINDOW_S`` of it (a chance
    fit of its echoes, or the same shot split); else 0.

    ``where`` (U, 4): each candidate's position (m) and emission time (s).
    """
    out = np.zeros(len(where))
    if not bonus:
        return out
    shadow = np.zeros(len(where), dtype=bool)
    strong = set(strong)
    for j in chosen:
        after = np.abs(where[:, 3] - where[j, 3])
        near = (after <= BURST_WINDOW_S) & (np.hypot(*(where[:, :2] - where[j, :2]).T) <= BURST_RADIUS_M)
        mine = set(sets[j])
        for k in np.flatnonzero(near):
            shadow[k] |= k != j and after[k] < ECHO_WINDOW_S
            if j in strong and k != j and not mine.intersection(sets[k]):
                out[k] = bonus
    out[shadow] = 0.0
    return out


def associate_offline(times_s, sensor_idx, sensors_m, weights_, *, c_m_s, temperature_c, tolerance_s,
                      min_sensors, source_up_m, max_range_m, max_ellipse_m=None, event_cost=None,
                      given=(), given_bonus=0.0, burst_bonus=None):
    """The chosen disjoint events, located.

    ``given``: events found otherwise (e.g. by the streaming associator), each
    ``(fix, members, residuals_s)`` with members indexing these triggers; they
    compete with the candidates, valued like them plus ``given_bonus``.
    A candidate near another chosen event in space and time gains
    ``burst_bonus`` (default ``BURST_BONUS``; :func:`burst_support`).
    Returns a list of ``(fix, members)`` in emission order; ``members`` are
    trigger indices (one per sensor) of the arrivals the fix used.
    """
    times_s = np.asarray(times_s, dtype=float)       # absolute (POSIX) or relative
    sensor_idx = np.asarray(sensor_idx, dtype=np.int64)
    sensors_m = np.asarray(sensors_m, dtype=float)
    if not len(times_s):
        return []
    rows, value, where = candidate_sets(times_s - times_s.min(), sensor_idx, sensors_m, weights_, c_m_s,
                                        tolerance_s=tolerance_s, min_sensors=min_sensors, source_up_m=source_up_m,
                                        max_range_m=max_range_m)
    where[:, 3] += times_s.min()
    if len(rows):        # positions for the burst support: a least-squares fit of all members, not a triple
        T = np.where(rows >= 0, times_s[np.maximum(rows, 0)], np.nan)
        bf = locate_batch(sensors_m, T, temperature_c=temperature_c, source_up_m=source_up_m, robust=False)
        okb = np.all(np.isfinite(bf.position_m), axis=1) & np.isfinite(bf.t_emit_s)
        where[okb, :3] = bf.position_m[okb]
        where[okb, 3] = bf.t_emit_s[okb]
    sets = [tuple(int(i) for i in row if i >= 0) for row in rows]
    cost = EVENT_COST if event_cost is None else event_cost
    llr = evidence(weights_)
    exact = exact_fit_evidence(tolerance_s)
    located = {}        # candidate -> (fix, used members) or None; its value then comes from the fix

    def located_value(members, residuals_s):
        return (float(np.sum(llr[np.asarray(members)])) + float(np.sum(timing_evidence(residuals_s, tolerance_s)))
                - exact)

    extra = []
    for fix, members, residuals_s in given:
        located[len(sets)] = (fix, tuple(int(i) for i in members))
        sets.append(tuple(int(i) for i in members))
        extra.append(located_value(members, residuals_s) + given_bonus)
        where = np.vstack([where, [*fix.position_m, fix.t_emit_s]])
    value = np.concatenate([value, extra])
    bonus = np.zeros(len(value))
    settled = {}        # (chosen, bonus) of each settled selection -> its objective
    for _ in range(MAX_ROUNDS):
        chosen = select(value + bonus - cost, sets)
        fresh = [k for k in chosen if k not in located]
        if not fresh:
            state = (tuple(sorted(chosen)), bonus.tobytes())
            if state in settled:        # the support cycles: keep the best selection of the cycle
                chosen = list(max(settled, key=settled.get)[0])
                break
            settled[state] = float(sum(value[k] + bonus[k] - cost for k in chosen))
            strong = [k for k in chosen if value[k] > cost]      # events that stand on their own
            support = burst_support(where, sets, chosen, strong, BURST_BONUS if burst_bonus is None else burst_bonus)
            if np.array_equal(support, bonus):
                break
            bonus = support
            continue
        for k in fresh:
            idx = np.asarray(sets[k])
            fix = locate(sensors_m[sensor_idx[idx]], times_s[idx], temperature_c=temperature_c,
                         gate_s=tolerance_s, source_up_m=source_up_m, sensor_ids=sensor_idx[idx].tolist())
            ok = (fix.status in ("ok", "ambiguous") and fix.n_used >= min_sensors
                  and (max_ellipse_m is None or fix.ellipse95_m.major_m <= max_ellipse_m))
            if not ok:
                located[k] = None
                value[k] = -np.inf
                continue
            used = idx[fix.used]
            located[k] = (fix, tuple(int(i) for i in used))
            sets[k] = tuple(int(i) for i in used)
            where[k] = [*fix.position_m, fix.t_emit_s]
            value[k] = located_value(used, np.asarray(fix.residuals_s)[fix.used])
    else:
        failed = sum(located.get(k) is None for k in chosen)
        log.warning("event selection did not settle in %d rounds: kept the last one, %d events%s",
                    MAX_ROUNDS, len(chosen) - failed,
                    f" ({failed} more failed to locate; their triggers were not reselected)" if failed else "")
    out = [located[k] for k in chosen if located.get(k) is not None]
    out.sort(key=lambda fm: fm[0].t_emit_s)
    return out
