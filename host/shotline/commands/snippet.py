"""``shotline snippet``: fetch the audio snippets around an event's triggers (signed, audited)."""
from shotline.cli import EXIT_FAIL, CommandError, emit, warn


def add_arguments(p):
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--event", type=int, metavar="ID",
                      help="every trigger of this event (from the store)")
    what.add_argument("--seq", type=int, metavar="N", help="one trigger by its sequence number")
    what.add_argument("--check-audit", action="store_true",
                      help="verify the audit log's hash chain (a removed or edited record) and exit")
    p.add_argument("--sensor", metavar="ID", help="sensor id of --seq (looked up in the store)")
    p.add_argument("--port", action="append", default=[], metavar="[SENSOR=]PORT",
                   help="board port or id:<serial>, for a sensor (repeatable); "
                        "default: the port the store last saw it on")
    p.add_argument("--reason", help="why the audio is needed (recorded in the audit log)")
    p.add_argument("--store", default="shotline.sqlite", metavar="PATH",
                   help="collector store (default %(default)s)")
    p.add_argument("--out", default="snippets", metavar="DIR",
                   help="folder for FLAC files and audit.jsonl (default %(default)s)")
    p.add_argument("--audit", metavar="PATH", help="audit log (default OUT/audit.jsonl)")
    p.add_argument("--keys", metavar="DIR", help="signing key directory (see `shotline keys`)")
    p.add_argument("--timeout-s", type=float, default=20.0,
                   help="longest silence during a transfer, seconds (default %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON line per snippet")


def _ports(args):
    table = {}
    for item in args.port:
        sensor, sep, port = item.rpartition("=")
        table[sensor if sep else None] = port
    return table


def _targets(args, store):
    """[(sensor_id, seq)] to fetch."""
    if args.event is not None:
        if store is None:
            raise CommandError(f"--event needs the store ({args.store} not found)")
        rows = store.query("SELECT sensor_id, seq FROM triggers WHERE event_id=? "
                           "ORDER BY sensor_id, seq", (args.event,))
        if not rows:
            raise CommandError(f"event {args.event}: no triggers in {args.store}")
        return [(r["sensor_id"], r["seq"]) for r in rows]
    return [(args.sensor, args.seq)]


def _port_for(sensor, ports, store):
    from shotline.ports import PortError, select

    sel = ports.get(sensor) or (ports.get(None) if len(ports) <= 1 else None)
    if sel is None and store is not None and sensor is not None:
        rows = store.query("SELECT port, serial_number FROM sensors WHERE sensor_id=?", (sensor,))
        if rows and rows[0]["serial_number"]:
            sel = "id:" + rows[0]["serial_number"]
        elif rows and rows[0]["port"]:
            sel = rows[0]["port"]
    if sel is None:
        raise CommandError(f"sensor {sensor}: no port known; give --port {sensor or ''}=PORT")
    try:
        return select([sel])[0].port
    except PortError as exc:
        raise CommandError(f"sensor {sensor}: {exc}") from None


def run(args):
    from pathlib import Path

    from shotline import keys, snippet
    from shotline.link import Link, LinkError

    audit = snippet.AuditLog(args.audit or Path(args.out) / snippet.AUDIT_NAME)
    if args.check_audit:
        if not audit.path.exists():
            raise CommandError(f"{audit.path}: no audit log")
        bad = audit.verify()
        n = len(audit.records())
        emit({"audit": str(audit.path), "records": n, "intact": bad is None, "first_bad": bad},
             args.json, f"{audit.path}: {n} records, " +
             ("chain intact" if bad is None else f"chain broken at record {bad}"))
        return 0 if bad is None else EXIT_FAIL

    try:
        signer = keys.Signer.load(args.keys)
    except keys.KeyFileError as exc:
        raise CommandError(str(exc)) from None
    store = None
    if Path(args.store).exists():
        from shotline.store import Store
        store = Store(args.store)
    elif args.event is None and args.sensor is None:
        raise CommandError("--seq needs --sensor (or the store to look it up)")
    if not args.reason:
        warn("no --reason given: the audit log records the request without one")
    ports = _ports(args)
    failed = 0
    for sensor, seq in _targets(args, store):
        port = _port_for(sensor, ports, store)
        link = Link(port)
        try:
            link.open()
        except LinkError as exc:            # audited too: every request is on record
            audit.append({"sensor_id": sensor, "trigger_seq": seq, "event_id": args.event,
                          "reason": args.reason, "key_id": signer.key_id.hex(), "port": port,
                          "status": "failed", "error": str(exc)})
            warn(f"sensor {sensor} trigger {seq}: {exc}")
            failed += 1
            continue
        try:
            rec = snippet.fetch_and_store(link, signer, sensor, seq, out_dir=args.out,
                                          audit=audit, reason=args.reason, event_id=args.event,
                                          store=store, timeout_s=args.timeout_s)
        except (LinkError, snippet.SnippetError) as exc:
            warn(f"sensor {sensor} trigger {seq}: {exc}")
            failed += 1
            continue
        finally:
            link.close()
        if rec["status"] != "ok":
            warn(f"sensor {sensor} trigger {seq}: {rec['error']}")
            failed += 1
        emit(rec, args.json, f"{sensor} #{seq}: {rec['status']} {rec.get('path', rec.get('error'))}")
    return EXIT_FAIL if failed else 0
