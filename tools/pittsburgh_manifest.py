#!/usr/bin/env python3
"""Write a ``shotline process`` manifest for one Pittsburgh 2018 test folder.

    tools/pittsburgh_manifest.py ../shared/data/shotspotter-pittsburgh-2018/.../FP1/test_001 -o m.json
    shotline process m.json --json

Audio paths are written relative to the manifest's folder (absolute if that
is not possible); the temperature comes from the test's weather file.
Data: ShotSpotter, Inc. (now SoundThinking), CC BY 4.0, Tech Note 098.
"""
import argparse
import json
import os
import sys
from pathlib import Path

from shotline.datasets.pittsburgh import load_test
from shotline.timeutil import format_utc


def manifest_for(folder, out_dir):
    """The manifest document for a test folder, paths relative to ``out_dir``."""
    test = load_test(folder)
    if not test.recordings:
        raise ValueError(f"{folder}: no audio recordings")
    recordings = []
    for rec in test.recordings:
        try:
            path = os.path.relpath(rec.path.resolve(), Path(out_dir).resolve())
        except ValueError:   # another drive (Windows)
            path = str(rec.path.resolve())
        recordings.append({"sensor": rec.sensor, "path": path, "start_utc": format_utc(rec.start_utc_s),
                           "position_m": list(rec.position_m)})
    return {"temperature_c": test.temperature_c, "recordings": recordings}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", metavar="TEST_FOLDER", help="an FPn/test_NNN folder")
    parser.add_argument("-o", "--output", help="manifest file to write (default: standard output)")
    args = parser.parse_args(argv)
    out_dir = Path(args.output).parent if args.output else Path.cwd()
    try:
        doc = manifest_for(args.folder, out_dir)
    except (OSError, ValueError, KeyError) as exc:
        print(f"pittsburgh_manifest: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(doc, indent=1) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
