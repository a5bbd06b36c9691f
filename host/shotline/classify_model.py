"""The classifier's fitted model as JSON data, and inference from it (NumPy only).

The model is a multinomial logistic regression over standardised features,
each feature entering as ``z`` and ``z**2`` (so a class can sit in the middle
of a feature's range, e.g. gunfire between the metronome of a jackhammer and
random firework crackle), plus a missing indicator for features that can be
absent.  Probabilities are calibrated by temperature scaling (Guo et al.,
2017, "On calibration of modern neural networks"): ``p = softmax(logits / T)``
with ``T`` fitted on out-of-group predictions.

File format (``format`` = ``"shotline-classifier"``, ``format_version`` = 1)::

    {"format", "format_version", "model_version", "created_utc",
     "classes": [...],
     "features": [{"name", "mean", "scale", "quadratic": bool, "missing_indicator": bool}],
     "coef": [[per class, one per design column]], "intercept": [per class],
     "temperature": T,
     "training": {... what it was fitted on ...},
     "sha256": hex digest of the canonical JSON of everything else}

Design columns, in order: for each feature ``z``; then ``z**2`` for each
quadratic feature; then ``isnan(x)`` for each feature with a missing
indicator (``z = 0`` where missing, i.e. the training mean).  ``z`` is
clipped to +-``Z_CLIP`` so that a wild value cannot dominate (or overflow).
"""
import hashlib
import json
import math
from pathlib import Path

import numpy as np

FORMAT = "shotline-classifier"
FORMAT_VERSION = 1
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "data" / "classifier.json"
Z_CLIP = 4.0


class ModelError(Exception):
    """A classifier model file that is missing, unreadable, corrupt or inconsistent."""


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def checksum(model):
    """SHA-256 of the canonical JSON of every field except ``sha256``."""
    body = {k: v for k, v in model.items() if k != "sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def seal(model):
    """Return ``model`` with its ``sha256`` set."""
    out = {k: v for k, v in model.items() if k != "sha256"}
    out["sha256"] = checksum(out)
    return out


def save_model(model, path):
    """Write a sealed model as indented JSON (atomically: temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sealed = seal(model)
    validate(sealed)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(sealed, indent=1, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)
    return sealed


def _finite_matrix(value, shape, what):
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{what} is not numeric: {exc}") from None
    if arr.shape != shape:
        raise ModelError(f"{what} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ModelError(f"{what} has non-finite values")
    return arr


def validate(model):
    """Check a model dict (format, version, checksum, shapes); raise ``ModelError``."""
    if not isinstance(model, dict):
        raise ModelError("model is not a JSON object")
    if model.get("format") != FORMAT:
        raise ModelError(f"not a Shotline classifier (format={model.get('format')!r})")
    if model.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"unsupported format_version {model.get('format_version')!r} "
                         f"(this Shotline reads {FORMAT_VERSION})")
    if model.get("sha256") != checksum(model):
        raise ModelError("checksum mismatch: the model file was altered or truncated")
    classes = model.get("classes")
    features = model.get("features")
    if not (isinstance(classes, list) and len(classes) >= 2
            and all(isinstance(c, str) for c in classes)):
        raise ModelError("classes must be a list of at least two names")
    if not (isinstance(features, list) and features):
        raise ModelError("features must be a non-empty list")
    for f in features:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise ModelError(f"bad feature entry {f!r}")
        _finite_matrix([f.get("mean"), f.get("scale")], (2,), f"feature {f['name']} mean/scale")
        if not f["scale"] > 0:
            raise ModelError(f"feature {f['name']} has scale <= 0")
    n_cols = n_design_columns(features)
    _finite_matrix(model.get("coef"), (len(classes), n_cols), "coef")
    _finite_matrix(model.get("intercept"), (len(classes),), "intercept")
    t = _finite_matrix(model.get("temperature"), (), "temperature")
    if not t > 0:
        raise ModelError("temperature must be > 0")
    return model


def load_model(path=None):
    """Read and validate a model file (default: the shipped ``data/classifier.json``).

    Raises ``ModelError`` (never another exception) when the file is missing,
    unreadable, not JSON, or fails validation.
    """
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelError(f"cannot read classifier model {path}: {exc.strerror or exc}") from None
    try:
        model = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"classifier model {path} is not valid JSON: {exc}") from None
    try:
        return validate(model)
    except ModelError as exc:
        raise ModelError(f"classifier model {path}: {exc}") from None


def n_design_columns(features):
    return (len(features) + sum(bool(f.get("quadratic")) for f in features)
            + sum(bool(f.get("missing_indicator")) for f in features))


def design_matrix(features, X):
    """Design matrix (n, columns) and the owning feature index of each column.

    ``X``: (n, n_features) raw feature values, NaN = missing.
    """
    X = np.atleast_2d(np.asarray(X, dtype=float))
    mean = np.array([f["mean"] for f in features])
    scale = np.array([f["scale"] for f in features])
    missing = ~np.isfinite(X)
    with np.errstate(over="ignore"):  # a wild value overflows to +-inf, then is clipped
        Z = np.clip(np.where(missing, 0.0, (np.where(missing, 0.0, X) - mean) / scale),
                    -Z_CLIP, Z_CLIP)
    quad = [i for i, f in enumerate(features) if f.get("quadratic")]
    ind = [i for i, f in enumerate(features) if f.get("missing_indicator")]
    D = np.hstack([Z, Z[:, quad] ** 2, missing[:, ind].astype(float)])
    owner = np.array(list(range(len(features))) + quad + ind, dtype=int)
    return D, owner


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(model, X):
    """Calibrated class probabilities, shape (n, n_classes)."""
    D, _ = design_matrix(model["features"], X)
    logits = D @ np.asarray(model["coef"]).T + np.asarray(model["intercept"])
    return softmax(logits / float(model["temperature"]))


def contributions(model, x, class_index):
    """Per-feature contribution (calibrated logit units) toward ``class_index``.

    Contribution of a feature = sum over its design columns of
    ``(w[k] - mean over classes of w) * column value / T``, so positive values
    push toward the class relative to the average class.  Shape (n_features,).
    """
    D, owner = design_matrix(model["features"], np.asarray(x, dtype=float)[None, :])
    W = np.asarray(model["coef"])
    rel = W[class_index] - W.mean(axis=0)
    per_column = rel * D[0] / float(model["temperature"])
    return np.bincount(owner, weights=per_column, minlength=len(model["features"]))


def feature_vector(model, features):
    """Raw feature values in the model's order from a name -> value dict (NaN if absent)."""
    out = np.full(len(model["features"]), math.nan)
    for i, f in enumerate(model["features"]):
        v = features.get(f["name"], math.nan)
        out[i] = float(v) if v is not None else math.nan
    return out
