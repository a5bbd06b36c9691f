"""``shotline collect [PORTS...]``: the long-running collector."""
import json
import logging
import signal
import sys
import threading
import time

from shotline.cli import CommandError, emit
from shotline.timeutil import format_utc


def add_arguments(p):
    p.add_argument("ports", nargs="*", metavar="PORT",
                   help="board selectors: a port path or URL, id:<serial>, or all (default: all)")
    p.add_argument("--store", default="shotline.sqlite", metavar="PATH",
                   help="SQLite store (created and migrated if needed; default %(default)s)")
    p.add_argument("--json", action="store_true", help="events as JSON lines on stdout")
    p.add_argument("--log-format", choices=("json", "text"), default="json",
                   help="diagnostics on stderr: JSON lines (default) or text")
    p.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    p.add_argument("--no-associate", action="store_true",
                   help="only store triggers; do not associate and locate")
    p.add_argument("--temperature-c", type=float, default=15.0,
                   help="air temperature for the speed of sound (default %(default)s)")
    p.add_argument("--min-sensors", type=int, default=4, help="fewest sensors per event (default 4)")
    p.add_argument("--max-range-m", type=float, default=1000.0,
                   help="farthest a sensor hears a shot (default %(default)s)")
    p.add_argument("--origin", metavar="LAT,LON,ALT",
                   help="local frame origin (default: the first sensor heard)")
    p.add_argument("--status-every-s", type=float, default=60.0,
                   help="log the collector's counters and each board's state this often "
                        "and at exit (default %(default)s)")
    p.add_argument("--rescan-s", type=float, default=5.0,
                   help="with 'all', look for newly attached boards this often (default %(default)s)")
    p.add_argument("--duration-s", type=float, default=None,
                   help="stop after this many seconds (default: run until Ctrl-C or SIGTERM)")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log record: time, level, message and the record's fields."""

    def format(self, record):
        out = {"t": format_utc(record.created, 3), "level": record.levelname.lower(),
               "msg": record.getMessage()}
        out.update(getattr(record, "fields", {}) or {})
        return json.dumps(out, separators=(",", ":"), default=str)


class TextLogFormatter(logging.Formatter):
    def format(self, record):
        fields = getattr(record, "fields", {}) or {}
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return f"{format_utc(record.created, 3)} {record.levelname.lower()}: {record.getMessage()} {extra}".rstrip()


def setup_logging(fmt="json", quiet=False):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else TextLogFormatter())
    logger = logging.getLogger("shotline")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def log_status(collector):
    """One structured record: the counters and every board's state."""
    boards = [{"port": b.port, "sensor_id": b.sensor_id, "connected": b.connected,
               "connects": b.connects, "triggers": b.triggers_new, "replayed": b.triggers_replayed,
               "rejected": b.triggers_rejected,
               "time_quality": (b.last_heartbeat or {}).get("time_quality"),
               "outbox_pending": (b.last_heartbeat or {}).get("outbox_pending"),
               "last_error": None if b.connected else b.last_error}
              for b in collector.boards.values()]
    logging.getLogger("shotline.collect").info(
        "collector status", extra={"fields": dict(collector.stats, boards=boards)})


def _origin(text):
    if text is None:
        return None
    try:
        lat, lon, alt = (float(v) for v in text.split(","))
    except ValueError:
        raise CommandError(f"--origin must be LAT,LON,ALT, got {text!r}") from None
    return lat, lon, alt


def run(args):
    from shotline.collect import Collector, LiveAssociation
    from shotline.ports import PortError, select
    from shotline.store import Store, StoreError

    setup_logging(args.log_format, args.quiet)
    try:
        boards = select(args.ports or ["all"])
    except PortError as exc:
        raise CommandError(str(exc)) from None
    try:
        store = Store(args.store)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    associator = None
    if not args.no_associate:
        try:
            associator = LiveAssociation(origin_llh=_origin(args.origin),
                                         temperature_c=args.temperature_c,
                                         min_sensors=args.min_sensors, max_range_m=args.max_range_m)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    def on_event(record):
        llh = record.get("position_llh") or [None, None, None]
        text = (f"{record.get('time_utc')}  event {record['id']} rev {record.get('revision', 0)}  "
                f"{llh[0]}, {llh[1]}  {record.get('status')}  sensors "
                + ",".join(s["sensor"] for s in record.get("sensors", [])))
        emit(record, args.json, text)

    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    collector = Collector(store, [b.port for b in boards], associator=associator, on_event=on_event)
    collector.start()
    try:
        deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
        rescan = any(sel in ("all", "auto") for sel in (args.ports or ["all"]))
        next_scan = time.monotonic() + args.rescan_s
        next_status = time.monotonic() + args.status_every_s
        while not done.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_status:
                next_status = now + args.status_every_s
                log_status(collector)
            if rescan and now >= next_scan:
                next_scan = now + args.rescan_s
                try:
                    for b in select(["all"]):
                        collector.add_port(b.port)
                except PortError:
                    pass
            done.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        log_status(collector)
        collector.stop()
        store.close()
    return 0
