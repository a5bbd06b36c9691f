"""The fix of an associated set whose arrivals are all consistent, without the robust search.

Association locates each candidate set (one trigger per sensor) with
:func:`shotline.locate.locate`, which first fits every arrival from a linear
start and, when all of them are consistent (every residual within the gate,
the chi-square test passed, at least ``k + 3`` = 5 of them), returns that fit
as it is; only otherwise does it search minimal subsets for outliers.  Most
sets the associator settles are consistent, and ``locate`` then costs ~1 ms
of small NumPy calls.  :func:`consistent_fix` does the same fit in C
(``native/assoc/fit.c``: the same start, Levenberg–Marquardt damping, scaling
and stopping rule) and builds the same :class:`~shotline.locate.Fix`
(covariance, 95 % ellipse, GDOP, timing sigma from the gate's prior and the
residuals, with its F-quantile ellipse) in ~60 µs;
for any set it cannot vouch for (it also refuses a normal matrix whose
condition number may come near the 1e14 at which ``locate`` calls the
geometry degenerate) it returns None and the caller uses ``locate``.  Only for ``locate``'s defaults (2.5-D, timing sigma from the
residuals, no speed estimate).
"""
import math

import numpy as np

from shotline.locate import DEFAULT_PRIOR_DOF, GATE_SIGMAS, Fix, _chi2_limit, ellipse95, timing_sigma

try:
    from shotline._assoc import ffi, lib
except ImportError as exc:    # pragma: no cover - depends on the build
    raise ImportError("the association kernels shotline._assoc are not built: run `pip install -e .`") from exc

MIN_ARRIVALS = 5       # locate() returns the all-arrival fit of a consistent set this large as it is


def _frozen(a, dtype=float):
    a = np.array(a, dtype=dtype)
    a.setflags(write=False)
    return a


def consistent_fix(sensors_m, arrival_times_s, c_m_s, gate_s, source_up_m=None):
    """What ``locate(sensors_m, arrival_times_s, gate_s=gate_s, ...)`` returns, or None.

    ``sensors_m``: ``(N, 3)`` metres, one arrival per sensor; ``arrival_times_s``:
    ``(N,)`` POSIX seconds; ``c_m_s`` the speed of sound; ``source_up_m`` the
    source height (None: the median sensor height).  None unless there are at
    least :data:`MIN_ARRIVALS` arrivals, all consistent with one fix, and the
    geometry is sound.
    """
    s = np.asarray(sensors_m, dtype=float)
    t = np.asarray(arrival_times_s, dtype=float)
    n = len(t)
    if n < MIN_ARRIVALS or not np.all(np.isfinite(t)):
        return None
    t_ref = float(t.min())
    offset = s.mean(axis=0)
    offset[2] = float(np.median(s[:, 2])) if source_up_m is None else float(source_up_m)
    S = np.ascontiguousarray(s - offset)
    dt = np.ascontiguousarray(t - t_ref)
    p = np.zeros(3)
    t0, gdop = ffi.new("double *"), ffi.new("double *")
    r = np.empty(n)
    inv = np.empty((3, 3))
    if lib.assoc_fit(n, ffi.from_buffer("double[]", S), ffi.from_buffer("double[]", dt), float(c_m_s),
                     ffi.from_buffer("double[]", p), t0, ffi.from_buffer("double[]", r),
                     ffi.from_buffer("double[]", inv), gdop) != 0:
        return None
    sse = float(r @ r)
    if float(np.max(np.abs(r))) > gate_s or sse / (gate_s / GATE_SIGMAS) ** 2 > _chi2_limit(n - 3):
        return None
    # Uncertainty as locate() reports it: the gate's prior sigma and the residuals (3 unknowns).
    sigma, dof, source = timing_sigma(sse, n - 3, prior_sigma_s=gate_s / GATE_SIGMAS, prior_dof=DEFAULT_PRIOR_DOF)
    cov = np.zeros((3, 3))
    cov[:2, :2] = inv[:2, :2] * sigma ** 2
    return Fix(status="ok", position_m=_frozen(p + offset), t_emit_s=t_ref + t0[0],
               covariance_m2=_frozen(cov), ellipse95_m=ellipse95(cov, dof), used=_frozen(np.ones(n, bool), bool),
               residuals_s=_frozen(r), reasons=("used",) * n, residual_rms_s=math.sqrt(sse / n),
               timing_sigma_s=sigma, timing_sigma_source=source, gdop=gdop[0],
               speed_of_sound_m_s=float(c_m_s), mode="2.5d", message="", timing_sigma_dof=dof)
