"""``shotline process MANIFEST``: detect, associate and locate from synchronised recordings.

Prints the events in the form of ``shotline associate`` (one line each, by
emission time), then one ``{"unexplained": [...]}`` line.  The streaming
associator's events compete with every offline candidate unless
``--streaming-only`` (see ``shotline.process``).
"""
from shotline.cli import EXIT_FAIL, EXIT_OK, CommandError, warn
from shotline.commands.associate import (add_association_arguments, association_options,
                                         print_event, print_unexplained)


def add_arguments(parser):
    add_association_arguments(parser)
    parser.add_argument("--streaming-only", action="store_true",
                        help="keep the streaming associator's events as they are (no offline re-selection)")
    parser.add_argument("manifest", metavar="MANIFEST",
                        help="JSON manifest of recordings (sensor, path, start_utc, position)")


def run(args):
    from shotline.process import ManifestError, load_manifest, process
    from shotline.process_select import SelectionError

    try:
        manifest = load_manifest(args.manifest)
        result = process(manifest, reselect=not args.streaming_only,
                         **association_options(args, manifest.temperature_c))
    except ManifestError as exc:
        raise CommandError(str(exc)) from None
    except ValueError as exc:   # unreadable audio, bad options
        raise CommandError(str(exc)) from None
    except SelectionError as exc:   # the solver, not the input: no events printed
        warn(str(exc))
        return EXIT_FAIL
    for event in result.events:
        print_event(event, args, manifest.frame)
    print_unexplained(result.unexplained, args, manifest.frame)
    return EXIT_OK
