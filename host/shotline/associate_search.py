"""Source search for association: which triggers fit one source with the anchor?

Given an *anchor* trigger (sensor at ``p0``, time ``t0``) and the candidate
triggers that physics allows to share its source (``|t_j - t0| <= d_0j / c +
tolerance``), :func:`best_source` finds the sources that explain the anchor
together with as many other sensors as possible, at most one trigger per
sensor.  It is an anchored consensus search (RANSAC over all minimal sets
that contain the anchor):

1. Hypotheses: the anchor plus every pair of candidates on two other sensors
   among the ``near_sensors`` sensors nearest the anchor (the sensors that
   hear a source best are the ones nearest it).  Each triple of arrivals
   fixes a source on the plane through the anchor sensor's height and an
   emission time in closed form (up to two solutions; the location module's
   spherical-intersection solution).
2. Score (first on the ``score_sensors`` sensors nearest the anchor, then
   on every candidate for the best ``shortlist``): the number of sensors
   with a candidate whose residual
   ``t_j - t_emit - |p_j - x| / c`` lies within ``tolerance_s``, one per
   sensor; ties go to the louder set (direct sound is louder than its
   echoes), then to the smaller sum of squared residuals.
3. The best few distinct hypotheses are returned, best first; the
   associator refines each set with the location module until one holds.

Work per anchor is ``O(pairs * candidates)`` with at most
``near_sensors * (near_sensors - 1) / 2`` sensor pairs (times the triggers
each holds), so it grows with local density, not with the network's size.
The search runs in C (``native/assoc/search.c``, the cffi module
``shotline._assoc``): in NumPy its many small array calls cost ~0.6 ms per
anchor, in C ~20 µs.
"""
import threading

import numpy as np

try:
    from shotline._assoc import ffi, lib
except ImportError as exc:    # pragma: no cover - depends on the build
    raise ImportError("the association search shotline._assoc is not built: run `pip install -e .`") from exc


_scratch = threading.local()     # the kernel's work buffers, grown as needed, one set per thread


def _doubles(a):
    return ffi.from_buffer("double[]", a)


def _near_rows(p0, pos, sensor, near_sensors):
    """At least how many candidates are on the ``near_sensors`` nearest sensors (search.c
    ranks sensors by their first candidate's horizontal distance; ties and rounding count in)."""
    labels, first = np.unique(sensor, return_index=True)
    if len(labels) <= near_sensors:
        return len(sensor)
    d = np.hypot(pos[first, 0] - p0[0], pos[first, 1] - p0[1])
    cut = np.partition(d, near_sensors - 1)[near_sensors - 1]
    return int(np.count_nonzero(np.isin(sensor, labels[d <= cut * (1.0 + 1e-9) + 1e-9])))


def _work(n, m):
    """Work buffers for ``n`` candidates, ``m`` on the nearest sensors (search.h: ASSOC_WORK_*)."""
    h = m * max(m - 1, 0)         # hypotheses at most
    need_d, need_i = 5 * h + 8 * n + 8, 4 * h + 4 * n + 8
    if getattr(_scratch, "n_doubles", -1) < need_d:
        _scratch.n_doubles = need_d
        _scratch.work = ffi.new("double[]", need_d)
    if getattr(_scratch, "n_ints", -1) < need_i:
        _scratch.n_ints = need_i
        _scratch.iwork = ffi.new("int[]", need_i)
    return _scratch.work, _scratch.iwork


def best_sources(p0_m, dt_s, pos_m, sensor_of, c_m_s, *, tolerance_s, max_range_m, source_up_m,
                 level_db=None, min_count=2, near_sensors=7, score_sensors=12, shortlist=24, n_best=4,
                 distinct_m=10.0):
    """Best sources for an anchor and its candidates, best first.

    ``p0_m``: anchor sensor ``(3,)`` metres; ``dt_s``: ``(N,)`` candidate
    times minus the anchor time (s); ``pos_m``: ``(N, 3)`` candidate sensor
    positions; ``sensor_of``: ``(N,)`` integer sensor labels;
    ``source_up_m``: height of the source plane (same frame); ``level_db``:
    ``(N,)`` trigger levels (NaN unknown), louder sets win ties.  Returns up to
    ``n_best`` hypotheses at least ``distinct_m`` apart that explain at least
    ``min_count`` candidate sensors (besides the anchor), each
    ``(source_m (3,), t_emit_s relative to the anchor, residual_s (N,))``.
    """
    p0 = np.ascontiguousarray(p0_m, dtype=float)
    dt = np.ascontiguousarray(dt_s, dtype=float)
    n = len(dt)
    pos = np.ascontiguousarray(pos_m, dtype=float).reshape(n, 3)
    sensor = np.ascontiguousarray(sensor_of, dtype=np.int64)
    level = np.full(n, np.nan) if level_db is None else np.ascontiguousarray(level_db, dtype=float)
    m = _near_rows(p0, pos, sensor, int(near_sensors))
    work, iwork = _work(n, m)
    out_p = np.empty((n_best, 3))
    out_t = np.empty(n_best)
    out_r = np.empty((n_best, n))
    found = lib.assoc_best_sources(
        _doubles(p0), n, _doubles(dt), _doubles(pos), ffi.from_buffer("int64_t[]", sensor), _doubles(level),
        float(c_m_s), float(tolerance_s), float(max_range_m), float(source_up_m), int(min_count),
        int(near_sensors), int(score_sensors), int(shortlist), int(n_best), float(distinct_m), m,
        work, iwork, _doubles(out_p), _doubles(out_t), _doubles(out_r))
    if found < 0:
        raise RuntimeError("assoc_best_sources: more candidates on the nearest sensors than sized for")
    return [(out_p[k], float(out_t[k]), out_r[k]) for k in range(found)]
