"""``shotline detect FILE... [--json] [--start-utc ISO8601]``: impulses in recordings.

One line per trigger: the file, ``onset_s`` (seconds from the file's first
sample), ``onset_utc`` when ``--start-utc`` gives the time of the first sample,
and the trigger features (``shotline.detect.Trigger``).  A missing or
malformed file is reported on stderr, the others are still processed, and the
exit code is 1.
"""
from shotline.cli import EXIT_FAIL, EXIT_OK, CommandError, emit, warn


def add_arguments(parser):
    parser.add_argument("files", nargs="+", metavar="FILE", help="WAV or FLAC recordings (first channel)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--start-utc", metavar="ISO8601",
                        help="UTC time of the first sample, e.g. 2018-12-19T00:49:27.467Z")


def _fmt(name, value):
    if isinstance(value, bool) or isinstance(value, int):
        return "%s=%s" % (name, str(value).lower() if isinstance(value, bool) else value)
    if name.endswith("_s"):
        return "%s=%.6f" % (name, value)
    return "%s=%.3g" % (name, value) if name in ("onset_frac", "sta_lta") else "%s=%.1f" % (name, value)


def run(args):
    from shotline.detect import AudioFileError, detect_file
    from shotline.timeutil import format_utc, parse_utc

    start_s = None
    if args.start_utc:
        try:
            start_s = parse_utc(args.start_utc)
        except ValueError as exc:
            raise CommandError("--start-utc: %s" % exc) from None
    status = EXIT_OK
    for path in args.files:
        try:
            triggers = detect_file(path)
        except (AudioFileError, ValueError) as exc:
            warn(str(exc))
            status = EXIT_FAIL
            continue
        for t in triggers:
            rec = {"file": path, "onset_s": t.onset_s}
            if start_s is not None:
                rec["onset_utc"] = format_utc(start_s + t.onset_s)
            rec.update(t.to_dict())
            text = "  ".join([path, "onset_s=%.6f" % t.onset_s]
                             + (["onset_utc=" + rec["onset_utc"]] if start_s is not None else [])
                             + [_fmt(k, v) for k, v in t.to_dict().items() if k != "onset_s"])
            emit(rec, args.json, text)
    return status
