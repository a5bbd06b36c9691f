"""The ``shotline`` command line: a table of subcommands.

Each subcommand lives in ``shotline.commands.<module>`` and provides
``add_arguments(parser)`` and ``run(args) -> int``.  Modules are imported only
when their command runs, so ``shotline --help`` stays fast.

Data goes to stdout (one JSON object per line with ``--json``), diagnostics to
stderr.  Exit codes: 0 success, 1 the command ran but reports failure (a FAIL
in a bench test, bad input lines that were skipped), 2 usage or input error,
130 interrupted.
"""
import argparse
import importlib
import json
import sys

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# (name, module under shotline.commands, one-line help)
COMMANDS = (
    ("simulate", "simulate", "render a scenario to per-sensor audio and truth"),
    ("detect", "detect", "find impulses in recordings"),
    ("incidents", "incidents", "list incidents and change their status"),
    ("map", "map", "draw sensors, incidents and their ellipses to PNG"),
    ("demo", "demo", "run the simulated night end to end"),
    ("ports", "ports", "list attached sensor boards"),
    ("provision", "provision", "copy firmware, configuration and keys to a board"),
    ("bench", "bench", "bench-test a board: microphone, detector, GPS, storage, clock"),
    ("monitor", "monitor", "live view of a board's triggers, levels and health"),
    ("collect", "collect", "collect triggers from boards into the store and locate events live"),
    ("virtual-sensor", "virtual_sensor", "run the real firmware under CPython on a pseudo-terminal"),
    ("locate", "locate", "locate impulses from arrival times (TDOA)"),
    ("associate", "associate", "group triggers from many sensors into located events"),
    ("process", "process", "detect, associate and locate from synchronised recordings"),
    ("train", "train", "train the event classifier from real and simulated data"),
    ("classify", "classify", "classify located events (JSON lines)"),
    ("keys", "keys", "generate and export signing keys"),
    ("snippet", "snippet", "fetch audio snippets around an event's triggers (signed, audited)"),
)


class CommandError(Exception):
    """An error the user can fix; printed without a traceback, exit code 2."""


def emit(obj, as_json, text=None, stream=None):
    """Print one record: a JSON line with ``--json``, otherwise ``text`` (or the JSON)."""
    stream = stream or sys.stdout
    if as_json or text is None:
        stream.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
    else:
        stream.write(text + "\n")
    stream.flush()


def warn(message):
    """A diagnostic for a person: to stderr."""
    sys.stderr.write(f"shotline: {message}\n")
    sys.stderr.flush()


def build_parser():
    from shotline import __version__

    parser = argparse.ArgumentParser(
        prog="shotline", description="Open acoustic gunshot detection and location."
    )
    parser.add_argument("--version", action="version", version=f"shotline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # The command is the first argument that is not an option; its module adds
    # its own arguments before parsing, so `shotline CMD --help` lists them.
    name = next((a for a in argv if not a.startswith("-")), None)
    choices = parser._subparsers._group_actions[0].choices
    if name not in choices:
        if name is None and argv:
            parser.parse_args(argv)  # --version / --help exit here
        parser.print_help(sys.stderr)
        if name is not None:
            warn(f"unknown command {name!r}")
        return EXIT_USAGE
    module = importlib.import_module(f"shotline.commands.{dict((c[0], c[1]) for c in COMMANDS)[name]}")
    module.add_arguments(choices[name])
    args = parser.parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except CommandError as exc:
        warn(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        warn("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
