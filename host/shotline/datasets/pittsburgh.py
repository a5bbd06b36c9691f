"""Reader for ShotSpotter's Pittsburgh 2018 live-fire data (CC BY 4.0).

© ShotSpotter, Inc. (now SoundThinking), released with Tech Note 098
(Calhoun et al., 2020).  Layout: ``FPn/test_NNN/`` with audio (12 kHz FLAC),
per-recording JSON (start time, sensor position), the surveyed shooter
position, weather, every pulse ShotSpotter's sensors reported
(``allpulses.json``) and ShotSpotter's own pulse selection per shot
(``nlos-tuples.json``).  Positions are metres in an anonymised local frame
(x east, y north, z up), one origin per firing position.

This module only reads the data set; nothing else in Shotline depends on it.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

from shotline.datasets import data_dir
from shotline.timeutil import parse_utc

NAME = "shotspotter-pittsburgh-2018"


@dataclass(frozen=True)
class Recording:
    sensor: str
    path: Path
    start_utc_s: float
    position_m: tuple


@dataclass(frozen=True)
class Pulse:
    uuid: str
    sensor: str
    arrival_utc_s: float
    position_m: tuple
    snr_db: float
    level_db_spl: float


@dataclass(frozen=True)
class Test:
    """One live-fire test: 1 or 3 rounds from one firing position."""

    name: str
    firing_position: str
    folder: Path
    rounds: int
    firearm: str
    survey_m: tuple
    temperature_c: float
    wind_speed_m_s: float
    recordings: tuple = field(repr=False)
    pulses: tuple = field(repr=False)
    shots: tuple = field(repr=False)  # per shot: tuple of pulse uuids (ShotSpotter's selection)

    def pulse_by_uuid(self):
        return {p.uuid: p for p in self.pulses}


def _xyz(d):
    return (float(d["x"]), float(d["y"]), float(d["z"]))


def _load_json(path):
    with open(path) as f:
        return json.load(f)


def load_test(folder):
    """Read one ``FPn/test_NNN`` folder."""
    folder = Path(folder)
    name = folder.name
    survey = _load_json(folder / f"{name}.survey.json")
    weather = _load_json(folder / f"{name}.weather.json")
    recordings = []
    for meta_path in sorted(folder.glob(f"{name}.audio.*.json")):
        meta = _load_json(meta_path)
        audio = meta_path.with_suffix(".flac")
        if audio.exists():
            recordings.append(Recording(meta["serial_number"], audio,
                                        parse_utc(meta["timestamp"]), _xyz(meta["location"])))
    pulses = tuple(
        Pulse(p["pulse_uuid"], p["serial_number"], parse_utc(p["arrival_time_utc"]),
              _xyz(p["location"]), float(p["signal_to_noise_dB"]), float(p["power_dB_SPL"]))
        for p in _load_json(folder / f"{name}.allpulses.json")
    )
    tuples = sorted(_load_json(folder / f"{name}.nlos-tuples.json"), key=lambda t: t["shot_index"])
    return Test(
        name=name,
        firing_position=survey["firing_position"],
        folder=folder,
        rounds=int(survey["num_rounds"]),
        firearm=survey["firearm"],
        survey_m=_xyz(survey["survey_location"]),
        temperature_c=float(weather["temperature"]),
        wind_speed_m_s=float(weather["speed"]),
        recordings=tuple(recordings),
        pulses=pulses,
        shots=tuple(tuple(t["pulse_uuids"]) for t in tuples),
    )


def root(base=None):
    """The data set's folder (``None`` if it is not on this machine)."""
    path = Path(base) if base else data_dir() / NAME
    return path if path.is_dir() else None


def iter_tests(base=None, firing_positions=None):
    """Yield every test, in firing-position then test order."""
    top = root(base)
    if top is None:
        raise FileNotFoundError(f"{NAME} not found under {data_dir()} (set SHOTLINE_DATA)")
    for folder in sorted(top.glob("*/FP*/test_*")):
        fp = folder.parent.name
        if firing_positions and fp not in firing_positions:
            continue
        yield load_test(folder)
