"""``shotline associate``: group a stream of triggers into located events.

Input: JSON lines, one trigger each::

    {"sensor": "S1", "position_m": [x, y, z], "time_utc": "2018-12-19T00:49:27.467123Z",
     "snr_db": 18.0, "level_db": 96.0, "seq": 17}

(``position_llh`` [lat, lon, alt] instead of ``position_m``; ``snr_db``,
``level_db``, ``seq`` and ``features`` optional).  Output: one line per
event as it is decided (a late trigger re-emits its event with a higher
``revision``), then one ``{"unexplained": [...]}`` line.  A bad line is
reported on stderr with its number and skipped; the exit code is then 1.
"""
import json
import sys

from shotline.cli import EXIT_FAIL, EXIT_OK, CommandError, emit, warn


def add_association_arguments(parser):
    """Association options shared with ``shotline process``."""
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--temperature-c", type=float, default=None,
                        help="air temperature for the speed of sound (default 15 °C)")
    parser.add_argument("--tolerance-s", type=float, default=None,
                        help="largest arrival residual of an event member (default 0.02 s; process: 0.03 s)")
    parser.add_argument("--max-range-m", type=float, default=None,
                        help="farthest a sensor hears a shot (default 1000 m)")
    parser.add_argument("--min-sensors", type=int, default=None,
                        help="fewest sensors for an event (default 4; process: 5, or 4 with 4 recordings)")
    parser.add_argument("--source-up-m", type=float, default=None,
                        help="height of the ground shots are fired from, in the sensors' frame "
                             "(default: the median height of the sensors involved)")


def add_arguments(parser):
    add_association_arguments(parser)
    parser.add_argument("--max-delay-s", type=float, default=1.0,
                        help="how late a trigger may arrive after its onset, i.e. how far the input "
                             "may be out of time order (default 1 s)")
    parser.add_argument("file", nargs="?", default="-", metavar="FILE",
                        help="JSON lines of triggers (default: standard input)")


def association_options(args, temperature_c=None):
    """Associator options from the command line; unset ones keep the library defaults."""
    t = args.temperature_c if args.temperature_c is not None else temperature_c
    options = {"temperature_c": 15.0 if t is None else t, "tolerance_s": args.tolerance_s,
               "max_range_m": args.max_range_m, "min_sensors": args.min_sensors,
               "source_up_m": args.source_up_m}
    return {k: v for k, v in options.items() if v is not None}


class Positions:
    """Turns ``position_m`` or ``position_llh`` into local metres; one kind per input.

    With WGS84 input the local frame is centred on the first position seen.
    """

    def __init__(self):
        self.frame = None
        self.kind = None

    def __call__(self, record):
        has_m, has_llh = "position_m" in record, "position_llh" in record
        if has_m == has_llh:
            raise ValueError("give exactly one of position_m and position_llh")
        kind = "m" if has_m else "llh"
        if self.kind is None:
            self.kind = kind
        elif kind != self.kind:
            raise ValueError(f"position_{kind} after earlier position_{self.kind} lines: use one kind")
        if kind == "m":
            return record["position_m"]
        llh = record["position_llh"]
        if not isinstance(llh, list) or len(llh) not in (2, 3):
            raise ValueError("position_llh must be [lat, lon] or [lat, lon, alt]")
        if self.frame is None:
            from shotline.geo import LocalFrame

            self.frame = LocalFrame(float(llh[0]), float(llh[1]), float(llh[2]) if len(llh) == 3 else 0.0)
        return self.frame.to_enu(llh).tolist()


def parse_trigger(line, positions):
    """One JSON line -> :class:`shotline.associate.Trigger` (ValueError if bad)."""
    from shotline.associate import Trigger
    from shotline.timeutil import parse_utc

    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    for key in ("sensor", "time_utc"):
        if key not in record:
            raise ValueError(f"missing {key!r}")
    features = record.get("features")
    if features is not None and not isinstance(features, dict):
        raise ValueError("features must be an object")
    seq = record.get("seq")
    if seq is not None and not isinstance(seq, int):
        raise ValueError("seq must be an integer")
    return Trigger(record["sensor"], positions(record), parse_utc(record["time_utc"]),
                   snr_db=record.get("snr_db"), level_db=record.get("level_db"),
                   features=features, seq=seq)


def print_event(event, args, frame):
    d = event.to_dict(frame)
    if "position_llh" in d:
        where = "{:.6f}, {:.6f}".format(*d["position_llh"][:2])
    else:
        where = "{:.1f}, {:.1f} m".format(*d["position_m"][:2])
    major = d["ellipse95_m"]["major"] if d["ellipse95_m"] else None
    text = (f"event {d['event_id']}.{d['revision']} {d['time_utc']} at {where}: {d['status']}, "
            f"{len(d['sensors'])} sensors" + (f", 95% ellipse {major:.1f} m" if major is not None else ""))
    emit(d, args.json, text)


def print_unexplained(triggers, args, frame):
    records = []
    for t in triggers:
        d = t.to_dict()
        if frame is not None:
            d["position_llh"] = [round(v, 8) for v in frame.to_llh(t.position_m).tolist()]
        records.append(d)
    emit({"unexplained": records}, args.json, f"unexplained: {len(records)} trigger(s)")


def run(args):
    from shotline.associate import Associator

    try:
        options = association_options(args)
        assoc = Associator(max_delay_s=args.max_delay_s, **options)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    positions = Positions()
    bad = 0
    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                trigger = parse_trigger(line, positions)
            except (ValueError, TypeError) as exc:
                warn(f"{args.file if args.file != '-' else 'stdin'} line {number}: {exc}; skipped")
                bad += 1
                continue
            for event in assoc.push(trigger):
                print_event(event, args, positions.frame)
    for event in assoc.flush():
        print_event(event, args, positions.frame)
    print_unexplained(assoc.take_unexplained(), args, positions.frame)
    if bad:
        warn(f"{bad} bad line(s) skipped")
    return EXIT_FAIL if bad else EXIT_OK
