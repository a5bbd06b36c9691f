"""References for the association tests: the NumPy code that
``native/assoc/search.c`` replaced (the source search, see
``shotline.associate_search``; the associator's window, one-per-sensor choice
and heard-in-order screen), to check the C kernels against.
"""
import math

import numpy as np

from shotline.locate import minimal_solutions


def _pairs(rows, sensor_of):
    """Index pairs of ``rows`` on two different sensors."""
    a, b = np.triu_indices(len(rows), 1)
    keep = sensor_of[rows[a]] != sensor_of[rows[b]]
    return np.stack([rows[a[keep]], rows[b[keep]]], axis=1)


def _score(P, t_emit, rel, dt, sensor_of, level, c_m_s, tolerance_s):
    """Per hypothesis: sensors explained, their loudness sum, SSE; and all residuals (H, N)."""
    d = np.sqrt(((rel[None, :, :] - P[:, None, :]) ** 2).sum(axis=2))
    resid = dt[None, :] - t_emit[:, None] - d / c_m_s
    absr = np.abs(resid)
    order = np.argsort(sensor_of, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(sensor_of[order]) != 0])
    best_per_sensor = np.minimum.reduceat(absr[:, order], starts, axis=1)
    inside = best_per_sensor <= tolerance_s
    sse = np.where(inside, best_per_sensor ** 2, 0.0).sum(axis=1)
    loudest = np.maximum.reduceat(np.where(absr <= tolerance_s, level, -np.inf)[:, order], starts, axis=1)
    loudness = np.where(np.isfinite(loudest), loudest, 0.0).sum(axis=1)
    return inside.sum(axis=1), loudness, sse, resid


def reference_best_sources(p0_m, dt_s, pos_m, sensor_of, c_m_s, *, tolerance_s, max_range_m, source_up_m,
                 level_db=None, min_count=2, near_sensors=7, score_sensors=12, shortlist=24, n_best=4,
                 distinct_m=10.0):
    """The NumPy code the C search replaced: ``associate_search.best_sources``'s reference."""
    origin = np.array([p0_m[0], p0_m[1], source_up_m], dtype=float)
    p0 = np.asarray(p0_m, dtype=float) - origin         # anchor above the origin, source plane z=0
    dt = np.asarray(dt_s, dtype=float)
    rel = np.asarray(pos_m, dtype=float) - origin
    sensor_of = np.asarray(sensor_of)
    dist = np.hypot(rel[:, 0], rel[:, 1])
    labels, first = np.unique(sensor_of, return_index=True)
    by_distance = labels[np.argsort(dist[first], kind="stable")]    # sensors, nearest first
    pairs = _pairs(np.flatnonzero(np.isin(sensor_of, by_distance[:near_sensors])), sensor_of)
    if len(pairs) == 0:
        return []
    S = np.zeros((len(pairs), 3, 3))
    S[:, 0] = p0
    S[:, 1] = rel[pairs[:, 0]]
    S[:, 2] = rel[pairs[:, 1]]
    T = np.zeros((len(pairs), 3))
    T[:, 1] = dt[pairs[:, 0]]
    T[:, 2] = dt[pairs[:, 1]]
    centre = S.mean(axis=1, keepdims=True) * np.array([1.0, 1.0, 0.0])   # keeps the solver well posed
    P, t_emit, valid = minimal_solutions(S - centre, T, 2, c_m_s)
    P = P + centre
    P, t_emit = P[valid], t_emit[valid]
    keep = np.hypot(P[:, 0], P[:, 1]) <= max_range_m
    P, t_emit = P[keep], t_emit[keep]
    if len(P) == 0:
        return []
    level = np.zeros(len(dt)) if level_db is None else np.asarray(level_db, float)
    level = np.where(np.isnan(level), 0.0, level)
    # First pass on the nearest sensors' candidates only, then every candidate for a shortlist.
    near_rows = np.flatnonzero(np.isin(sensor_of, by_distance[:score_sensors]))
    count, loudness, sse, _ = _score(P, t_emit, rel[near_rows], dt[near_rows], sensor_of[near_rows],
                                     level[near_rows], c_m_s, tolerance_s)
    short = np.lexsort((sse, -loudness, -count))[:shortlist]
    P, t_emit = P[short], t_emit[short]
    count, loudness, sse, resid = _score(P, t_emit, rel, dt, sensor_of, level, c_m_s, tolerance_s)
    chosen = []
    for h in np.lexsort((sse, -loudness, -count)):
        if count[h] < min_count or len(chosen) == n_best:
            break
        if all(np.hypot(*(P[h, :2] - P[g, :2])) > distinct_m for g in chosen):
            chosen.append(h)
    return [(P[h] + origin, float(t_emit[h]), resid[h]) for h in chosen]


