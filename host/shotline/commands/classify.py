"""``shotline classify``: add class, probabilities and reasons to located events (JSON lines)."""
import json
import sys

from shotline.cli import EXIT_FAIL, EXIT_OK, CommandError, emit, warn


def add_arguments(parser):
    parser.add_argument("input", nargs="?", default="-",
                        help="JSON lines of events (default: stdin); see docs/classification.md")
    parser.add_argument("--model", default=None,
                        help="model file (default: the shipped host/shotline/data/classifier.json)")
    parser.add_argument("--prior", action="append", default=[], metavar="CLASS=SHARE",
                        help="prior share of a class where deployed (repeatable; default: "
                             "equal priors, as trained), e.g. --prior gunshot=0.05")
    parser.add_argument("--json", action="store_true",
                        help="JSON lines out: each event with a 'classification' object")


def _read(stream):
    """``(events, line_numbers, bad)`` from JSON lines; a line that is no JSON object is
    warned about and counted as bad."""
    events, lines, bad = [], [], 0
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            warn(f"line {n}: skipped, {exc}")
            bad += 1
            continue
        events.append(obj)
        lines.append(n)
    return events, lines, bad


def _priors(items):
    priors = {}
    for item in items:
        name, _, share = item.partition("=")
        try:
            priors[name.strip()] = float(share)
        except ValueError:
            raise CommandError(f"--prior wants CLASS=SHARE, got {item!r}") from None
        if not 0 < priors[name.strip()] <= 1:
            raise CommandError(f"--prior share must be in (0, 1], got {item!r}")
    return priors


def run(args):
    from shotline.classify import Classification, ModelError, classify_events, load_model

    priors = _priors(args.prior)
    try:
        stream = sys.stdin if args.input == "-" else open(args.input)
    except OSError as exc:
        raise CommandError(f"cannot read {args.input}: {exc.strerror}") from None
    with stream:
        events, lines, bad = _read(stream)
    model_failed = False
    try:
        model = load_model(args.model)
        unknown = set(priors) - set(model["classes"])
        if unknown:
            raise CommandError(f"--prior: unknown class(es) {sorted(unknown)}; "
                               f"the model's classes are {model['classes']}")
        results = classify_events(events, model, priors)
    except ModelError as exc:
        warn(f"{exc}; every event is classified 'unknown'")
        model_failed = True
        results = [Classification.unknown(exc) for _ in events]
    for n, event, result in zip(lines, events, results):
        d = result.to_dict()
        error = d["reasons"][0].get("error", "") if d["reasons"] else ""
        if not model_failed and error.startswith("bad event"):
            warn(f"line {n}: {error}; written with class 'unknown'")
            bad += 1
        p = result.probability
        reasons = ", ".join(f"{r['feature']} {r['contribution']:+.2f}" for r in d["reasons"]
                            if "feature" in r) or d["reasons"][0].get("error", "")
        text = f"{event.get('time_utc', event.get('time_utc_s', '?'))} {d['class']}" + \
            (f" p={p:.2f}" if p == p else "") + f"  ({reasons})"
        emit(dict(event, classification=d), args.json, text=text)
    return EXIT_FAIL if bad or model_failed else EXIT_OK
