"""Fit the event classifier and evaluate it with splits that cannot leak.

Training data (``shotline.classify_data`` extracts it):

- real gunshots: ShotSpotter's Pittsburgh 2018 live fire (handguns);
- real confusers: the files in ``confusers/`` (clap, castanets, thunder, car
  engine, grouse drumming) -> ``other_impulsive``;
- simulated events (``shotline.simulate``): muzzle blasts -> ``gunshot``,
  firecrackers and mortars -> ``firework``, backfire, door slam, jackhammer,
  pile driver -> ``other_impulsive``.

Every example has a *group*, the unit that is held out whole: a firing
position, a confuser file, a simulated scene.  ``evaluate`` predicts every
example with a model fitted without its group (leave-one-group-out across
real groups, grouped K-fold across simulated scenes), and the calibration
temperature is itself fitted on out-of-group predictions inside the training
fold, so no number reported was tuned on what it scores.

The model: scikit-learn ``LogisticRegression`` (multinomial, L2) on the
design of ``shotline.classify_model`` with class-balanced sample weights,
then temperature scaling.  Probabilities therefore refer to equal prior odds
of the classes; the alert threshold is the operator's choice
(``docs/classification.md``).
"""
import datetime as _dt
import math
from collections import Counter

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from shotline import classify_features as cf
from shotline.classify_model import FORMAT, FORMAT_VERSION, checksum, predict_proba, seal

CLASSES = ("gunshot", "firework", "other_impulsive")
REGULARISATION_C = 0.5
CALIBRATION_FOLDS = 5
ECE_BINS = 10


def _matrix(examples):
    X = np.array([[e.features.get(n, math.nan) for n in cf.FEATURE_NAMES] for e in examples],
                 dtype=float)
    y = np.array([CLASSES.index(e.label) for e in examples], dtype=int)
    groups = np.array([e.group for e in examples])
    return X, y, groups


def balanced_weights(y):
    """Sample weights giving every class present the same total weight."""
    counts = np.bincount(y, minlength=len(CLASSES)).astype(float)
    present = counts > 0
    w = np.zeros_like(counts)
    w[present] = len(y) / (present.sum() * counts[present])
    return w[y]


def _feature_table(X):
    table = []
    for j, (name, needs) in enumerate(cf.FEATURES):
        col = X[:, j][np.isfinite(X[:, j])]
        mean = float(col.mean()) if col.size else 0.0
        scale = float(col.std()) if col.size > 1 and col.std() > 1e-9 else 1.0
        table.append({"name": name, "mean": round(mean, 9), "scale": round(scale, 9),
                      "quadratic": name != "n_sensors",
                      "missing_indicator": bool(needs)})
    return table


def _fit_linear(X, y, table, c=REGULARISATION_C):
    """Uncalibrated model dict (temperature 1) fitted on X, y."""
    from shotline.classify_model import design_matrix

    D, _ = design_matrix(table, X)
    present = np.unique(y)
    lr = LogisticRegression(C=c, max_iter=5000)
    with threadpool_limits(1):  # small problem: BLAS threads only contend
        lr.fit(D, y, sample_weight=balanced_weights(y))
    coef = np.zeros((len(CLASSES), D.shape[1]))
    intercept = np.full(len(CLASSES), -30.0)  # a class absent from training: never predicted
    if len(present) == 2:  # sklearn returns one row for binary problems
        coef[present[1]], intercept[present[1]] = lr.coef_[0] / 2, lr.intercept_[0] / 2
        coef[present[0]], intercept[present[0]] = -lr.coef_[0] / 2, -lr.intercept_[0] / 2
    else:
        coef[present], intercept[present] = lr.coef_, lr.intercept_
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "classes": list(CLASSES),
            "features": table, "coef": coef.round(9).tolist(),
            "intercept": intercept.round(9).tolist(), "temperature": 1.0}


def _logits(model, X):
    from shotline.classify_model import design_matrix

    D, _ = design_matrix(model["features"], X)
    return D @ np.asarray(model["coef"]).T + np.asarray(model["intercept"])


def fit_temperature(logits, y, weights):
    """Temperature T minimising the weighted negative log-likelihood of softmax(logits/T)."""
    def nll(log_t):
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -float(np.sum(weights * logp[np.arange(len(y)), y]) / np.sum(weights))

    res = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(res.x))


def _out_of_group_logits(X, y, groups, table, n_folds):
    n_groups = len(np.unique(groups))
    out = np.full((len(y), len(CLASSES)), np.nan)
    for train, test in GroupKFold(n_splits=min(n_folds, n_groups)).split(X, y, groups):
        if len(np.unique(y[train])) < 2:
            continue
        out[test] = _logits(_fit_linear(X[train], y[train], table), X[test])
    return out


