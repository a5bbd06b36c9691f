"""Classify located events: gunshot, firework or other impulsive sound.

Every located event gets a class, calibrated probabilities and the top
reasons (feature contributions) from a model stored as JSON
(``shotline.classify_model``), fitted by ``shotline train``
(``shotline.train``).  Features are in ``shotline.classify_features``.

Use::

    from shotline.classify import classify_event, load_model, ModelError
    try:
        model = load_model()                      # the shipped model
        result = classify_event(event, model)     # Classification
    except ModelError as exc:                     # missing/corrupt model file
        result = Classification.unknown(str(exc)) # keep locating, class "unknown"
    result.to_dict()  # {"class", "probabilities", "reasons", "model_version"}

An *event* (dict or object) is what association + location produce::

    {"time_utc_s": 1545180567.46,            # or "time_utc": ISO 8601 text
     "position_m": [e, n, u] | null,          # located source, local ENU metres
     "location_error_m": 12.0,                # optional (or "ellipse95_m")
     "temperature_c": 0.0, "relative_humidity_pct": 70.0,   # optional
     "triggers": [{"sensor_position_m": [e, n, u], "peak_dbfs": -20.1,
                   "rise_time_s": ..., "width_s": ..., "decay_s": ...,
                   "band_low_db": ..., "band_mid_db": ..., "band_high_db": ...}, ...]}

A trigger may carry ``level_db_spl`` (a calibrated received peak level)
instead of ``peak_dbfs``; a located ``fix`` object with ``position_m`` may
stand in for ``position_m``.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from shotline import classify_features as cf
from shotline.classify_model import (DEFAULT_MODEL_PATH, ModelError, contributions,  # noqa: F401
                                     feature_vector, load_model, predict_proba)

UNKNOWN = "unknown"
# Fix statuses whose position is used: an ambiguous fix's first solution is its best fit.
LOCATED_STATUSES = ("ok", "ambiguous")
N_REASONS = 3


@dataclass(frozen=True)
class Classification:
    """One event's class, calibrated probabilities (sum 1) and top reasons.

    ``reasons``: up to ``N_REASONS`` dicts ``{"feature", "value",
    "contribution"}``, largest absolute contribution first; contribution is in
    calibrated log-odds toward ``class_`` (positive = supports it).
    """

    class_: str
    probabilities: dict = field(default_factory=dict)
    reasons: list = field(default_factory=list)
    model_version: str = ""

    @property
    def probability(self):
        """Probability of the chosen class (NaN for ``unknown``)."""
        return self.probabilities.get(self.class_, math.nan)

    def to_dict(self):
        return {"class": self.class_, "probabilities": dict(self.probabilities),
                "reasons": [dict(r) for r in self.reasons], "model_version": self.model_version}

    @classmethod
    def unknown(cls, why):
        """The result when no model is usable: class ``unknown``, reason ``why``."""
        return cls(UNKNOWN, {}, [{"error": str(why)}], "")


def _get(obj, key, default=None):
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def event_time_s(event):
    """The event's UTC time in POSIX seconds (NaN if it has none)."""
    for key in ("time_utc_s", "t_emit_s", "time_s"):
        v = _get(event, key)
        if v is not None:
            return float(v)
    text = _get(event, "time_utc")
    if isinstance(text, str):
        from shotline.timeutil import parse_utc
        return parse_utc(text)
    return math.nan


def event_position_m(event):
    """Located source position (3 floats, ENU m), or ``None`` if unlocated.

    Unlocated: no position, or a status outside ``LOCATED_STATUSES``.
    """
    if _get(event, "status", "ok") not in LOCATED_STATUSES:
        return None
    pos = _get(event, "position_m")
    if pos is None and _get(event, "fix") is not None:
        fix = _get(event, "fix")
        if _get(fix, "status", "ok") in LOCATED_STATUSES:
            pos = _get(fix, "position_m")
    if pos is None:
        return None
    arr = np.asarray(pos, dtype=float).ravel()
    if arr.size == 2:
        arr = np.append(arr, 0.0)
    return tuple(arr) if arr.size == 3 and np.all(np.isfinite(arr)) else None


def event_location_error_m(event):
    """Semi-major axis of the 95 % location ellipse in metres (NaN if unknown).

    Read from ``location_error_m``, or ``ellipse95_m`` (a ``locate.Ellipse``,
    its dict ``{"major": ...}``, or a number) on the event or its ``fix``.
    """
    for source in (event, _get(event, "fix")):
        if source is None:
            continue
        v = _get(source, "location_error_m")
        if v is None:
            v = _get(source, "ellipse95_m")
            if v is not None and not isinstance(v, (int, float)):
                v = _get(v, "major", _get(v, "major_m"))
        if v is not None:
            try:
                return float(v)
            except (TypeError, ValueError):
                return math.nan
    return math.nan


