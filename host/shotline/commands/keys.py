"""``shotline keys``: generate and export the host's Ed25519 signing key."""
from shotline.cli import CommandError, emit


def add_arguments(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    g = sub.add_parser("generate", help="create a key pair (private key saved with mode 0600)")
    g.add_argument("--out", metavar="DIR", help="key directory (default: $SHOTLINE_KEYS or "
                   "~/.config/shotline/keys)")
    g.add_argument("--force", action="store_true", help="replace an existing key")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    e = sub.add_parser("export", help="print the public key for provisioning boards")
    e.add_argument("--keys", metavar="DIR", help="key directory (default as for generate)")
    e.add_argument("--format", choices=("hex", "json", "board"), default="hex",
                   help="hex: the key (for `shotline provision --key`); json: key id and key; "
                        "board: a keys.json for the board (default: hex)")
    e.add_argument("--json", action="store_true", help="same as --format json")


def run(args):
    import json

    from shotline import keys

    try:
        if args.action == "generate":
            info = keys.generate(args.out, force=args.force)
            emit(info, args.json, f"key {info['key_id']} written to {info['private_key_path']} "
                 f"(0600)\npublic key: {info['public_key']}")
            return 0
        info = keys.export(args.keys)
    except keys.KeyFileError as exc:
        raise CommandError(str(exc)) from None
    fmt = "json" if args.json else args.format
    if fmt == "hex":
        emit(info, False, info["public_key"])
    elif fmt == "json":
        emit(info, True)
    else:
        emit({}, False, json.dumps({"ed25519": [info["public_key"]]}))
    return 0
