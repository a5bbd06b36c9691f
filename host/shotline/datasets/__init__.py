"""Where the real recordings are, and readers for the public data sets in it.

The data folder is ``$SHOTLINE_DATA`` if set, else ``../shared/data`` beside
the project root.
"""
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def data_dir():
    """The folder of real recordings (it may not exist on every machine)."""
    env = os.environ.get("SHOTLINE_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"
