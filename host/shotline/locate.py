"""Locate an impulse from its arrival times at time-synchronised sensors (TDOA).

Forward model (straight ray, still air)::

    arrival_i = t_emit + |sensor_i - source| / c

The solver finds the source position and the emission time together from the
arrival times themselves; no reference sensor is chosen.

Steps of :func:`locate`:

1. Times are taken relative to the earliest arrival (absolute POSIX seconds
   keep their precision), positions relative to the sensors' centroid.
2. Closed-form starts: the squared range equations are linear in the source,
   the emission time and one auxiliary unknown ``w = |p|^2 - (c t_emit)^2``
   (spherical interpolation; the linear formulation Tech Note 098 calls MLG),
   solved by least squares over all arrivals.  For each minimal set of sensors
   (3 in 2-D/2.5-D, 4 in 3-D) ``w`` is fixed by a quadratic, giving up to two
   solutions; both are kept.
3. Consensus: every minimal subset (or a deterministic guided sample of 1500)
   yields candidates; each candidate counts the sensors whose arrival fits
   within the gate (4 sigma).  Ties go to the candidate that leaves fewer
   arrivals *early*: echoes and diffracted paths are only ever late, so an
   arrival earlier than the model cannot belong to the source.
4. Levenberg–Marquardt refinement of the best distinct starts: refit and
   re-gate until the set is stable, drop the latest arrival while the set
   fails a chi-square test (an echo spread over the fit; with the timing
   error only guessed from the gate, never below one redundant arrival),
   add back arrivals that keep it consistent.  At most one arrival per sensor is used.  The
   largest consistent set wins; another, equally large and consistent
   solution elsewhere makes the fix ``ambiguous`` (both are returned).
5. Uncertainty from the Jacobian: covariance ``sigma^2 (J^T J)^-1``, the 95 %
   error ellipse, GDOP, residual RMS.  A given timing error is taken as known
   (ellipse from the chi-square quantile).  Otherwise a prior timing error
   ``s0`` (default: the gate over GATE_SIGMAS) with ``K`` degrees of freedom
   is combined with the residuals (Jordan & Sverdrup 1981)::

       s^2 = (K s0^2 + sum r^2) / (K + n - p)

   and the ellipse uses the F quantile ``2 F(2, K + n - p; 0.95)``: neither
   absurd with one spare arrival nor overconfident, and with no spare
   arrival the prior alone (never a made-up sigma).

Geometry modes: ``2d`` (heights ignored), ``2.5d`` (3-D sensors, source on a
given height; default for 3-D sensors) and ``3d``.

References: Jordan & Sverdrup (1981), BSSA 71(4) 1105, confidence regions
with a-priori and a-posteriori variance; Smith & Abel (1987), closed-form least-squares source location,
IEEE Trans. ASSP 35(12); Chan & Ho (1994), IEEE Trans. SP 42(8); Calhoun et
al. (2020), ShotSpotter Tech Note 098, arXiv:2108.07377.

>>> import numpy as np
>>> sensors = np.array([[0, 0], [400, 0], [400, 400], [0, 400], [200, 600.0]])
>>> source = np.array([120.0, 250.0])
>>> times = 1545180567.0 + np.linalg.norm(sensors - source, axis=1) / 343.0
>>> fix = locate(sensors, times, speed_of_sound_m_s=343.0)
>>> fix.status, fix.position_m[:2].round(3).tolist(), round(fix.t_emit_s, 6)
('ok', [120.0, 250.0], 1545180567.0)
"""
import functools
import itertools
import math
import sys
import types
from dataclasses import dataclass, field
from dataclasses import replace as _replace

import numpy as np
from scipy.special import fdtri

from shotline.acoustics import DEFAULT_TEMPERATURE_C
from shotline.acoustics import speed_of_sound_m_s as _speed_of_sound

MODES = ("2d", "2.5d", "3d")
STATUSES = ("ok", "ambiguous", "degenerate", "insufficient")
DEFAULT_GATE_S = 2e-3            # consistency gate when no timing sigma is given
GATE_SIGMAS = 4.0
DEFAULT_PRIOR_DOF = 8.0          # weight K of the prior timing sigma (gate / GATE_SIGMAS), in residuals
MAX_SUBSETS = 1500
CHI2_2DOF_95 = 5.991464547107979  # chi-square quantile, 2 degrees of freedom, 0.95
CHI2_TAIL = 1e-3                  # a consistent set fails the chi-square test this rarely
_GEOMETRY_RTOL = 1e-6
_GROW_GATES = 3.0                # growth tries arrivals within this many gates
_STARTS = 6                      # distinct starting points refined per event
_SAME_START_M = 20.0             # starts with one inlier set closer than this are one start
_DISTINCT_M = 1.0                # solutions closer than this are the same solution
_RNG_SEED = 20181218


# ----------------------------------------------------------------------------
# Result objects


@dataclass(frozen=True)
class Ellipse:
    """An error ellipse in the horizontal plane: semi-axes (m), major-axis azimuth
    (degrees clockwise from north, 0..180)."""

    major_m: float
    minor_m: float
    azimuth_deg: float

    def to_dict(self):
        return {"major": _num(self.major_m), "minor": _num(self.minor_m),
                "azimuth_deg": _num(self.azimuth_deg)}


_NAN_ELLIPSE = Ellipse(math.nan, math.nan, math.nan)


@functools.lru_cache(maxsize=256)
def quantile95(dof=math.inf):
    """Squared scale of the 2-D 95 % confidence ellipse ``x^T C^-1 x <= q``.

    ``dof``: degrees of freedom behind the timing sigma (inf: known, the
    chi-square quantile 5.99; else ``2 F(2, dof; 0.95)``, e.g. 8.92 at 8, 38 at 2).
    """
    dof = float(dof)
    if math.isinf(dof) and dof > 0:
        return CHI2_2DOF_95
    if not dof > 0:
        raise ValueError(f"degrees of freedom must be positive, got {dof!r}")
    return 2.0 * float(fdtri(2.0, dof, 0.95))


