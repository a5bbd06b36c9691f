"""``shotline bench PORT``: the technician's bench test, PASS/FAIL per check."""
import dataclasses
import json
import time
from pathlib import Path

from shotline.cli import EXIT_FAIL, EXIT_OK, CommandError, emit, warn


def add_arguments(p):
    p.add_argument("port", metavar="PORT", help="board port, pyserial URL or id:<serial>")
    p.add_argument("--report", metavar="FILE",
                   help="write the readable report here (default bench-<sensor>-<UTC>.txt; "
                        "'-' for none)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--impulse-timeout-s", type=float, default=30.0,
                   help="how long to wait for a clap or test impulse (default %(default)s)")
    p.add_argument("--gps-timeout-s", type=float, default=90.0,
                   help="how long to wait for GPS fix and PPS lock (default %(default)s)")
    p.add_argument("--max-drift-ppm", type=float, default=100.0,
                   help="largest acceptable sample-clock error (default %(default)s ppm)")
    p.add_argument("--rate-tolerance-pct", type=float, default=1.0,
                   help="captured samples/s (timed by the host) within this of nominal "
                        "(default %(default)s %%)")


def run(args):
    from shotline.benchtest import Limits, run_bench
    from shotline.link import Link, LinkError
    from shotline.ports import PortError, select

    try:
        (board,) = select([args.port])
    except PortError as exc:
        raise CommandError(str(exc)) from None
    limits = dataclasses.replace(Limits(), impulse_timeout_s=args.impulse_timeout_s,
                                 gps_timeout_s=args.gps_timeout_s, max_drift_ppm=args.max_drift_ppm,
                                 rate_tolerance=args.rate_tolerance_pct / 100)
    try:
        with Link(board.port) as link:
            report = run_bench(link, limits, progress=lambda text: warn(text))
    except LinkError as exc:
        raise CommandError(f"bench test stopped: {exc}") from None
    text = report.to_text()
    if args.report != "-":
        name = args.report or "bench-{}-{}.txt".format(
            report.hello.get("sensor_id", "board"), time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        Path(name).write_text(text)
        warn(f"report written to {name}")
    emit(report.to_dict(), args.json, text.rstrip("\n"))
    return EXIT_OK if report.passed else EXIT_FAIL
