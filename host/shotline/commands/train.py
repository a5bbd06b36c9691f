"""``shotline train``: fit the event classifier from real and simulated data."""
import sys

from shotline.cli import CommandError, emit

DEFAULT_CACHE = "eval-out/classify-cache"


def add_arguments(parser):
    parser.add_argument("--out", default="classifier.json",
                        help="where to write the fitted model (JSON; default %(default)s)")
    parser.add_argument("--data", default=None,
                        help="folder of real recordings (default $SHOTLINE_DATA or ../shared/data)")
    parser.add_argument("--sim-scenes", type=int, default=150, metavar="N",
                        help="simulated scenes to add (0 = real data only; default %(default)s)")
    parser.add_argument("--no-real", action="store_true", help="simulated data only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated scenes")
    parser.add_argument("--cache", default=DEFAULT_CACHE,
                        help="folder for cached features (default %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="always extract features again")
    parser.add_argument("--evaluate", action="store_true",
                        help="also report leak-proof held-out figures (slower)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")


def _json_safe(obj):
    """NaN (an undefined figure, e.g. precision with no alerts) -> None, recursively."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def run(args):
    from shotline import train
    from shotline.classify_model import save_model

    if args.sim_scenes < 0:
        raise CommandError("--sim-scenes must be >= 0")
    if args.no_real and not args.sim_scenes:
        raise CommandError("nothing to train on: --no-real with --sim-scenes 0")

    def say(msg):
        sys.stderr.write(f"shotline train: {msg}\n")

    examples = train.gather_examples(
        data=args.data, sim_scenes=args.sim_scenes, seed=args.seed, real=not args.no_real,
        cache_dir=None if args.no_cache else args.cache, progress=say)
    labels = {e.label for e in examples}
    if len(labels) < 2:
        raise CommandError(f"training needs at least two classes; found {sorted(labels) or 'none'} "
                           "(is the data folder there?)")
    description = (f"real={'no' if args.no_real else 'yes'} sim_scenes={args.sim_scenes} "
                   f"seed={args.seed} feature_code={train._code_fingerprint()}")
    model = save_model(train.fit(examples, description=description), args.out)
    summary = {"out": str(args.out), "model_version": model["model_version"],
               "temperature": model["temperature"], **model["training"]}
    if args.evaluate:
        summary["evaluation"] = train.evaluation_report(examples)
    emit(_json_safe(summary), args.json, text=train.format_summary(summary))
    return 0
