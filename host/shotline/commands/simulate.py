"""``shotline simulate SCENARIO --out DIR``: render per-sensor audio and truth."""
import time

from shotline.cli import CommandError, emit, warn


def add_arguments(parser):
    parser.add_argument("scenario", help="scenario JSON file (see docs/simulator.md)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--format", choices=("flac", "wav"), default="flac",
                        help="audio file format (default flac)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args):
    from shotline.simulate import ScenarioError, load_scenario, render, write_rendering

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise CommandError(str(exc)) from None
    t0 = time.monotonic()
    rendering = render(scenario, progress=lambda done, total: warn(
        f"rendered sensor {done}/{total}") if not args.json else None)
    try:
        manifest = write_rendering(rendering, args.out, args.format)
    except OSError as exc:
        raise CommandError(f"{args.out}: cannot write the rendering ({exc.strerror or exc})") from None
    summary = {
        "scenario": scenario.name, "manifest": str(manifest),
        "truth": str(manifest.with_name("truth.json")),
        "sensors": len(rendering.sensors), "sources": len(scenario.sources),
        "gunshots": sum(s["is_gunshot"] for s in rendering.truth["sources"]),
        "duration_s": scenario.duration_s, "elapsed_s": round(time.monotonic() - t0, 2),
    }
    emit(summary, args.json, text=(
        f"{summary['sensors']} sensors, {summary['sources']} sources "
        f"({summary['gunshots']} gunshot) over {scenario.duration_s:g} s -> {manifest} "
        f"in {summary['elapsed_s']} s"))
    return 0
