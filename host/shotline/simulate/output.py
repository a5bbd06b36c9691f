"""Write a rendering: per-sensor audio files, a ``process`` manifest and the truth.

Files in ``out_dir``:

- ``<sensor>.flac`` (or ``.wav``): 16-bit mono at the scenario's sample rate;
- ``manifest.json``: ``{"temperature_c", "relative_humidity_pct", "scenario",
  "recordings": [{"sensor", "path", "start_utc", "position_llh"}]}`` -- the
  input of ``shotline process MANIFEST``.  ``start_utc`` is what the sensor's
  own clock reported (clock error included); ``path`` is relative to the
  manifest;
- ``truth.json``: sources, impulses, true arrival times and levels per sensor,
  and each sensor's gain and clock error (see :mod:`.render`).
"""
import json
from pathlib import Path

import soundfile

from shotline.timeutil import format_utc

AUDIO_FORMATS = {"flac": "FLAC", "wav": "WAV"}


def write_rendering(rendering, out_dir, audio_format="flac"):
    """Write audio, ``manifest.json`` and ``truth.json``; returns the manifest path."""
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {sorted(AUDIO_FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fs = rendering.scenario.sample_rate_hz
    recordings = []
    for t in rendering.sensors:
        name = f"{t.id}.{audio_format}"
        soundfile.write(out / name, t.audio, fs, subtype="PCM_16",
                        format=AUDIO_FORMATS[audio_format])
        recordings.append({"sensor": t.id, "path": name,
                           "start_utc": format_utc(t.reported_start_utc_s, 9),
                           "position_llh": [round(v, 8) for v in t.position_llh]})
    w = rendering.scenario.weather
    manifest = {"scenario": rendering.scenario.name, "temperature_c": w.temperature_c,
                "relative_humidity_pct": w.relative_humidity_pct, "recordings": recordings}
    _write_json(out / "truth.json", rendering.truth)
    path = out / "manifest.json"
    _write_json(path, manifest)
    return path


def _write_json(path, obj):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