def timing_sigma(sse_s2, n_spare, sigma_given=None, prior_sigma_s=None, prior_dof=DEFAULT_PRIOR_DOF):
    """Timing sigma behind a fix's covariance: ``(sigma_s, dof, source)``.

    ``sse_s2``: sum of the squared used residuals (s^2); ``n_spare``: used
    arrivals minus unknowns.  A given sigma is known (dof inf).  Otherwise the
    prior ``prior_sigma_s`` with ``prior_dof`` degrees of freedom and the
    residuals combine (Jordan & Sverdrup 1981):
    ``s^2 = (K s0^2 + sse) / (K + n_spare)``, dof ``K + n_spare``; source
    "residuals", or "default" with no spare arrival (the prior alone).
    """
    if sigma_given is not None:
        return float(sigma_given), math.inf, "given"
    s0, k = float(prior_sigma_s), float(prior_dof)
    n_spare = max(int(n_spare), 0)
    source = "residuals" if n_spare > 0 else "default"
    if math.isinf(k):
        return s0, math.inf, source
    return math.sqrt((k * s0 * s0 + float(sse_s2)) / (k + n_spare)), k + n_spare, source


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not fixes
class Fix:
    """Where an impulse came from, when, how sure, and which arrivals were used.

    Positions are local east/north/up metres in the caller's frame (WGS84 in
    ``position_llh`` when located from lat/lon); times are POSIX seconds.
    Per-arrival arrays follow the input order.  A position is NaN when the
    status is ``insufficient`` or ``degenerate``.
    """

    status: str                      # ok | ambiguous | degenerate | insufficient
    position_m: np.ndarray           # (3,) east, north, up (m)
    t_emit_s: float                  # emission time (POSIX s)
    covariance_m2: np.ndarray        # (3, 3) position covariance (m^2), ENU
    ellipse95_m: Ellipse             # horizontal 95 % ellipse
    used: np.ndarray                 # (N,) bool: arrival used in the fix
    residuals_s: np.ndarray          # (N,) arrival - model (s); positive = late; NaN if missing
    reasons: tuple                   # (N,) why each arrival was used or not
    residual_rms_s: float            # RMS of the used residuals (s)
    timing_sigma_s: float            # timing error behind the covariance (s)
    timing_sigma_source: str         # "given" | "residuals" (prior + residuals) | "default" (prior)
    gdop: float                      # geometric dilution of precision (position + time)
    speed_of_sound_m_s: float        # used (or estimated) speed of sound
    mode: str                        # 2d | 2.5d | 3d
    message: str = ""
    alternatives: tuple = ()         # other valid solutions (Fix), e.g. when ambiguous
    position_llh: np.ndarray = None  # (3,) lat, lon (deg), alt (m), for lat/lon input
    timing_sigma_dof: float = math.inf  # degrees of freedom of timing_sigma_s (inf: given, known)

    @property
    def ok(self):
        return self.status == "ok"

    @property
    def n_used(self):
        return int(np.count_nonzero(self.used))

    def to_dict(self):
        """A JSON-ready dict (NaN becomes None)."""
        d = {
            "status": self.status,
            "position_m": _list(self.position_m),
            "t_emit_s": _num(self.t_emit_s),
            "ellipse95_m": self.ellipse95_m.to_dict(),
            "covariance_m2": [_list(row) for row in self.covariance_m2],
            "used": [bool(u) for u in self.used],
            "residuals_s": _list(self.residuals_s),
            "reasons": list(self.reasons),
            "residual_rms_s": _num(self.residual_rms_s),
            "timing_sigma_s": _num(self.timing_sigma_s),
            "timing_sigma_source": self.timing_sigma_source,
            "timing_sigma_dof": _num(self.timing_sigma_dof),
            "gdop": _num(self.gdop),
            "speed_of_sound_m_s": _num(self.speed_of_sound_m_s),
            "mode": self.mode,
            "message": self.message,
            "alternatives": [a.to_dict() for a in self.alternatives],
        }
        if self.position_llh is not None:
            d["position_llh"] = _list(self.position_llh)
        return d