def reference_window(assoc, i):
    """``Associator._window(i)`` in NumPy: (window, others, counts) as search.h's ``assoc_window``."""
    k0 = int(assoc._s[i])
    idx, dist = assoc._neighbourhood(k0)[:2]
    used = assoc._n - assoc._base
    t0 = assoc._t[i]
    span = assoc.max_range_m / assoc.speed_m_s + assoc.tolerance_s
    start = int(np.searchsorted(assoc._tmax[:used], t0 - span))     # every earlier trigger is older
    near = start + np.flatnonzero((assoc._state[start:used] != 1) & (np.abs(assoc._t[start:used] - t0) <= span))
    scratch = np.full(len(assoc._sensor_pos), -np.inf)
    scratch[idx] = dist
    d = np.minimum(scratch[assoc._s[near]], assoc.max_range_m)
    window = near[np.abs(assoc._t[near] - t0) <= d / assoc.speed_m_s + assoc.tolerance_s]
    others = window[(assoc._s[window] != k0) & np.isin(assoc._state[window], (0, 3, 4))]
    pending = others[assoc._state[others] == 0]
    counts = [len(others), len(np.unique(assoc._s[others])),
              int(np.count_nonzero(~assoc._after_event(pending))),
              int(np.count_nonzero(np.isfinite(assoc._lvl[others]) | (assoc._state[others] == 4))),
              int(assoc._after_event(np.array([i]))[0])]
    return window, others, counts


def reference_one_per_sensor(assoc, idx, abs_resid, limit):
    """``Associator._one_per_sensor`` in NumPy."""
    ok = abs_resid <= limit
    idx, abs_resid = idx[ok], abs_resid[ok]
    level = assoc._lvl[idx]
    order = np.lexsort((abs_resid, -np.where(np.isnan(level), 0.0, level), assoc._s[idx]))
    idx = idx[order]
    first = np.ones(len(idx), dtype=bool)
    first[1:] = assoc._s[idx][1:] != assoc._s[idx][:-1]
    return idx[first]


def reference_heard_in_order(assoc, source_m, members):
    """``Associator._heard_in_order`` in NumPy."""
    if len(members) == 0:
        return None
    here = np.asarray(source_m, dtype=float)
    dist_m = np.linalg.norm(assoc._p[members] - here, axis=1)
    reach_m = float(dist_m.max()) + 1e-6
    near = np.asarray(assoc._tree.query_ball_point(here, reach_m), dtype=np.int64)
    d = np.linalg.norm(assoc._sensor_xyz[near] - here, axis=1)
    inside = d <= reach_m
    near = near[inside][np.argsort(d[inside], kind="stable")]
    sensors = assoc._s[members]
    took_part = np.isin(near, sensors)
    n_check = min(assoc.min_sensors, len(near))
    if took_part[:n_check].sum() < math.ceil(assoc.nearest_fraction * n_check):
        return None
    rank_of = {k: r for r, k in enumerate(near.tolist())}
    rank = np.array([rank_of.get(k, 0) for k in sensors.tolist()], dtype=np.int64)
    before = np.cumsum(took_part) - took_part
    return members[(rank < n_check) | (before[rank] >= assoc.nearest_fraction * rank)]
