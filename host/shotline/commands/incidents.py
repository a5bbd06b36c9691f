"""``shotline incidents``: list incidents, change their status, show the audit trail.

    shotline incidents [--db shotline.sqlite] [--status new] [--json]
    shotline incidents --set-status ID STATUS --by NAME [--note TEXT] [--cap-dir DIR]
    shotline incidents --audit ID [--json]
    shotline incidents --geojson FILE     # also write the listed incidents as GeoJSON
"""
import json
from pathlib import Path

from shotline.cli import CommandError, emit, warn
from shotline.timeutil import format_utc


def add_arguments(parser):
    parser.add_argument("--db", default="shotline.sqlite", help="store file (default shotline.sqlite)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--status", help="list only incidents with this status")
    parser.add_argument("--set-status", nargs=2, metavar=("ID", "STATUS"),
                        help="change an incident's status: new, reviewed, dismissed, dispatched")
    parser.add_argument("--by", help="who makes the status change (required with --set-status)")
    parser.add_argument("--note", help="a note for the audit trail")
    parser.add_argument("--cap-dir", metavar="DIR",
                        help="with --set-status: also write the CAP follow-up to the incident's "
                             "alert DIR/<uid>.xml (Cancel when dismissed, else Update)")
    parser.add_argument("--audit", type=int, metavar="ID", help="show an incident's audit trail")
    parser.add_argument("--geojson", metavar="FILE", help="also write the listed incidents to FILE")


def _line(inc):
    ellipse = (f"±{inc['ellipse_major_m']:.0f} m" if inc.get("ellipse_major_m") is not None
               else "± ?")
    cls = ""
    if inc.get("class") is not None:
        cls = f"  {inc['class']}"
        if inc.get("probability") is not None:
            cls += f" p={inc['probability']:.2f}"
    return (f"{inc['id']:>4}  {format_utc(inc['time_utc_s'], 3)}  {inc['lat_deg']:.6f},"
            f"{inc['lon_deg']:.6f}  {ellipse:>8}  {inc['n_shots']} shot(s)  "
            f"{len(inc['sensors'])} sensors  {'alert ' if inc['alert'] else 'record'}  "
            f"{inc['status']:<10}{cls}")


def _original_alert(cap_dir, store, ident):
    from shotline.alerts.cap import read_message
    from shotline.incidents import get_incident

    uid = get_incident(store, ident)["uid"]
    path = cap_dir / f"{uid}.xml"
    try:
        return read_message(path.read_text())
    except OSError:
        raise CommandError(f"{path}: no CAP alert to follow up (was incident {ident} alerted?)") \
            from None
    except ValueError as exc:
        raise CommandError(f"{path}: {exc}") from None


def _follow_up(cap_dir, inc, original):
    import time

    from shotline.alerts.cap import cap_alert

    msg_type = "Cancel" if inc["status"] == "dismissed" else "Update"
    path = cap_dir / f"{inc['uid']}-{msg_type.lower()}.xml"
    ref = (original["sender"], original["identifier"], original["sent_utc_s"])
    path.write_text(cap_alert(inc, sender=original["sender"], sent_utc_s=time.time(),
                              status=original["status"], msg_type=msg_type, references=[ref],
                              note=original["note"]))
    warn(f"wrote {path}")


def run(args):
    from shotline.incidents import IncidentError, audit_trail, list_incidents, set_status
    from shotline.store import Store, StoreError

    if not Path(args.db).exists():
        raise CommandError(f"{args.db}: no such store (give --db)")
    writing = args.set_status is not None
    try:
        store = Store(args.db)  # migrates an older store, so the incident tables exist
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    with store:
        try:
            if writing:
                ident, status = args.set_status
                if not args.by:
                    raise CommandError("--set-status needs --by NAME (kept in the audit trail)")
                try:
                    ident = int(ident)
                except ValueError:
                    raise CommandError(f"incident ID must be a number, not {ident!r}") from None
                original = None
                if args.cap_dir:
                    original = _original_alert(Path(args.cap_dir), store, ident)
                inc = set_status(store, ident, status, by=args.by, note=args.note)
                emit(inc, args.json, text=_line(inc))
                if original is not None:
                    _follow_up(Path(args.cap_dir), inc, original)
                return 0
            if args.audit is not None:
                for row in audit_trail(store, args.audit):
                    emit(row, args.json, text=(
                        f"{format_utc(row['time_utc_s'], 3)}  {row['old_status'] or '-':<10} -> "
                        f"{row['new_status']:<10} by {row['by']}"
                        + (f"  ({row['note']})" if row["note"] else "")))
                return 0
            incidents = list_incidents(store, status=args.status)
        except IncidentError as exc:
            raise CommandError(str(exc)) from None
    for inc in incidents:
        emit(inc, args.json, text=_line(inc))
    if args.geojson:
        from shotline.alerts.geojson import feature_collection

        Path(args.geojson).write_text(json.dumps(feature_collection(incidents), indent=1) + "\n")
    return 0