def _num(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _list(a):
    return [_num(v) for v in np.asarray(a, dtype=float).ravel()]


def _frozen(a, dtype=float):
    a = np.array(a, dtype=dtype)
    a.setflags(write=False)
    return a


# ----------------------------------------------------------------------------
# Input handling


@dataclass(frozen=True)
class _Problem:
    """Validated input in solver coordinates (centred, times relative)."""

    mode: str
    k: int                 # free position dimensions (2 or 3)
    sensors: np.ndarray    # (N, 3) centred so the source plane is z=0 in 2d/2.5d
    dt_s: np.ndarray       # (N,) arrival - t_ref (NaN = missing)
    t_ref_s: float
    offset_m: np.ndarray   # (3,) add to solver positions to get caller positions
    c_m_s: float


def _speed(temperature_c, relative_humidity_pct, speed_of_sound_m_s):
    if speed_of_sound_m_s is not None:
        c = float(speed_of_sound_m_s)
        if not (math.isfinite(c) and 200.0 < c < 450.0):
            raise ValueError(f"speed_of_sound_m_s must be within 200..450 m/s, got {speed_of_sound_m_s!r}")
        return c
    t = DEFAULT_TEMPERATURE_C if temperature_c is None else temperature_c
    return float(_speed_of_sound(t, relative_humidity_pct))


def _sensors_array(sensors_m):
    s = np.asarray(sensors_m, dtype=float)
    if s.ndim != 2 or s.shape[1] not in (2, 3):
        raise ValueError(f"sensors_m must have shape (N, 2) or (N, 3), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("sensor positions must be finite")
    return s


def _pick_mode(mode, ncols):
    if mode is None:
        return "2.5d" if ncols == 3 else "2d"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode in ("2.5d", "3d") and ncols != 3:
        raise ValueError(f"mode {mode!r} needs sensor heights: sensors_m of shape (N, 3)")
    return mode


def _prepare(sensors_m, arrival_times_s, mode, source_up_m, c):
    s = _sensors_array(sensors_m)
    t = np.asarray(arrival_times_s, dtype=float)
    if t.shape != (len(s),):
        raise ValueError(f"arrival_times_s must have shape ({len(s)},) to match sensors_m, got {t.shape}")
    if np.any(np.isinf(t)):
        raise ValueError("arrival times must be finite (use NaN for a missing arrival)")
    mode = _pick_mode(mode, s.shape[1])
    s3 = np.zeros((len(s), 3))
    s3[:, :s.shape[1]] = s
    valid = np.isfinite(t)
    t_ref = float(np.min(t[valid])) if valid.any() else 0.0
    centre = s3[valid].mean(axis=0) if valid.any() else np.zeros(3)
    offset = centre.copy()
    if mode == "2d":
        s3[:, 2] = 0.0
        offset[2] = 0.0
    elif mode == "2.5d":
        z0 = float(np.median(s3[valid, 2])) if source_up_m is None and valid.any() else source_up_m
        if z0 is None:
            z0 = 0.0
        if not math.isfinite(float(z0)):
            raise ValueError("source_up_m must be finite")
        offset[2] = float(z0)
    k = 3 if mode == "3d" else 2
    return _Problem(mode, k, s3 - offset, t - t_ref, t_ref, offset, c)


# ----------------------------------------------------------------------------
# Closed-form solutions (vectorised)


def minimal_solutions(S, dt, k, c):
    """Closed-form solutions of C minimal systems at once (vectorised).

    S: (C, k+1, 3) sensor positions (m) in a frame where the source plane is
    z = 0 for k = 2 (centre them for conditioning); dt: (C, k+1) arrival
    times (s, any common reference); k: 2 (2d/2.5d) or 3 (3d); c: m/s.
    Returns positions (C, 2, 3), emission times (C, 2) and validity (C, 2):
    the two roots of the quadratic in ``w``, valid where real and causal.
    """
    C = S.shape[0]
    tau = c * dt                                           # (C, m) metres
    M = np.concatenate([2.0 * S[:, :, :k], -2.0 * tau[:, :, None]], axis=2)  # (C, m, k+1)
    g = np.sum(S * S, axis=2) - tau ** 2                   # z of source plane is 0 (2d/2.5d)
    ones = np.ones_like(g)
    rhs = np.stack([g, ones], axis=2)                      # (C, m, 2)
    det = np.linalg.det(M)
    scale = np.prod(np.linalg.norm(M, axis=2), axis=1)
    good = np.abs(det) > 1e-10 * np.maximum(scale, 1e-300)
    sol = np.full((C, k + 1, 2), np.nan)
    if good.any():
        sol[good] = np.linalg.solve(M[good], rhs[good])
    u, v = sol[:, :, 0], sol[:, :, 1]
    up, ub, vp, vb = u[:, :k], u[:, k], v[:, :k], v[:, k]
    a = np.sum(vp * vp, axis=1) - vb ** 2
    b = 2.0 * (np.sum(up * vp, axis=1) - ub * vb) - 1.0
    cc = np.sum(up * up, axis=1) - ub ** 2
    disc = b * b - 4.0 * a * cc
    real = disc >= -1e-9 * (b * b + np.abs(4.0 * a * cc))
    sq = np.sqrt(np.maximum(disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        # numerically stable roots
        q = -0.5 * (b + np.copysign(sq, b))
        w1 = np.where(np.abs(a) > 1e-18, q / a, np.nan)
        w2 = cc / q
    w = np.stack([w1, w2], axis=1)                         # (C, 2)
    pos = up[:, None, :] + vp[:, None, :] * w[:, :, None]  # (C, 2, k)
    bb = ub[:, None] + vb[:, None] * w                     # (C, 2) range offset (m)
    P = np.zeros((C, 2, 3))
    P[:, :, :k] = pos
    ranges = tau[:, None, :] - bb[:, :, None]              # (C, 2, m) must be >= 0
    dist = np.linalg.norm(S[:, None, :, :] - P[:, :, None, :], axis=3)
    causal = np.all(ranges > -1e-6 * (1.0 + dist), axis=2)
    valid = good[:, None] & real[:, None] & causal & np.all(np.isfinite(P), axis=2) & np.isfinite(bb)
    return P, bb / c, valid




def _linear_start(S, dt, w, k, c):
    """Unconstrained linear LS start for N >= k+2 (vectorised over B events).

    S: (B, N, 3), dt: (B, N), w: (B, N) weights (0 = unused).
    Returns positions (B, 3) and emission times (B,).
    """
    B, N = dt.shape
    tau = c * np.where(w > 0, dt, 0.0)
    A = np.concatenate([2.0 * S[:, :, :k], -2.0 * tau[:, :, None], -np.ones((B, N, 1))], axis=2)
    y = np.sum(S * S, axis=2) - tau ** 2
    A = A * w[:, :, None]
    y = y * w
    AtA = np.einsum("bni,bnj->bij", A, A)
    Aty = np.einsum("bni,bn->bi", A, y)
    d = np.sqrt(np.maximum(np.einsum("bii->bi", AtA), 1e-300))
    AtA_s = AtA / d[:, :, None] / d[:, None, :] + 1e-12 * np.eye(k + 2)
    x = np.linalg.solve(AtA_s, (Aty / d)[:, :, None])[:, :, 0] / d
    P = np.zeros((B, 3))
    P[:, :k] = x[:, :k]
    return P, x[:, k] / c


# ----------------------------------------------------------------------------
# Levenberg–Marquardt (vectorised)


def _residuals(S, dt, P, t0, c):
    """arrival - model (s): (B, N)."""
    d = np.linalg.norm(S - P[:, None, :], axis=2)
    return dt - t0[:, None] - d / c[:, None]


def _jacobian(S, P, c, k, estimate_c):
    """d residual / d (position[:k], t0[, c]) in s/m, -, s/(m/s): (B, N, q)."""
    diff = S - P[:, None, :]
    d = np.maximum(np.linalg.norm(diff, axis=2), 1e-9)
    cols = [diff[:, :, :k] / (d * c[:, None])[:, :, None], -np.ones(d.shape + (1,))]
    if estimate_c:
        cols.append((d / c[:, None] ** 2)[:, :, None])
    return np.concatenate(cols, axis=2)


def _refine(S, dt, w, P, t0, c, k, estimate_c=False, iterations=30):
    """Weighted Levenberg–Marquardt from (P, t0[, c]); returns P, t0, c.

    Vectorised over events; an event drops out of the loop once its step is
    below a micrometre (or its damping has run away).
    """
    P, t0 = P.copy(), t0.copy()
    c = np.broadcast_to(np.asarray(c, float), t0.shape).copy()
    q = k + 1 + int(estimate_c)
    lam = np.full(len(t0), 1e-3)
    r = _residuals(S, dt, P, t0, c)
    cost = np.sum(w * r * r, axis=1)
    eye = np.eye(q)
    active = np.arange(len(t0))
    for _ in range(iterations):
        if len(active) == 0:
            break
        Sa, dta, wa, Pa, t0a, ca = S[active], dt[active], w[active], P[active], t0[active], c[active]
        J = _jacobian(Sa, Pa, ca, k, estimate_c)
        Jw_t = (J * wa[:, :, None]).transpose(0, 2, 1)
        JtJ = Jw_t @ J
        Jtr = (Jw_t @ r[active][:, :, None])[:, :, 0]
        d = np.sqrt(np.maximum(np.diagonal(JtJ, axis1=1, axis2=2), 1e-300))
        A = JtJ / d[:, :, None] / d[:, None, :] + lam[active][:, None, None] * eye
        step = -np.linalg.solve(A, (Jtr / d)[:, :, None])[:, :, 0] / d
        P_new = Pa.copy()
        P_new[:, :k] += step[:, :k]
        t0_new = t0a + step[:, k]
        c_new = ca + step[:, k + 1] if estimate_c else ca
        r_new = _residuals(Sa, dta, P_new, t0_new, c_new)
        cost_new = np.sum(wa * r_new * r_new, axis=1)
        better = np.isfinite(cost_new) & (cost_new <= cost[active])
        idx = active[better]
        P[idx], t0[idx], c[idx], r[idx], cost[idx] = (P_new[better], t0_new[better], c_new[better],
                                                       r_new[better], cost_new[better])
        lam[active] = np.where(better, np.maximum(lam[active] / 5.0, 1e-12), lam[active] * 10.0)
        small = np.max(np.abs(step[:, :k]), axis=1) < 1e-6
        done = (better & small) | (lam[active] > 1e8)
        active = active[~done]
    return P, t0, c


# ----------------------------------------------------------------------------
# Uncertainty


def _uncertainty(S, P, c, k, used, sigma_s, estimate_c, dof):
    """Position covariance (3, 3, m^2), 95 % ellipse (sigma with ``dof``) and GDOP at one solution."""
    J = _jacobian(S[None][:, used], P[None], np.array([c]), k, estimate_c)[0]
    JtJ = J.T @ J
    cov3 = np.full((3, 3), np.nan)
    try:
        if np.linalg.cond(JtJ) > 1e14:
            raise np.linalg.LinAlgError("singular")
        inv = np.linalg.inv(JtJ) * sigma_s ** 2
    except np.linalg.LinAlgError:
        return cov3, _NAN_ELLIPSE, math.inf
    cov3 = np.zeros((3, 3))
    cov3[:k, :k] = inv[:k, :k]
    # GDOP: range units, unit vectors and range bias (as in GNSS).
    H = np.concatenate([J[:, :k] * c, np.ones((len(J), 1))], axis=1)
    try:
        gdop = float(math.sqrt(np.trace(np.linalg.inv(H.T @ H))))
    except np.linalg.LinAlgError:
        gdop = math.inf
    return cov3, ellipse95(cov3, dof), gdop


def ellipse95(covariance_m2, dof=math.inf):
    """95 % horizontal error ellipse of an ENU covariance ((2, 2) or (3, 3), m^2)
    whose timing sigma has ``dof`` degrees of freedom (inf: known; see :func:`quantile95`)."""
    C = np.asarray(covariance_m2, dtype=float)[:2, :2]
    if not np.all(np.isfinite(C)):
        return _NAN_ELLIPSE
    q = quantile95(dof)
    vals, vecs = np.linalg.eigh(0.5 * (C + C.T))
    vals = np.maximum(vals, 0.0)
    major = math.sqrt(q * vals[1])
    minor = math.sqrt(q * vals[0])
    east, north = vecs[0, 1], vecs[1, 1]
    azimuth = math.degrees(math.atan2(east, north)) % 180.0
    return Ellipse(major, minor, azimuth)


def cramer_rao_bound(sensors_m, source_m, timing_sigma_s, *, speed_of_sound_m_s=None,
                     temperature_c=DEFAULT_TEMPERATURE_C, mode=None):
    """Cramér–Rao lower bound on the source-position covariance (3, 3, m^2).

    Independent Gaussian arrival-time errors of ``timing_sigma_s`` (s) at every
    sensor; the emission time is a nuisance unknown; the speed of sound is
    known.  In ``2.5d`` the source height is given (``source_m[2]``), so the
    up row/column is zero.  ``sqrt(trace)`` is the least RMS position error any
    unbiased locator can reach with this geometry.
    """
    c = _speed(temperature_c, None, speed_of_sound_m_s)
    s = _sensors_array(sensors_m)
    mode = _pick_mode(mode, s.shape[1])
    k = 3 if mode == "3d" else 2
    src = np.zeros(3)
    src[:len(np.ravel(source_m))] = np.ravel(source_m)
    s3 = np.zeros((len(s), 3))
    s3[:, :s.shape[1]] = s
    if mode == "2d":
        s3[:, 2] = 0.0
        src[2] = 0.0
    J = _jacobian(s3[None], src[None], np.array([c]), k, False)[0]
    if len(J) < k + 1:
        raise ValueError(f"need at least {k + 1} sensors in {mode} mode")
    fim = J.T @ J / float(timing_sigma_s) ** 2
    cov = np.zeros((3, 3))
    cov[:k, :k] = np.linalg.inv(fim)[:k, :k]
    return cov


# ----------------------------------------------------------------------------
# The robust single-event locator


def _groups(sensors, sensor_ids=None):
    """Index of the sensor of each row: by ``sensor_ids`` when given, else by
    position (rows at the same position to the millimetre are one sensor)."""
    if sensor_ids is not None:
        ids = list(sensor_ids)
        if len(ids) != len(sensors):
            raise ValueError(f"sensor_ids must have {len(sensors)} entries, got {len(ids)}")
        index = {}
        return np.array([index.setdefault(i, len(index)) for i in ids], dtype=int)
    _, inverse = np.unique(np.round(sensors, 3), axis=0, return_inverse=True)
    return inverse.ravel()


def _subsets(prob, valid_idx, group, m, gate):
    """Minimal subsets of arrivals at distinct sensors.

    All of them when there are at most MAX_SUBSETS; otherwise a deterministic
    guided sample: a random first arrival, then each next one drawn among the
    arrivals at other sensors whose time difference to every arrival drawn so
    far is physically possible (at most distance / c, plus the gate).  In a
    pool of many impulses this finds the arrivals of one impulse far more
    often than blind sampling.
    """
    total = math.comb(len(valid_idx), m)
    if total <= MAX_SUBSETS:
        subs = np.array(list(itertools.combinations(valid_idx, m)), dtype=int).reshape(-1, m)
        if len(subs) == 0:
            return subs
        g = np.sort(group[subs], axis=1)
        return subs[np.all(g[:, 1:] != g[:, :-1], axis=1)]
    idx = np.asarray(valid_idx)
    pos, t, g = prob.sensors[idx], prob.dt_s[idx], group[idx]
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
    possible = (np.abs(t[:, None] - t[None, :]) <= dist / prob.c_m_s + gate) & (g[:, None] != g[None, :])
    rng = np.random.default_rng(_RNG_SEED)
    subs = []
    for first in rng.integers(len(idx), size=MAX_SUBSETS):
        chosen, allowed = [first], possible[first].copy()
        for _ in range(m - 1):
            options = np.flatnonzero(allowed)
            if len(options) == 0:
                break
            nxt = options[rng.integers(len(options))]
            chosen.append(nxt)
            allowed &= possible[nxt]
        if len(chosen) == m:
            subs.append(chosen)
    if not subs:
        return np.zeros((0, m), dtype=int)
    return np.unique(np.sort(idx[np.array(subs)], axis=1), axis=0)


def _select(r, valid, group, gate):
    """Per candidate: inlier mask (one arrival per sensor, best fit), counts.

    r: (C, N) residuals; returns used (C, N), n_inliers (C,), n_early (C,), sse (C,)
    where n_early counts sensors whose arrivals are all early beyond the gate.
    """
    absr = np.where(valid, np.abs(r), np.inf)
    inl = absr <= gate
    early = valid & (r < -gate)
    n_groups = int(group.max()) + 1 if len(group) else 0
    if n_groups == r.shape[1]:  # one arrival per sensor
        used, n_early = inl, np.sum(early, axis=1)
    else:
        onehot = np.zeros((r.shape[1], n_groups))
        onehot[np.arange(r.shape[1]), group] = 1.0
        # Best-fitting arrival of each sensor: the smallest |r| within its group.
        order = np.lexsort((absr, np.broadcast_to(group, absr.shape)), axis=1)
        sorted_group = group[order]
        first = np.ones_like(order, dtype=bool)
        first[:, 1:] = sorted_group[:, 1:] != sorted_group[:, :-1]
        best = np.zeros_like(inl)
        np.put_along_axis(best, order, first, axis=1)
        used = inl & best
        early_group = (early.astype(float) @ onehot) > 0
        has_used = (used.astype(float) @ onehot) > 0
        n_early = np.sum(early_group & ~has_used, axis=1)
    sse = np.sum(np.where(used, r * r, 0.0), axis=1)
    return used, used.sum(axis=1), n_early, sse


def _fit_set(prob, used, P, t0, estimate_c):
    S = prob.sensors[None]
    dt = np.where(np.isfinite(prob.dt_s), prob.dt_s, 0.0)[None]
    w = used.astype(float)[None]
    P, t0, c = _refine(S, dt, w, P[None], np.array([t0]), prob.c_m_s, prob.k, estimate_c)
    return P[0], float(t0[0]), float(c[0])


def _consensus(prob, valid, group, gate, sigma, estimate_c, sigma_known):
    """Candidate solutions ``(mask, P, t0, c, sse, n_early)``, best first.

    Best = most arrivals used, then fewest sensors left with only early
    arrivals (impossible for the true source: echoes are late), then the
    smallest sum of squared residuals.
    Starts: the linear least-squares solution over all arrivals, and the
    minimal-subset solutions ranked by consensus (several distinct ones, so a
    second basin, e.g. a mirror image, is found too).
    """
    k, m = prob.k, prob.k + 1
    valid_idx = np.flatnonzero(valid)
    dt = np.where(valid, prob.dt_s, 0.0)
    results = []
    if len(valid_idx) >= k + 2 and len(set(group[valid_idx])) == len(valid_idx):
        P0, t00 = _linear_start(prob.sensors[None], dt[None], valid[None].astype(float), k, prob.c_m_s)
        if np.all(np.isfinite(P0)):
            results.append(_iterate(prob, valid, group, gate, sigma, valid.copy(), P0[0], float(t00[0]),
                                    estimate_c, sigma_known))
            if results[-1] is None:
                results.pop()
            elif len(valid_idx) >= k + 3 and results[-1][0].sum() == len(valid_idx):
                return results  # every arrival consistent, with two or more to spare
    subs = _subsets(prob, valid_idx, group, m, gate)
    if len(subs):
        P, t0, ok = minimal_solutions(prob.sensors[subs], dt[subs], k, prob.c_m_s)
        P, t0 = P[ok], t0[ok]
    else:
        P = t0 = np.zeros((0,))
    if len(P):
        r = _residuals(prob.sensors[None], dt[None], P, t0, np.full(len(t0), prob.c_m_s))
        used, n_in, n_early, sse = _select(r, valid, group, gate)
        order = np.lexsort((sse, n_early, -n_in))
        tried = [(res[0], res[1]) for res in results]
        best_used = max([int(res[0].sum()) for res in results], default=0)
        for i in order[:256]:
            if n_in[i] < max(m, best_used - 1):
                break  # (sorted) the rest cannot reach the best set found
            if _seen(used[i], P[i], tried):
                continue
            tried.append((used[i], P[i]))
            res = _iterate(prob, valid, group, gate, sigma, used[i], P[i], t0[i], estimate_c, sigma_known)
            if res is not None:
                results.append(res)
                best_used = max(best_used, int(res[0].sum()))
            if len(tried) >= _STARTS:
                break
    results.sort(key=lambda res: (-int(res[0].sum()), res[5], res[4]))
    return results


def _seen(mask, pos, tried):
    """Whether a start repeats one already tried: the same inlier set nearby
    (it would converge to the same solution), or any set at the same place."""
    return any(np.linalg.norm(pos - t_pos) < (_SAME_START_M if np.array_equal(mask, t_mask) else _DISTINCT_M)
               for t_mask, t_pos in tried)


def _iterate(prob, valid, group, gate, sigma, mask, P, t0, estimate_c, sigma_known):
    """Refit on the set and re-gate against all arrivals until the set is
    stable; trim the latest arrival while the set fails the chi-square test;
    then grow it one arrival at a time while the fit stays consistent.

    A set is consistent when every residual is within ``gate`` and the sum of
    squared residuals over ``sigma^2`` is below the 99.9 % chi-square quantile.
    When ``sigma`` is only guessed from the gate (``sigma_known`` False), a set
    with a single redundant arrival is judged by the gate alone: one degree of
    freedom and a guessed sigma are too weak a basis to drop an arrival, and
    dropping it would leave a fix that nothing can check.
    Returns ``(mask, P, t0, c, sse, n_early)``, or None when no consistent set
    remains; ``n_early`` counts sensors left with only early arrivals.
    """
    dt = np.where(valid, prob.dt_s, 0.0)
    m = prob.k + 1

    def fit(mask, P, t0):
        fit_c = estimate_c and mask.sum() >= prob.k + 3
        P, t0, c = _fit_set(prob, mask, P, t0, fit_c)
        r = _residuals(prob.sensors[None], dt[None], P[None], np.array([t0]), np.array([c]))[0]
        return P, t0, c, r

    def consistent(mask, r):
        n = int(mask.sum())
        if n < m or np.max(np.abs(r[mask])) > gate:
            return False
        dof = n - m
        if dof <= (0 if sigma_known else 1):
            return True
        return float(np.sum(r[mask] ** 2)) / sigma ** 2 <= _chi2_limit(dof)

    P, t0, c, r = fit(mask, P, t0)
    for _ in range(5):
        new_mask = _select(r[None], valid, group, gate)[0][0]
        if new_mask.sum() < m or np.array_equal(new_mask, mask):
            break
        mask = new_mask
        P, t0, c, r = fit(mask, P, t0)
    # Trim: within the gate one by one, yet too spread together; the latest goes
    # first (an echo is late, and the fit spreads its delay over the others).
    while mask.sum() > m and not consistent(mask, r):
        mask = mask.copy()
        mask[np.flatnonzero(mask)[np.argmax(r[mask])]] = False
        P, t0, c, r = fit(mask, P, t0)
    # Growth: a minimal subset's solution can put a good arrival just outside the
    # gate; the refit including it decides.  Echoes far beyond the gate are not tried.
    for _ in range(4):
        taken = np.zeros(int(group.max()) + 1, dtype=bool)
        taken[group[mask]] = True
        cand = np.flatnonzero(valid & ~mask & ~taken[group] & (np.abs(r) <= _GROW_GATES * gate))
        if len(cand) == 0:
            break
        trial = mask.copy()
        trial[cand[np.argmin(np.abs(r[cand]))]] = True
        P2, t02, c2, r2 = fit(trial, P, t0)
        if not consistent(trial, r2):
            break
        mask, P, t0, c, r = trial, P2, t02, c2, r2
    if not consistent(mask, r):
        return None
    n_early = int(_select(r[None], valid, group, gate)[2][0])
    return mask, P, t0, c, float(np.sum(r[mask] ** 2)), n_early


def _reason(valid, used, r, group, gate):
    reasons = []
    for i in range(len(r)):
        if not valid[i]:
            reasons.append("missing")
        elif used[i]:
            reasons.append("used")
        elif abs(r[i]) <= gate and used[group == group[i]].any():
            reasons.append("duplicate: another arrival at this sensor fits better")
        elif abs(r[i]) <= gate:
            reasons.append(f"{'late' if r[i] > 0 else 'early'} by {abs(r[i]) * 1e3:.3f} ms: within the gate, "
                           "but the set fails the chi-square test with it")
        elif r[i] > 0:
            reasons.append(f"late by {r[i] * 1e3:.3f} ms: echo or diffracted path")
        else:
            reasons.append(f"early by {-r[i] * 1e3:.3f} ms: not from this source")
    return tuple(reasons)


def _empty_fix(prob, status, message, sigma, valid):
    n = len(prob.dt_s)
    reasons = tuple("not used" if valid[i] else "missing" for i in range(n))
    return Fix(status=status, position_m=_frozen(np.full(3, np.nan)), t_emit_s=math.nan,
               covariance_m2=_frozen(np.full((3, 3), np.nan)), ellipse95_m=_NAN_ELLIPSE,
               used=_frozen(np.zeros(n, bool), bool), residuals_s=_frozen(np.full(n, np.nan)),
               reasons=reasons, residual_rms_s=math.nan, timing_sigma_s=sigma,
               timing_sigma_source="given" if sigma == sigma else "default",
               gdop=math.nan, speed_of_sound_m_s=prob.c_m_s, mode=prob.mode, message=message)


def _make_fix(prob, valid, group, gate, mask, P, t0, c, sigma_given, prior, estimate_c, status, message):
    dt = np.where(valid, prob.dt_s, 0.0)
    r = _residuals(prob.sensors[None], dt[None], P[None], np.array([t0]), np.array([c]))[0]
    r = np.where(valid, r, np.nan)
    n_used = int(mask.sum())
    q = prob.k + 1 + int(estimate_c and n_used >= prob.k + 3)
    rms = float(np.sqrt(np.mean(r[mask] ** 2))) if n_used else math.nan
    sigma, dof, source = timing_sigma(float(np.sum(r[mask] ** 2)), n_used - q, sigma_given, *prior)
    cov, ell, gdop = _uncertainty(prob.sensors, P, c, prob.k, mask, sigma, q > prob.k + 1, dof)
    if not np.all(np.isfinite(cov)) and status == "ok":
        status, message = "degenerate", "the geometry leaves the position unresolved (singular Jacobian)"
    return Fix(status=status, position_m=_frozen(P + prob.offset_m), t_emit_s=prob.t_ref_s + t0,
               covariance_m2=_frozen(cov), ellipse95_m=ell, used=_frozen(mask, bool),
               residuals_s=_frozen(r), reasons=_reason(valid, mask, r, group, gate),
               residual_rms_s=rms, timing_sigma_s=sigma, timing_sigma_source=source, gdop=gdop,
               speed_of_sound_m_s=c, mode=prob.mode, message=message, timing_sigma_dof=dof)


@functools.lru_cache(maxsize=256)
def _chi2_limit(dof):
    """Upper CHI2_TAIL quantile of the chi-square distribution with ``dof`` degrees of freedom."""
    from scipy.special import chdtri

    return float(chdtri(dof, CHI2_TAIL))


def _geometry_rank(points, k):
    """Number of independent directions spanned by the points (relative tolerance)."""
    if len(points) < 2:
        return 0
    sv = np.linalg.svd(points[:, :k] - points[:, :k].mean(axis=0), compute_uv=False)
    return int(np.sum(sv > _GEOMETRY_RTOL * max(sv[0], 1e-300)))


def locate(sensors_m, arrival_times_s, *, temperature_c=DEFAULT_TEMPERATURE_C,
           relative_humidity_pct=None, speed_of_sound_m_s=None, timing_sigma_s=None,
           mode=None, source_up_m=None, estimate_speed=False, gate_s=None, sensor_ids=None,
           prior_sigma_s=None, prior_dof=DEFAULT_PRIOR_DOF):
    """Locate one impulse from its arrival times; robust to late (echo) arrivals.

    Parameters
    ----------
    sensors_m : (N, 2) or (N, 3) array
        Sensor positions, local east/north[/up] metres.  Rows may repeat a
        sensor (several candidate pulses at one sensor); at most one arrival
        per sensor is used (see ``sensor_ids``).
    arrival_times_s : (N,) array
        Arrival time at each sensor (s), absolute (POSIX) or relative; NaN
        marks a missing arrival.
    temperature_c, relative_humidity_pct : float
        Air temperature and humidity for the speed of sound (Cramer 1993),
        unless ``speed_of_sound_m_s`` is given.
    timing_sigma_s : float or None
        Arrival-time standard error (s), taken as known.  None: the prior
        combined with the residuals (see ``prior_sigma_s``).
    mode : "2d" | "2.5d" | "3d" | None
        None: ``2.5d`` for (N, 3) sensors, ``2d`` for (N, 2).
    source_up_m : float or None
        Source height in ``2.5d`` (m, same frame); None: the median sensor height.
    estimate_speed : bool
        Also fit the speed of sound (needs at least k+3 consistent sensors).
    gate_s : float or None
        Largest residual accepted as consistent; None: 4 sigma if
        ``timing_sigma_s`` is given, else 2 ms.
    sensor_ids : sequence or None
        Which sensor each row is (any hashable); rows of one sensor are
        alternatives for one arrival.  None: rows at the same position are one
        sensor.
    prior_sigma_s, prior_dof : float
        Without ``timing_sigma_s``: the prior timing error (s; None: ``gate_s``
        / GATE_SIGMAS) and its weight in degrees of freedom (> 0; inf: the
        prior taken as known).  The covariance uses
        ``s^2 = (K s0^2 + sum r^2) / (K + n - p)``, the 95 % ellipse the F
        quantile with ``K + n - p`` degrees of freedom (``Fix.timing_sigma_dof``).

    Returns
    -------
    Fix
    """
    c = _speed(temperature_c, relative_humidity_pct, speed_of_sound_m_s)
    if timing_sigma_s is not None and not (math.isfinite(timing_sigma_s) and timing_sigma_s > 0):
        raise ValueError(f"timing_sigma_s must be positive, got {timing_sigma_s!r}")
    prob = _prepare(sensors_m, arrival_times_s, mode, source_up_m, c)
    if gate_s is None:
        gate_s = GATE_SIGMAS * timing_sigma_s if timing_sigma_s is not None else DEFAULT_GATE_S
    prior = _prior(gate_s, prior_sigma_s, prior_dof)
    valid = np.isfinite(prob.dt_s)
    group = _groups(prob.sensors, sensor_ids)
    k, m = prob.k, prob.k + 1
    sigma_nan = math.nan if timing_sigma_s is None else float(timing_sigma_s)
    n_distinct = len(set(group[valid]))
    if n_distinct < m:
        return _empty_fix(prob, "insufficient",
                          f"{n_distinct} sensors with arrivals; {prob.mode} needs at least {m}",
                          sigma_nan, valid)
    rank = _geometry_rank(prob.sensors[valid], k)
    if rank < k:
        what = "collinear" if k == 2 else "coplanar"
        return _empty_fix(prob, "degenerate",
                          f"sensors are {what}: a source and its mirror image fit equally",
                          sigma_nan, valid)
    sigma_s = timing_sigma_s if timing_sigma_s is not None else gate_s / GATE_SIGMAS
    results = _consensus(prob, valid, group, gate_s, sigma_s, estimate_speed, timing_sigma_s is not None)
    if not results:
        return _empty_fix(prob, "degenerate", "no closed-form solution for any sensor subset",
                          sigma_nan, valid)
    mask, P, t0, c_fit, sse, n_early = results[0]
    n_used = int(mask.sum())
    status, message = "ok", ""
    if n_used == m:
        message = f"no redundancy: {m} arrivals fit exactly, none can be checked"
    if n_used < n_distinct:
        message = (message + "; " if message else "") + f"{n_distinct - n_used} sensor(s) rejected"
    fix = _make_fix(prob, valid, group, gate_s, mask, P, t0, c_fit, timing_sigma_s, prior,
                    estimate_speed, status, message)
    # Rivals: as many arrivals, all within the gate, somewhere else.
    solutions = [(fix, sse)]
    for r_mask, r_P, r_t0, r_c, r_sse, r_early in results[1:]:
        if r_mask.sum() < n_used or r_early > n_early:
            break
        rival = _make_fix(prob, valid, group, gate_s, r_mask, r_P, r_t0, r_c, timing_sigma_s, prior,
                          estimate_speed, "ambiguous", "alternative solution")
        if (np.all(np.abs(rival.residuals_s[r_mask]) <= gate_s)
                and all(_distinct(rival, other) for other, _ in solutions)):
            solutions.append((rival, r_sse))
    if len(solutions) > 1:
        # Clearly better fits first (chi-square lower by > 1); among equal fits, nearest the array.
        sigma2 = (gate_s / GATE_SIGMAS) ** 2
        best_chi2 = min(x for _, x in solutions) / sigma2
        solutions.sort(key=lambda fs: (fs[1] / sigma2 - best_chi2 > 1.0,
                                       float(np.linalg.norm(fs[0].position_m - prob.offset_m))))
        n = len(solutions)
        fix = _replace(solutions[0][0], status="ambiguous",
                       message=f"{n} solutions fit the arrivals; the best fit (or nearest the array) first",
                       alternatives=tuple(_replace(f, status="ambiguous", message="alternative solution")
                                          for f, _ in solutions[1:]))
    return fix


def _prior(gate_s, prior_sigma_s, prior_dof):
    """Validated ``(prior_sigma_s, prior_dof)``; the sigma defaults to the gate over GATE_SIGMAS."""
    s0 = gate_s / GATE_SIGMAS if prior_sigma_s is None else prior_sigma_s
    if not (math.isfinite(s0) and s0 > 0):
        raise ValueError(f"prior_sigma_s (or gate_s) must be positive, got {s0!r}")
    if not (prior_dof > 0):
        raise ValueError(f"prior_dof must be positive (inf: the prior is known), got {prior_dof!r}")
    return float(s0), float(prior_dof)


def _distinct(a, b):
    """Whether two fixes are different solutions, not the same one seen twice."""
    majors = [f.ellipse95_m.major_m for f in (a, b) if math.isfinite(f.ellipse95_m.major_m)]
    scale = max([_DISTINCT_M] + [3.0 * min(majors)] if majors else [_DISTINCT_M])
    return float(np.linalg.norm(a.position_m - b.position_m)) > scale


def locate_llh(sensors_llh, arrival_times_s, *, frame=None, **kwargs):
    """:func:`locate` for WGS84 sensors ``(N, 3)`` latitude, longitude (deg), altitude (m).

    Works in a local ENU frame (``frame`` or one centred on the sensors, see
    :func:`shotline.geo.frame_for`); ``source_up_m`` (2.5-D) is an altitude
    (m, WGS84) here.  The Fix carries ENU metres in that frame and
    ``position_llh`` (also for each alternative).
    """
    from shotline.geo import frame_for

    llh = np.asarray(sensors_llh, dtype=float)
    if llh.ndim != 2 or llh.shape[1] != 3:
        raise ValueError(f"sensors_llh must have shape (N, 3): lat, lon (deg), alt (m); got {llh.shape}")
    frame = frame or frame_for(llh)
    enu = frame.to_enu(llh)
    if kwargs.get("source_up_m") is not None:
        lat0, lon0 = frame.lat0_deg, frame.lon0_deg
        kwargs["source_up_m"] = float(frame.to_enu([lat0, lon0, kwargs["source_up_m"]])[2])
    fix = locate(enu, arrival_times_s, **kwargs)
    return _with_llh(fix, frame)


def _with_llh(fix, frame):
    alts = tuple(_with_llh(a, frame) for a in fix.alternatives)
    llh = (_frozen(frame.to_llh(fix.position_m)) if np.all(np.isfinite(fix.position_m))
           else _frozen(np.full(3, np.nan)))
    return _replace(fix, position_llh=llh, alternatives=alts)


# ----------------------------------------------------------------------------
# Batch


@dataclass(frozen=True, eq=False)
class BatchFix:
    """Fixes for B events at once (arrays over events; per-arrival arrays (B, N)).

    ``fix(i)`` / ``batch[i]`` gives the :class:`Fix` of one event.
    """

    status: np.ndarray         # (B,) str
    position_m: np.ndarray     # (B, 3)
    t_emit_s: np.ndarray       # (B,)
    covariance_m2: np.ndarray  # (B, 3, 3)
    used: np.ndarray           # (B, N) bool
    residuals_s: np.ndarray    # (B, N)
    residual_rms_s: np.ndarray  # (B,)
    timing_sigma_s: np.ndarray  # (B,)
    timing_sigma_source: str   # "given" | "residuals"
    gdop: np.ndarray           # (B,)
    speed_of_sound_m_s: float
    mode: str
    timing_sigma_dof: np.ndarray = None  # (B,) degrees of freedom of timing_sigma_s (inf: given)
    _fixes: tuple = field(repr=False, default=None)

    def __len__(self):
        return len(self.status)

    def __getitem__(self, i):
        return self.fix(i)

    def __iter__(self):
        return (self.fix(i) for i in range(len(self)))

    def fix(self, i):
        if self._fixes is not None and self._fixes[i] is not None:
            return self._fixes[i]
        cov = self.covariance_m2[i]
        n = self.used.shape[1]
        used = self.used[i]
        reasons = tuple("used" if used[j] else ("missing" if np.isnan(self.residuals_s[i, j]) else "not used")
                        for j in range(n))
        dof = math.inf if self.timing_sigma_dof is None else float(self.timing_sigma_dof[i])
        return Fix(status=str(self.status[i]), position_m=_frozen(self.position_m[i]),
                   t_emit_s=float(self.t_emit_s[i]), covariance_m2=_frozen(cov),
                   ellipse95_m=ellipse95(cov, dof), used=_frozen(used, bool),
                   residuals_s=_frozen(self.residuals_s[i]), reasons=reasons,
                   residual_rms_s=float(self.residual_rms_s[i]),
                   timing_sigma_s=float(self.timing_sigma_s[i]),
                   timing_sigma_source=self.timing_sigma_source,
                   gdop=float(self.gdop[i]), speed_of_sound_m_s=self.speed_of_sound_m_s, mode=self.mode,
                   message="batch solution from all arrivals", timing_sigma_dof=dof)


def locate_batch(sensors_m, arrival_times_s, *, temperature_c=DEFAULT_TEMPERATURE_C,
                 relative_humidity_pct=None, speed_of_sound_m_s=None, timing_sigma_s=None,
                 mode=None, source_up_m=None, robust="auto", gate_s=None, prior_sigma_s=None,
                 prior_dof=DEFAULT_PRIOR_DOF):
    """Locate B events at once.

    ``sensors_m`` is (N, D) shared by all events or (B, N, D); ``arrival_times_s``
    is (B, N) with NaN for a missing arrival; ``source_up_m`` a scalar or (B,).
    Every event is first solved by vectorised NumPy (linear start +
    Levenberg–Marquardt over the whole batch) from all its arrivals.  Then,
    with ``robust="auto"`` (default), events whose arrivals are not all
    consistent (a residual beyond the gate, or the chi-square test failed)
    are solved again one by one by :func:`locate` (consensus, echo rejection,
    ambiguity), as are events with only the minimal number of arrivals;
    ``robust=True`` sends every event through :func:`locate`, ``robust=False``
    none but the minimal ones (every arrival used, echoes included).
    The timing sigma and ellipses are as :func:`locate` gives them.
    """
    if robust not in (True, False, "auto"):
        raise ValueError(f"robust must be True, False or 'auto', got {robust!r}")
    c = _speed(temperature_c, relative_humidity_pct, speed_of_sound_m_s)
    t = np.asarray(arrival_times_s, dtype=float)
    if t.ndim != 2:
        raise ValueError(f"arrival_times_s must have shape (B, N), got {t.shape}")
    B, N = t.shape
    s = np.asarray(sensors_m, dtype=float)
    if s.ndim == 2:
        s = np.broadcast_to(s, (B,) + s.shape)
    if s.ndim != 3 or s.shape[:2] != (B, N) or s.shape[2] not in (2, 3):
        raise ValueError("sensors_m must have shape (N, D) or (B, N, D) with D 2 or 3, "
                         f"got {np.shape(sensors_m)}")
    if not np.all(np.isfinite(s)) or np.any(np.isinf(t)):
        raise ValueError("sensor positions must be finite and arrival times finite or NaN")
    if timing_sigma_s is not None and not (math.isfinite(timing_sigma_s) and timing_sigma_s > 0):
        raise ValueError(f"timing_sigma_s must be positive, got {timing_sigma_s!r}")
    mode = _pick_mode(mode, s.shape[2])
    k = 3 if mode == "3d" else 2
    gate = gate_s if gate_s is not None else (
        GATE_SIGMAS * timing_sigma_s if timing_sigma_s is not None else DEFAULT_GATE_S)
    prior = _prior(gate, prior_sigma_s, prior_dof)
    valid = np.isfinite(t)
    w = valid.astype(float)
    n_valid = valid.sum(axis=1)
    t_ref = np.where(n_valid > 0, np.nanmin(np.where(valid, t, np.inf), axis=1), 0.0)
    dt = np.where(valid, t - t_ref[:, None], 0.0)
    s3 = np.zeros((B, N, 3))
    s3[:, :, :s.shape[2]] = s
    centre = np.einsum("bn,bnd->bd", w, s3) / np.maximum(n_valid, 1)[:, None]
    if mode == "2d":
        s3[:, :, 2] = 0.0
        centre[:, 2] = 0.0
    elif mode == "2.5d":
        if source_up_m is None:
            zs = np.where(valid, s3[:, :, 2], np.nan)
            z0 = np.nanmedian(np.where(n_valid[:, None] > 0, zs, 0.0), axis=1)
        else:
            z0 = np.broadcast_to(np.asarray(source_up_m, dtype=float), (B,))
        centre[:, 2] = z0
    S = s3 - centre[:, None, :]

    P0, t00 = _linear_start(S, dt, w, k, c)
    P, t0, _ = _refine(S, dt, w, P0, t00, c, k)
    r = np.where(valid, _residuals(S, dt, P, t0, np.full(B, c)), np.nan)
    q = k + 1
    dof = n_valid - q
    rss = np.nansum(r ** 2, axis=1)
    rms = np.sqrt(rss / np.maximum(n_valid, 1))
    if timing_sigma_s is not None or math.isinf(prior[1]):  # as timing_sigma(), over the batch
        sigma = np.full(B, float(timing_sigma_s if timing_sigma_s is not None else prior[0]))
        sigma_dof = np.full(B, math.inf)
    else:
        sigma_dof = prior[1] + np.maximum(dof, 0)
        sigma = np.sqrt((prior[1] * prior[0] ** 2 + rss) / sigma_dof)
    J = _jacobian(S, P, np.full(B, c), k, False)
    JtJ = (J * w[:, :, None]).transpose(0, 2, 1) @ J
    dg = np.sqrt(np.maximum(np.diagonal(JtJ, axis1=1, axis2=2), 1e-300))
    det_ok = np.abs(np.linalg.det(JtJ / dg[:, :, None] / dg[:, None, :])) > 1e-12  # well conditioned
    cov = np.full((B, 3, 3), np.nan)
    gdop = np.full(B, np.inf)
    if det_ok.any():
        inv = np.linalg.inv(JtJ[det_ok])
        c3 = np.zeros((int(det_ok.sum()), 3, 3))
        c3[:, :k, :k] = inv[:, :k, :k] * (sigma[det_ok] ** 2)[:, None, None]
        cov[det_ok] = c3
        # GDOP in range units (position and range bias c t_emit), as in _uncertainty.
        diag = np.diagonal(inv, axis1=1, axis2=2)
        gdop[det_ok] = np.sqrt(diag[:, :k].sum(axis=1) / (c * c) + diag[:, k])
    status = np.where(det_ok, "ok", "degenerate").astype(object)
    status[n_valid < q + 1] = "insufficient"
    position = P + centre
    fixes = [None] * B
    redo = n_valid <= q
    if robust is True:
        redo[:] = True
    elif robust == "auto":
        chi_sigma = timing_sigma_s if timing_sigma_s is not None else gate / GATE_SIGMAS
        limit = np.array([_chi2_limit(d) if d > 0 else np.inf for d in dof])
        worst = np.nanmax(np.where(valid, np.abs(r), 0.0), axis=1)
        redo |= (worst > gate) | (rss / chi_sigma ** 2 > limit)
    slow = np.flatnonzero(redo & (n_valid > 0))
    for i in slow:
        f = locate(s[i], t[i], speed_of_sound_m_s=c, timing_sigma_s=timing_sigma_s, mode=mode,
                   source_up_m=None if source_up_m is None else float(centre[i, 2]), gate_s=gate_s,
                   prior_sigma_s=prior_sigma_s, prior_dof=prior_dof)
        fixes[i] = f
        status[i], position[i], t_ref[i], t0[i] = f.status, f.position_m, f.t_emit_s, 0.0
        cov[i], r[i], w[i] = f.covariance_m2, f.residuals_s, f.used
        rms[i], sigma[i], sigma_dof[i], gdop[i] = f.residual_rms_s, f.timing_sigma_s, f.timing_sigma_dof, f.gdop
    return BatchFix(status=status.astype(str), position_m=position, t_emit_s=t_ref + t0,
                    covariance_m2=cov, used=w > 0, residuals_s=r, residual_rms_s=rms,
                    timing_sigma_s=sigma,
                    timing_sigma_source="given" if timing_sigma_s is not None else "residuals", gdop=gdop,
                    speed_of_sound_m_s=c, mode=mode, timing_sigma_dof=sigma_dof,
                    _fixes=tuple(fixes) if len(slow) else None)


class _CallableModule(types.ModuleType):
    """Lets ``shotline.locate(sensors_m, arrival_times_s, ...)`` call :func:`locate`.

    The module and its main function share a name; making the module callable
    keeps both ``shotline.locate(...)`` and ``from shotline.locate import locate``.
    """

    def __call__(self, *args, **kwargs):
        return locate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
