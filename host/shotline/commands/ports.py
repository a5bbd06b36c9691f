"""``shotline ports``: boards attached, and what they say about themselves."""
from shotline.cli import emit


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="one JSON object per board")
    p.add_argument("--any-vid", action="store_true",
                   help="list every USB serial port, not only Raspberry Pi (VID 2E8A) boards")
    p.add_argument("--no-virtual", action="store_true", help="leave out virtual sensors")
    p.add_argument("--no-probe", action="store_true",
                   help="do not ask each board for its HELLO (firmware version, sensor id)")
    p.add_argument("--timeout-s", type=float, default=1.5,
                   help="how long to wait for each board's answer (default %(default)s)")


def probe(port, timeout_s):
    """The board's HELLO (dict), or ``{"error": reason}`` if it does not answer."""
    from shotline.link import Link, LinkError

    try:
        with Link(port) as link:
            return link.hello(timeout_s, retries=2)
    except LinkError as exc:
        return {"error": "busy (another program has it open)" if "lock" in str(exc) else str(exc)}


def run(args):
    from shotline.ports import RPI_VID, list_boards

    boards = list_boards(vids=() if args.any_vid else (RPI_VID,), include_virtual=not args.no_virtual)
    if not boards and not args.json:
        emit({}, False, "no boards attached")
    for b in boards:
        row = b.to_dict()
        if not args.no_probe:
            hello = probe(b.port, args.timeout_s)
            row.update({"sensor_id": hello.get("sensor_id"), "firmware": hello.get("fw"),
                        "mode": hello.get("mode"), "answer": hello.get("error") or "ok"})
        text = f"{b.port:24} {b.serial_number or '-':18} {b.kind:8}"
        if not args.no_probe:
            text += (f" {row['sensor_id'] or '-':12} fw {row['firmware'] or '-':8} {row['mode'] or ''}"
                     if row["answer"] == "ok" else f" ({row['answer']})")
        emit(row, args.json, text)
    return 0
