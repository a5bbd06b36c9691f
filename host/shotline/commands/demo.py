"""``shotline demo --out demo-out``: the simulated night, end to end."""
from shotline.cli import CommandError, emit, warn
from shotline.incidents import MIN_ALERT_SENSORS


def add_arguments(parser):
    parser.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    parser.add_argument("--scenario", help="scenario file (default scenarios/demo-night.json)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="gunshot probability at or above which an incident alerts (0.5)")
    parser.add_argument("--min-sensors", type=int, default=MIN_ALERT_SENSORS,
                        help="fewest sensors for an alert; fewer are recorded only (5)")
    parser.add_argument("--path", choices=("virtual", "detector"), default="virtual",
                        help="virtual: virtual sensors running the firmware on ptys -> collector "
                             "(default); detector: the C detector on the audio in-process")
    parser.add_argument("--speed", type=float, default=16.0,
                        help="at most this many simulated seconds per wall-clock second for "
                             "the virtual sensors (16; the CPU may allow less)")
    parser.add_argument("--no-webhook", action="store_true",
                        help="do not POST alerts to the local test receiver")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")


def _summary_text(s):
    def m(v):
        return "-" if v is None else f"{v:.1f} m"

    lines = [
        "",
        "Summary",
        f"  gunfire sources alerted   {s['gunshot_sources_alerted']} of {s['gunshot_sources']}",
        f"  shots detected            {s['shots_detected']} of {s['shots']} "
        f"(triggers at 4 or more sensors)",
        f"  shots located             {s['shots_located']} of {s['shots']} "
        f"({s['shots_within_25m']} within 25 m)",
        f"  error per shot            median {m(s['shot_error_median_m'])}, "
        f"p90 {m(s['shot_error_p90_m'])}",
        f"  error per incident        median {m(s['incident_error_median_m'])}, "
        f"p90 {m(s['incident_error_p90_m'])}",
        f"  incidents / alerts        {s['incidents']} / {s['alerts']}",
        f"  false alerts              {s['false_alerts']}"
        + (" (" + ", ".join(f"{k} {n}" for k, n in s["false_alerts_by_kind"].items()) + ")"
           if s["false_alerts_by_kind"] else ""),
        f"  classifier                {s['classifier']}",
    ]
    if s.get("webhook_delivered") is not None:
        lines.append(f"  webhook                   {s['webhook_delivered']} delivered, receiver "
                     f"recorded {s['webhook_receiver_records']}")
    lines.append(f"  time                      {s['elapsed_s']} s for {s['audio_s']:g} s of audio "
                 f"from {s['sensors']} sensors")
    lines.append(f"  written to                {s['out']}/ (shotline.sqlite, incidents.geojson, "
                 f"cap/*.xml, map.png, summary.json, sim/)")
    return "\n".join(lines)


def run(args):
    from shotline.demo import DEFAULT_SCENARIO, run_demo
    from shotline.simulate import ScenarioError

    if not 0.0 <= args.threshold <= 1.0:
        raise CommandError("--threshold must be within 0..1")
    if args.min_sensors < 3:
        raise CommandError("--min-sensors must be at least 3")
    if not args.speed > 0:
        raise CommandError("--speed must be positive")

    def say(text):
        if not args.json:
            print(text, flush=True)

    try:
        summary = run_demo(args.out, args.scenario or DEFAULT_SCENARIO, threshold=args.threshold,
                           min_sensors=args.min_sensors,
                           webhook=not args.no_webhook, path=args.path, speed=args.speed,
                           say=say,
                           progress=warn)
    except ScenarioError as exc:
        raise CommandError(str(exc)) from None
    emit(summary, args.json, text=_summary_text(summary))
    return 0