def event_reports(event):
    """``SensorReport`` per trigger of the event.

    A trigger is a dict or object with the detector's fields (or those under
    ``features``, as on ``associate.Trigger``, or under ``trigger``) and the
    sensor's position as ``sensor_position_m`` or ``position_m``.
    """
    triggers = _get(event, "triggers")
    if not triggers:
        raise cf.FeatureError("event has no triggers")
    reports = []
    for trig in triggers:
        fields = {}
        for part in (_get(trig, "trigger"), _get(trig, "features"), trig):
            if part is None:
                continue
            part = part.to_dict() if hasattr(part, "to_dict") else part
            part = part if isinstance(part, dict) else vars(part)
            fields.update({k: v for k, v in part.items() if v is not None})
        pos = _get(trig, "sensor_position_m", _get(trig, "position_m"))
        reports.append(cf.sensor_report(fields, pos))
    return reports


def features_of(event, burst_times_s=()):
    """Feature dict of one event (see ``classify_features``)."""
    temp = _get(event, "temperature_c")
    rh = _get(event, "relative_humidity_pct")
    return cf.event_features(
        event_reports(event),
        source_position_m=event_position_m(event),
        location_error_m=event_location_error_m(event),
        burst_times_s=burst_times_s,
        temperature_c=cf.DEFAULT_TEMPERATURE_C if temp is None else float(temp),
        relative_humidity_pct=cf.DEFAULT_RELATIVE_HUMIDITY_PCT if rh is None else float(rh),
    )


def with_priors(probabilities, classes, priors):
    """Re-weight equal-prior probabilities to other class priors (Bayes' rule).

    The model is fitted with class-balanced weights, so its probabilities
    assume equal priors; ``priors`` (class -> prior share, any positive
    scale, missing classes 1/n) gives ``p_k pi_k / sum_j p_j pi_j``.
    """
    pi = np.array([float(priors.get(c, 1.0 / len(classes))) for c in classes])
    if not np.all(np.isfinite(pi)) or np.any(pi <= 0):
        raise ValueError(f"priors must be positive numbers, got {priors!r}")
    q = np.asarray(probabilities, dtype=float) * pi
    return q / q.sum(axis=-1, keepdims=True)


def classify_feature_dict(features, model, priors=None):
    """``Classification`` from a feature dict and a loaded model (see ``with_priors``)."""
    x = feature_vector(model, features)
    p = predict_proba(model, x[None, :])[0]
    if priors:
        p = with_priors(p, model["classes"], priors)
    k = int(np.argmax(p))
    contrib = contributions(model, x, k)
    order = np.argsort(-np.abs(contrib), kind="stable")[:N_REASONS]
    reasons = [{"feature": model["features"][i]["name"],
                "value": None if not math.isfinite(x[i]) else round(float(x[i]), 4),
                "contribution": round(float(contrib[i]), 4)} for i in order]
    probs = {c: round(float(pi), 6) for c, pi in zip(model["classes"], p)}
    return Classification(model["classes"][k], probs, reasons, model["model_version"])


_DEFAULT = {}


def default_model():
    """The shipped model, loaded once (raises ``ModelError``)."""
    if "model" not in _DEFAULT:
        _DEFAULT["model"] = load_model(DEFAULT_MODEL_PATH)
    return _DEFAULT["model"]


def classify_event(event_like, model=None, burst_times_s=(), priors=None):
    """Classify one located event (raises ``ModelError`` if no model is usable).

    ``burst_times_s``: times of every impulse in this event's burst, itself
    included (``classify_events`` finds them); empty = a lone impulse.
    ``priors``: class -> prior share for the deployment (default: equal).
    """
    model = default_model() if model is None else model
    return classify_feature_dict(features_of(event_like, burst_times_s), model, priors)


def _or(read, event, default):
    """``read(event)``, or ``default`` when the event's field is malformed."""
    try:
        return read(event)
    except (ValueError, TypeError, AttributeError):
        return default


def classify_events(events, model=None, priors=None):
    """Classify a batch, grouping impulses from the same place into bursts.

    Never raises for a bad model or a bad event: those get class ``unknown``
    with the error as the reason, so nothing is lost.  Returns one
    ``Classification`` per event, in order.
    """
    events = list(events)
    try:
        model = default_model() if model is None else model
    except ModelError as exc:
        return [Classification.unknown(exc) for _ in events]
    times = [_or(event_time_s, e, math.nan) for e in events]
    positions = [_or(event_position_m, e, None) if math.isfinite(t) else None
                 for e, t in zip(events, times)]
    labels = cf.group_bursts([t if math.isfinite(t) else 0.0 for t in times], positions)
    members = {}
    for label, t in zip(labels, times):
        if math.isfinite(t):
            members.setdefault(label, []).append(t)
    out = []
    for event, label in zip(events, labels):
        try:
            out.append(classify_event(event, model, members.get(label, ()), priors))
        except (ValueError, TypeError, AttributeError) as exc:  # FeatureError is a ValueError
            out.append(Classification.unknown(f"bad event: {exc}"))
    return out