def fit(examples, calibration_folds=CALIBRATION_FOLDS, description=None):
    """Fit and calibrate a model dict (sealed, ready for ``save_model``) from examples."""
    X, y, groups = _matrix(examples)
    if len(np.unique(y)) < 2:
        raise ValueError("training needs examples of at least two classes")
    table = _feature_table(X)
    model = _fit_linear(X, y, table)
    temperature = 1.0
    if len(np.unique(groups)) >= 2:
        oof = _out_of_group_logits(X, y, groups, table, calibration_folds)
        ok = np.all(np.isfinite(oof), axis=1)
        if ok.sum() >= 10:
            temperature = fit_temperature(oof[ok], y[ok], balanced_weights(y[ok]))
    model["temperature"] = round(temperature, 6)
    counts = Counter(e.label for e in examples)
    sources = Counter(f"{e.source}/{e.label}" for e in examples)
    model["training"] = {
        "n_examples": {c: counts.get(c, 0) for c in CLASSES},
        "by_source": dict(sorted(sources.items())),
        "n_groups": int(len(np.unique(groups))),
        "regularisation_c": REGULARISATION_C,
        "sample_weights": "class-balanced (probabilities assume equal class priors)",
        "calibration": f"temperature scaling on {calibration_folds}-fold out-of-group logits",
        "description": description or "",
    }
    model["created_utc"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    model["model_version"] = ""
    model["model_version"] = f"{model['created_utc'][:10]}-{checksum(model)[:10]}"
    return seal(model)


def out_of_group_predictions(examples, split_groups):
    """Probabilities for every example from a model fitted without its split group.

    ``split_groups``: per example, the label of the fold that holds it out
    (e.g. its firing position).  Returns (n, n_classes) probabilities.
    """
    split_groups = np.asarray(split_groups)
    probs = np.full((len(examples), len(CLASSES)), np.nan)
    for g in np.unique(split_groups):
        test = np.flatnonzero(split_groups == g)
        train = [examples[i] for i in np.flatnonzero(split_groups != g)]
        if len({e.label for e in train}) < 2:
            continue
        model = fit(train)
        X, _, _ = _matrix([examples[i] for i in test])
        probs[test] = predict_proba(model, X)
    return probs


def split_groups(examples, sim_folds=5):
    """The held-out unit per example: each real group alone; simulated scenes in K folds."""
    sim = sorted({e.group for e in examples if e.source == "simulated"})
    fold_of = {g: f"simulated/fold{i % sim_folds}" for i, g in enumerate(sim)}
    return [fold_of.get(e.group, e.group) for e in examples]


def expected_calibration_error(probs, y, n_bins=ECE_BINS):
    """Top-label ECE: sum over confidence bins of |accuracy - confidence| x share."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def reliability_curve(p_positive, is_positive, n_bins=ECE_BINS):
    """[(bin centre, mean predicted, observed frequency, count)] for one class."""
    bins = np.minimum((p_positive * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            out.append(((b + 0.5) / n_bins, float(p_positive[m].mean()),
                        float(is_positive[m].mean()), int(m.sum())))
    return out


def scores(probs, y, threshold=0.5, positive="gunshot"):
    """Alert metrics for ``positive`` at ``threshold`` plus calibration figures.

    An alert is raised when ``p(positive) >= threshold``.  Returns a dict:
    ``n``, ``precision``, ``recall``, ``false_alerts_per_100`` (alerts on
    non-``positive`` events per 100 events scored), ``accuracy`` (argmax),
    ``ece``, ``brier`` (multi-class), ``confusion`` (rows true, cols predicted).
    """
    ok = np.all(np.isfinite(probs), axis=1)
    probs, y = probs[ok], y[ok]
    k = CLASSES.index(positive)
    alert = probs[:, k] >= threshold
    pos = y == k
    tp = int(np.sum(alert & pos))
    fp = int(np.sum(alert & ~pos))
    onehot = np.eye(len(CLASSES))[y]
    confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    np.add.at(confusion, (y, probs.argmax(axis=1)), 1)
    return {
        "n": int(len(y)),
        "n_positive": int(pos.sum()),
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "recall": float(tp / pos.sum()) if pos.any() else math.nan,
        "false_alerts_per_100": 100.0 * fp / len(y) if len(y) else math.nan,
        "accuracy": float(np.mean(probs.argmax(axis=1) == y)) if len(y) else math.nan,
        "ece": expected_calibration_error(probs, y) if len(y) else math.nan,
        "brier": float(np.mean(np.sum((probs - onehot) ** 2, axis=1))) if len(y) else math.nan,
        "confusion": confusion.tolist(),
    }


# -- gathering examples (with a feature cache) ------------------------------------------------

def _code_fingerprint():
    """Hash of the code that turns audio into features: a change re-extracts."""
    import hashlib
    from pathlib import Path

    here = Path(__file__).resolve().parent
    files = [here / "classify_features.py", here / "classify_data.py", here / "detect.py",
             here / "locate.py", *sorted((here / "simulate").glob("*.py")),
             *sorted((here.parents[1] / "native").glob("impulse*.[ch]")),
             here.parents[1] / "firmware" / "shotline_fw" / "detconfig.py"]
    h = hashlib.sha256()
    for f in files:
        if f.exists():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _cached(cache_dir, name, params, compute):
    import json
    from pathlib import Path

    from shotline.classify_data import Example

    if cache_dir is None:
        return compute()
    import hashlib

    digest = hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:8]
    fingerprint = _code_fingerprint()
    key = f"{name}-{fingerprint}-{digest}"
    path = Path(cache_dir) / f"{key}.json"
    if path.exists():
        try:
            doc = json.loads(path.read_text())
            if doc.get("params") == json.loads(json.dumps(params)):
                return [Example.from_dict(d) for d in doc["examples"]]
        except (ValueError, KeyError):
            pass  # unreadable cache: extract again
    examples = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"params": params, "examples": [e.to_dict() for e in examples]}))
    tmp.replace(path)
    for stale in path.parent.glob(f"{name}-*.json"):  # made by older code: never read again
        if not stale.name.startswith(f"{name}-{fingerprint}-"):
            stale.unlink(missing_ok=True)
    return examples


def gather_examples(data=None, sim_scenes=150, seed=0, real=True, cache_dir=None,
                    firing_positions=None, progress=None):
    """Real and simulated examples (``classify_data``), cached per source in ``cache_dir``.

    ``data``: the real-recordings folder (default ``shotline.datasets.data_dir()``);
    real sources that are absent are skipped with a message to ``progress``.
    """
    from pathlib import Path

    from shotline import classify_data as cd
    from shotline.datasets import data_dir, pittsburgh

    say = progress or (lambda msg: None)
    data = Path(data) if data else data_dir()
    out = []
    if real:
        top = pittsburgh.root(data / pittsburgh.NAME)
        if top is None:
            say(f"no {pittsburgh.NAME} under {data}: no real gunshots")
        else:
            fps = sorted(firing_positions) if firing_positions else None
            out += _cached(cache_dir, "pittsburgh", {"data": str(top), "fps": fps, "seed": seed},
                           lambda: cd.pittsburgh_examples(
                               pittsburgh.iter_tests(top, fps), seed=seed))
            say(f"pittsburgh: {sum(e.source == 'pittsburgh' for e in out)} examples")
        files = sorted((data / "confusers").glob("*.flac"))
        if not files:
            say(f"no confusers/*.flac under {data}: no real confusers")
        else:
            out += _cached(cache_dir, "confusers", {"files": [str(f) for f in files]},
                           lambda: cd.confuser_examples(files))
            say(f"confusers: {sum(e.source == 'confuser' for e in out)} examples")
    if sim_scenes:
        out += _cached(cache_dir, "simulated", {"scenes": sim_scenes, "seed": seed},
                       lambda: cd.simulated_examples(sim_scenes, seed))
        say(f"simulated: {sum(e.source == 'simulated' for e in out)} examples "
            f"from {sim_scenes} scenes (models, not recordings)")
    return out


# -- evaluation report ------------------------------------------------------------------------

def _subset_scores(examples, probs, keep, threshold):
    idx = [i for i, e in enumerate(examples) if keep(e)]
    if not idx:
        return None
    y = np.array([CLASSES.index(examples[i].label) for i in idx])
    return scores(probs[idx], y, threshold)


SWEEP_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


def per_group(examples, probs, threshold, keep=lambda e: e.source != "simulated"):
    """Per real group: n, class, share alerted (p(gunshot) >= threshold), mean p(gunshot)."""
    gun = CLASSES.index("gunshot")
    rows = {}
    for e, p in zip(examples, probs):
        if keep(e) and np.all(np.isfinite(p)):
            rows.setdefault((e.group, e.view, e.label), []).append(p[gun])
    return [{"group": g, "view": v, "label": lab, "n": len(ps),
             "alerted": float(np.mean(np.array(ps) >= threshold)),
             "mean_p_gunshot": float(np.mean(ps))}
            for (g, v, lab), ps in sorted(rows.items())]


def evaluation_report(examples, threshold=0.5):
    """Leak-proof figures: real only, and real + simulated, each scored per subset.

    Every prediction comes from a model fitted without the example's split
    group (``split_groups``).  Subsets: ``located`` events (the pipeline's
    case, with their bursts), ``located_lone`` (no burst context) and
    ``single_sensor`` views, real and simulated apart.
    """
    report = {"threshold": threshold, "classes": list(CLASSES)}
    real = [e for e in examples if e.source != "simulated"]
    if len({e.label for e in real}) >= 2:
        p = out_of_group_predictions(real, split_groups(real))
        report["real_only"] = {
            "trained_on": "real only (Pittsburgh gunshots, confuser files)",
            "single_sensor": _subset_scores(real, p, lambda e: e.view == "single_sensor",
                                            threshold),
            "pittsburgh_located": _subset_scores(real, p, lambda e: e.view == "located",
                                                 threshold),
            "pittsburgh_located_lone": _subset_scores(real, p, lambda e: e.view == "located_lone",
                                                      threshold),
            "per_group": per_group(real, p, threshold),
        }
    sim = [e for e in examples if e.source == "simulated"]
    if sim and len({e.label for e in examples}) >= 2:
        p = out_of_group_predictions(examples, split_groups(examples))
        located = [i for i, e in enumerate(examples) if e.view == "located"]
        gun = CLASSES.index("gunshot")
        y = np.array([CLASSES.index(examples[i].label) for i in located])
        report["real_plus_sim"] = {
            "trained_on": "real + SIMULATED (fireworks, backfire, door slam, construction "
                          "are simulator models)",
            "located_all": _subset_scores(examples, p, lambda e: e.view == "located", threshold),
            "located_simulated": _subset_scores(
                examples, p, lambda e: e.view == "located" and e.source == "simulated", threshold),
            "pittsburgh_located": _subset_scores(
                examples, p, lambda e: e.view == "located" and e.source == "pittsburgh", threshold),
            "located_lone_all": _subset_scores(examples, p, lambda e: e.view == "located_lone",
                                               threshold),
            "real_single_sensor": _subset_scores(
                examples, p, lambda e: e.view == "single_sensor" and e.source != "simulated",
                threshold),
            "per_group": per_group(examples, p, threshold),
            "reliability_gunshot_located": reliability_curve(p[located, gun], y == gun)
            if located else [],
            "threshold_sweep_located": [
                {"threshold": t, **{k: v for k, v in scores(p[located], y, t).items()
                                    if k in ("precision", "recall", "false_alerts_per_100")}}
                for t in SWEEP_THRESHOLDS] if located else [],
        }
    return report


def _fmt(x, pct=False):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def format_scores(name, s):
    if not s:
        return f"  {name}: no examples"
    return (f"  {name}: n={s['n']} (gunshots {s['n_positive']})"
            f"  precision {_fmt(s['precision'], 1)}  recall {_fmt(s['recall'], 1)}  false alerts/100 events "
            f"{s['false_alerts_per_100']:.1f}  accuracy {_fmt(s['accuracy'], 1)}"
            f"  ECE {_fmt(s['ece'])}  Brier {_fmt(s['brier'])}\n"
            f"      confusion (rows true {'/'.join(CLASSES)}, cols predicted): {s['confusion']}")


def format_summary(summary):
    lines = [f"model {summary['model_version']} -> {summary['out']}  "
             f"(temperature {summary['temperature']:.3f})",
             "  examples: " + ", ".join(f"{k} {v}" for k, v in summary["by_source"].items())]
    ev = summary.get("evaluation")
    if ev:
        lines.append(f"held-out evaluation (whole firing positions / confuser files / "
                     f"simulated scenes held out; alert when p(gunshot) >= {ev['threshold']}):")
        for part in ("real_only", "real_plus_sim"):
            if part in ev:
                lines.append(f" {part}: trained on {ev[part]['trained_on']}")
                for k, s in ev[part].items():
                    if k not in ("trained_on", "reliability_gunshot_located",
                                 "threshold_sweep_located", "per_group"):
                        lines.append(format_scores(k, s))
                lines.append("  real groups, each predicted while held out:\n    " + "\n    ".join(
                    f"{r['group'].split('/')[-1]} {r['view'].replace('single_sensor', 'single')} "
                    f"{r['label']} n={r['n']} alerted {100 * r['alerted']:.0f} %"
                    for r in ev[part].get("per_group", [])))
        rel = ev.get("real_plus_sim", {}).get("reliability_gunshot_located")
        if rel:
            lines.append("  reliability of p(gunshot), located events (predicted -> observed, n): "
                         + "; ".join(f"{m:.2f}->{o:.2f} ({n})" for _, m, o, n in rel))
        for row in ev["real_plus_sim"].get("threshold_sweep_located", []):
            lines.append(f"  alert at p(gunshot) >= {row['threshold']:.1f}: precision "
                         f"{_fmt(row['precision'], 1)}  recall {_fmt(row['recall'], 1)}  "
                         f"false alerts/100 events {row['false_alerts_per_100']:.1f}")
    return "\n".join(lines)
