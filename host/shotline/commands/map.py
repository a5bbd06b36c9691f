"""``shotline map --out map.png``: sensors, incidents and their ellipses (and truth) to PNG."""
import json
import math
from pathlib import Path

from shotline.cli import CommandError, emit


def add_arguments(parser):
    parser.add_argument("--db", default="shotline.sqlite", help="store file (default shotline.sqlite)")
    parser.add_argument("--truth", help="a simulation's truth.json: draw its sources and sensors")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--title", help="title of the map")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args):
    from shotline.incidents import list_incidents
    from shotline.mapplot import draw_map
    from shotline.store import Store, StoreError

    incidents, sensors = [], {}
    if Path(args.db).exists():
        try:
            with Store(args.db) as store:
                incidents = list_incidents(store)
                sensors = {s["sensor_id"]: (s["sensor_id"], s["lat_deg"], s["lon_deg"])
                           for s in store.sensors() if s["lat_deg"] is not None}
        except StoreError as exc:
            raise CommandError(str(exc)) from None
    elif not args.truth:
        raise CommandError(f"{args.db}: no such store (give --db or --truth)")
    truth = []
    if args.truth:
        try:
            doc = json.loads(Path(args.truth).read_text())
            truth = doc["sources"]
            for t in truth:
                _check_llh(t["position_llh"])
            for s in doc["sensors"]:
                sensors.setdefault(s["sensor"], (s["sensor"], *_check_llh(s["position_llh"])[:2]))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise CommandError(f"{args.truth}: not a simulation truth file ({exc!r})") from None
    if not sensors:
        raise CommandError("no sensor positions in the store or truth file")
    try:
        draw_map(args.out, sensors=sorted(sensors.values()), incidents=incidents, truth=truth,
                 title=args.title)
    except OSError as exc:
        raise CommandError(f"{args.out}: cannot write the map ({exc.strerror or exc})") from None
    emit({"out": args.out, "sensors": len(sensors), "incidents": len(incidents),
          "truth": len(truth)}, args.json,
         text=f"{args.out}: {len(sensors)} sensors, {len(incidents)} incidents, "
              f"{len(truth)} truth sources")
    return 0


def _check_llh(llh):
    """``llh`` as a list of at least two finite floats (lat_deg, lon_deg); raises ValueError."""
    if not isinstance(llh, (list, tuple)) or len(llh) < 2:
        raise ValueError(f"position_llh must be [lat_deg, lon_deg, alt_m], not {llh!r}")
    values = [float(v) for v in llh]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"position_llh is not finite: {llh!r}")
    return values
