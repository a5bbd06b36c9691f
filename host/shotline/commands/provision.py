"""``shotline provision PORT``: firmware, configuration and keys onto a board (mpremote)."""
import json

from shotline.cli import CommandError, emit


def add_arguments(p):
    p.add_argument("port", metavar="PORT", help="board port or id:<serial>")
    p.add_argument("--id", dest="sensor_id", required=True, help="sensor id (letters, digits, - or _)")
    p.add_argument("--position", required=True, metavar="LAT,LON,ALT",
                   help="surveyed WGS84 position: degrees, degrees, metres")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="further configuration (JSON value), e.g. heartbeat_s=10 or "
                        "detector={\"ratio_db\":12}; see shotline_fw/config.py")
    p.add_argument("--key", action="append", default=[], metavar="FILE",
                   help="authorised public key file: signing.pub (hex), base64, or the JSON of "
                        "`shotline keys export`; repeatable")
    p.add_argument("--no-firmware", action="store_true", help="write only configuration and keys")
    p.add_argument("--mpy", action="store_true", help="cross-compile shotline_fw to .mpy first")
    p.add_argument("--force", action="store_true", help="overwrite a different board's identity")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and the mpremote command line; touch nothing")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _settings(pairs):
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--set needs KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value  # a bare string
    return out


def run(args):
    from pathlib import Path

    from shotline import mpremote_calls, provision as prov
    from shotline.ports import PortError, select

    try:
        (board,) = select([args.port])
        position = [v for v in args.position.split(",")]
        config = prov.build_config(args.sensor_id, position, _settings(args.set))
        keys = []
        for f in args.key:
            try:
                keys.append(prov.parse_public_key(Path(f).read_text()))
            except OSError as exc:
                raise CommandError(f"cannot read key file {f}: {exc}") from None
        if args.dry_run:
            plan = prov.plan(board.port, config, keys, firmware=not args.no_firmware,
                             compile_mpy=args.mpy)
            out = plan.to_dict()
            out["mpremote"] = mpremote_calls.install_argv(plan.port, plan.folders, plan.copies)
            emit(out, args.json, "\n".join(
                [f"would copy {a} -> :{b}" for a, b in plan.copies]
                + ["config: " + json.dumps(config, sort_keys=True), "mpremote command: "
                   + " ".join(repr(a) if " " in a or "\n" in a else a for a in out["mpremote"])]))
            return 0
        plan = prov.provision(board.port, config, keys, force=args.force,
                              firmware=not args.no_firmware, compile_mpy=args.mpy)
    except (PortError, prov.ProvisionError, mpremote_calls.MpremoteError) as exc:
        raise CommandError(str(exc)) from None
    emit(plan.to_dict(), args.json,
         f"provisioned {config['sensor_id']} on {plan.port}: {len(plan.copies)} files; board reset")
    return 0
