"""``shotline collect [PORTS...]``: the long-running collector."""
import json
import logging
import signal
import sys
import threading
import time

from shotline.acoustics import DEFAULT_TEMPERATURE_C
from shotline.cli import CommandError, emit
from shotline.incidents import BURST_GAP_S, BURST_RADIUS_M, MIN_ALERT_SENSORS
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
    p.add_argument("--temperature-c", type=float, default=DEFAULT_TEMPERATURE_C,
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
    g = p.add_argument_group(
        "incidents and alerts",
        "located events at one place are grouped into incidents (a shot or a burst), "
        "classified and recorded in the store with an audit trail; those that pass the "
        "threshold are alerted, the others recorded only (see docs/alerts.md)")
    g.add_argument("--alert-threshold", type=float, default=0.5, metavar="P",
                   help="p(gunshot) at or above which an incident alerts (default %(default)s); "
                        "an unclassified incident (no usable model) alerts")
    g.add_argument("--min-alert-sensors", type=int, default=MIN_ALERT_SENSORS, metavar="N",
                   help="incidents heard by fewer sensors are recorded only (default %(default)s)")
    g.add_argument("--model", metavar="PATH",
                   help="classifier model (default: the shipped one); if it is missing or "
                        "corrupt, incidents get class unknown and collection goes on")
    g.add_argument("--cap-dir", metavar="DIR", help="write a CAP 1.2 file <uid>.xml per alert")
    g.add_argument("--cap-status", default="Actual",
                   choices=("Actual", "Exercise", "System", "Test", "Draft"),
                   help="CAP <status> of the alerts (default %(default)s)")
    g.add_argument("--webhook", metavar="URL",
                   help="POST each alert (GeoJSON Feature, Idempotency-Key) here, through a "
                        "durable outbox in the store, retried with backoff")
    g.add_argument("--geojson", metavar="FILE",
                   help="keep this GeoJSON file of every incident up to date")
    g.add_argument("--burst-gap-s", type=float, default=BURST_GAP_S,
                   help="events at one place closer than this in time are one incident "
                        "(default %(default)s)")
    g.add_argument("--burst-radius-m", type=float, default=BURST_RADIUS_M,
                   help="... and closer than this in space (default %(default)s)")
    g.add_argument("--relative-humidity-pct", type=float, default=None,
                   help="relative humidity for the classifier (default: its own)")
    g.add_argument("--json-incidents", action="store_true",
                   help='--json, plus a {"incident": {...}} line per new incident and an '
                        '{"alert": {...}} line per alert (event lines are unchanged)')


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


def log_status(collector, pipeline=None, outbox=None):
    """One structured record: the counters, incidents, webhook backlog and every board's state."""
    boards = [{"port": b.port, "sensor_id": b.sensor_id, "connected": b.connected,
               "connects": b.connects, "triggers": b.triggers_new, "replayed": b.triggers_replayed,
               "rejected": b.triggers_rejected,
               "time_quality": (b.last_heartbeat or {}).get("time_quality"),
               "outbox_pending": (b.last_heartbeat or {}).get("outbox_pending"),
               "last_error": None if b.connected else b.last_error}
              for b in collector.boards.values()]
    fields = dict(collector.stats)
    if pipeline is not None:
        fields.update(pipeline.stats)
    if outbox is not None:
        fields["webhook_pending"] = len(outbox.pending())
    logging.getLogger("shotline.collect").info(
        "collector status", extra={"fields": dict(fields, boards=boards)})


def _origin(text):
    if text is None:
        return None
    try:
        lat, lon, alt = (float(v) for v in text.split(","))
    except ValueError:
        raise CommandError(f"--origin must be LAT,LON,ALT, got {text!r}") from None
    return lat, lon, alt


def _incident_text(inc):
    cls = ""
    if inc.get("class") is not None:
        cls = f"  {inc['class']}" + (f" p={inc['probability']:.2f}"
                                     if inc.get("probability") is not None else "")
    major = inc.get("ellipse_major_m")
    return (f"{format_utc(inc['time_utc_s'])}  {'ALERT ' if inc['alert'] else 'record'} "
            f"incident {inc['id']}  {inc['lat_deg']:.6f}, {inc['lon_deg']:.6f}"
            + (f"  ±{major:.0f} m" if major is not None else "")
            + f"  {inc['n_shots']} shot(s)  {len(inc['sensors'])} sensors{cls}")


def _check_incident_args(args):
    if not 0.0 <= args.alert_threshold <= 1.0:
        raise CommandError("--alert-threshold must be within 0..1")
    if args.min_alert_sensors < 1:
        raise CommandError("--min-alert-sensors must be at least 1")
    if not (args.burst_gap_s >= 0 and args.burst_radius_m > 0):
        raise CommandError("--burst-gap-s must be >= 0 and --burst-radius-m > 0")
    if args.json_incidents:
        args.json = True
    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        raise CommandError(f"--webhook must be an http:// or https:// URL, got {args.webhook!r}")
    wanted = [f for f, v in (("--cap-dir", args.cap_dir), ("--webhook", args.webhook),
                             ("--geojson", args.geojson), ("--model", args.model)) if v]
    if args.no_associate and wanted:
        raise CommandError(f"--no-associate locates no events, so {', '.join(wanted)} "
                           f"would do nothing: drop one or the other")


def _incidents(args, store, associator):
    """The incident pipeline, its webhook outbox and delivery thread (or Nones)."""
    from shotline.alerts.dispatch import Alerter
    from shotline.alerts.webhook import DeliveryThread, WebhookOutbox
    from shotline.geo import LocalFrame
    from shotline.incident_pipeline import IncidentPipeline, decision_s

    outbox = delivery = None
    if args.webhook:
        try:
            outbox = WebhookOutbox(store, args.webhook)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        delivery = DeliveryThread(outbox, on_result=_delivery_logged)
    alerter = Alerter(cap_dir=args.cap_dir, outbox=outbox, cap_status=args.cap_status) \
        if args.cap_dir or outbox else None

    def on_incident(raised):
        inc = raised.incident
        if not args.json:
            emit(None, False, _incident_text(inc) + (
                f"  CAP {raised.alert['cap']}" if (raised.alert or {}).get("cap") else ""))
        elif args.json_incidents:
            emit({"incident": dict(inc, time_utc=format_utc(inc["time_utc_s"]))}, True)
            if raised.alert is not None:
                emit({"alert": dict(raised.alert, incident=inc["id"], uid=inc["uid"])}, True)
        if raised.alert is not None and delivery is not None:
            delivery.wake()

    origin = _origin(args.origin)
    try:
        pipeline = IncidentPipeline(
            store, LocalFrame(*origin) if origin else None, model=args.model, alerter=alerter,
            threshold=args.alert_threshold, min_sensors=args.min_alert_sensors,
            gap_s=args.burst_gap_s, radius_m=args.burst_radius_m,
            decision_s=decision_s(associator), temperature_c=args.temperature_c,
            relative_humidity_pct=args.relative_humidity_pct, geojson_path=args.geojson,
            by="collect", on_incident=on_incident)
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    return pipeline, outbox, delivery


def _delivery_logged(result):
    level = {"delivered": logging.INFO, "retry": logging.WARNING}.get(result["outcome"],
                                                                      logging.ERROR)
    logging.getLogger("shotline.alerts").log(level, f"webhook {result['outcome']}",
                                             extra={"fields": result})


def run(args):
    from shotline.collect import Collector, LiveAssociation
    from shotline.incident_pipeline import ClockedAssociation
    from shotline.ports import PortError, select
    from shotline.store import Store, StoreError

    _check_incident_args(args)
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
    pipeline = outbox = delivery = None
    if associator is not None:
        pipeline, outbox, delivery = _incidents(args, store, associator)
        associator = ClockedAssociation(associator, pipeline)

    def on_event(record):
        llh = record.get("position_llh") or [None, None, None]
        text = (f"{record.get('time_utc')}  event {record['id']} rev {record.get('revision', 0)}  "
                f"{llh[0]}, {llh[1]}  {record.get('status')}  sensors "
                + ",".join(s["sensor"] for s in record.get("sensors", [])))
        emit(record, args.json, text)
        if pipeline is not None:
            pipeline.push(record)

    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    collector = Collector(store, [b.port for b in boards], associator=associator, on_event=on_event)
    collector.start()
    if delivery is not None:
        delivery.start()
    try:
        deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
        rescan = any(sel in ("all", "auto") for sel in (args.ports or ["all"]))
        next_scan = time.monotonic() + args.rescan_s
        next_status = time.monotonic() + args.status_every_s
        next_geojson = time.monotonic()
        while not done.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_status:
                next_status = now + args.status_every_s
                log_status(collector, pipeline, outbox)
            if pipeline is not None and now >= next_geojson:
                next_geojson = now + 2.0
                pipeline.write_geojson(if_changed=True)   # e.g. an incident was reviewed
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
        collector.stop()
        if pipeline is not None:
            pipeline.flush()   # the bursts still open: their incidents and alerts
        if delivery is not None and not delivery.stop(drain_s=5.0):
            logging.getLogger("shotline.alerts").warning(
                "webhook messages left in the outbox; they are sent at the next start",
                extra={"fields": {"pending": len(outbox.pending())}})
        log_status(collector, pipeline, outbox)
        store.close()
    return 0
