"""Scenario files: a small JSON description of a simulated night.

The format (documented with an example in ``docs/simulator.md``)::

    {
      "name": "test-block",
      "start_utc": "2026-07-04T22:00:00Z",
      "duration_s": 30,
      "sample_rate_hz": 16000,
      "seed": 1,
      "weather": {"temperature_c": 15, "relative_humidity_pct": 70,
                  "pressure_kpa": 101.325, "wind_speed_m_s": 3, "wind_from_deg": 270},
      "background": {"traffic_db_spl": 55, "self_noise_db_spl": 33},
      "propagation": {"echoes": 3, "excess_attenuation_db": 6, "ground_reflection": 0.7},
      "microphone": {"full_scale_db_spl": 120, "gain_spread_db": 1.0,
                     "clock_error_s": 2e-6},
      "sensors": [{"id": "S01", "lat_deg": 40.44, "lon_deg": -79.99, "height_m": 6}],
      "sources": [{"id": "E1", "t_s": 5.0, "kind": "handgun", "lat_deg": 40.441,
                   "lon_deg": -79.991, "height_m": 1.5, "shots": 3, "interval_s": 0.3}]
    }

Only ``start_utc``, ``duration_s``, ``sensors`` and ``sources`` are required;
everything else has the defaults in this module.  Times of sources are seconds
after ``start_utc`` (``t_s``) or absolute (``time_utc``).  Per sensor,
``gain_db`` and ``clock_error_s`` override the random draws.  A bad file raises
``ScenarioError`` naming the offending field.
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from shotline.timeutil import parse_utc
from shotline_fw.config import DEFAULTS as _SENSOR_DEFAULTS

from .sources import KINDS


class ScenarioError(ValueError):
    """A scenario file that cannot be simulated; the message names the field."""


@dataclass(frozen=True)
class Weather:
    temperature_c: float = 15.0
    relative_humidity_pct: float = 70.0
    pressure_kpa: float = 101.325
    wind_speed_m_s: float = 0.0
    wind_from_deg: float = 0.0  # meteorological: direction the wind blows FROM, clockwise from north

    @property
    def wind_enu_m_s(self):
        """Wind velocity (east, north) in m/s: where the air moves TO."""
        to = math.radians(self.wind_from_deg + 180.0)
        return (self.wind_speed_m_s * math.sin(to), self.wind_speed_m_s * math.cos(to))


@dataclass(frozen=True)
class Background:
    traffic_db_spl: float = 55.0    # RMS of the traffic-like rumble
    self_noise_db_spl: float = 33.0  # microphone self noise (INMP441: 61 dBA SNR at 94 dB)
    wind_noise: bool = True          # gusty low-frequency noise grows with wind speed


@dataclass(frozen=True)
class Propagation:
    echoes: int = 3                  # reflections per source-sensor path (besides the ground)
    excess_attenuation_db: float = 6.0  # per path: uniform 0..this (buildings, ground), dB
    ground_reflection: float = 0.7   # pressure reflection coefficient of the ground; 0 = none


@dataclass(frozen=True)
class Microphone:
    full_scale_db_spl: float = _SENSOR_DEFAULTS["full_scale_db_spl"]  # sine RMS at 0 dBFS
    gain_spread_db: float = 1.0       # sensitivity spread between units (standard deviation)
    clock_error_s: float = 2e-6       # standard deviation of each sensor's time-stamp error


@dataclass(frozen=True)
class Sensor:
    id: str
    lat_deg: float
    lon_deg: float
    height_m: float = 5.0
    gain_db: float = None
    clock_error_s: float = None


@dataclass(frozen=True)
class Source:
    id: str
    kind: str
    time_utc_s: float
    lat_deg: float
    lon_deg: float
    height_m: float = 1.5
    params: dict = field(default_factory=dict)  # kind-specific: shots, interval_s, level_db_spl...


@dataclass(frozen=True)
class Scenario:
    name: str
    start_utc_s: float
    duration_s: float
    sample_rate_hz: int
    seed: int
    weather: Weather
    background: Background
    propagation: Propagation
    microphone: Microphone
    sensors: tuple
    sources: tuple
    origin_llh: tuple  # (lat_deg, lon_deg, alt_m) of the local ENU frame


_SENSOR_KEYS = {"id", "lat_deg", "lon_deg", "height_m", "gain_db", "clock_error_s"}
_SOURCE_KEYS = {"id", "kind", "t_s", "time_utc", "lat_deg", "lon_deg", "height_m"}


def load_scenario(path):
    """Read and validate a scenario JSON file -> ``Scenario``."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not JSON ({exc})") from None
    try:
        return parse_scenario(doc)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def _number(obj, key, where, default=None, low=None, high=None):
    value = obj.get(key)
    if value is None:
        if default is None:
            raise ScenarioError(f"{where}: {key} is required")
        value = default
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}: {key} must be a number, not {value!r}") from None
    if not math.isfinite(value) or (low is not None and value < low) or \
            (high is not None and value > high):
        raise ScenarioError(f"{where}: {key}={value} is out of range [{low}, {high}]")
    return value


def _section(doc, key, cls):
    raw = doc.get(key, {})
    if not isinstance(raw, dict):
        raise ScenarioError(f"{key} must be an object")
    names = {f for f in cls.__dataclass_fields__}
    unknown = set(raw) - names
    if unknown:
        raise ScenarioError(f"{key}: unknown field(s) {sorted(unknown)}")
    values = {}
    for name in names:
        if name in raw:
            default = getattr(cls, name)
            if isinstance(default, bool):
                values[name] = bool(raw[name])
            elif isinstance(default, int):
                values[name] = int(_number(raw, name, key, low=0))
            else:
                values[name] = _number(raw, name, key)
    return cls(**values)


def parse_scenario(doc):
    """Validate a decoded scenario document -> ``Scenario`` (see the module docstring)."""
    if not isinstance(doc, dict):
        raise ScenarioError("a scenario is a JSON object")
    try:
        start = parse_utc(doc["start_utc"])
    except KeyError:
        raise ScenarioError("start_utc is required") from None
    except ValueError as exc:
        raise ScenarioError(f"start_utc: {exc}") from None
    duration = _number(doc, "duration_s", "scenario", low=0.1, high=3600.0)
    rate = int(_number(doc, "sample_rate_hz", "scenario", 16000, low=4000, high=96000))
    sensors = []
    for i, raw in enumerate(doc.get("sensors") or ()):
        where = f"sensors[{i}]"
        if not isinstance(raw, dict) or "id" not in raw:
            raise ScenarioError(f"{where}: a sensor is an object with an id")
        unknown = set(raw) - _SENSOR_KEYS
        if unknown:
            raise ScenarioError(f"{where}: unknown field(s) {sorted(unknown)}")
        sensors.append(Sensor(
            id=str(raw["id"]),
            lat_deg=_number(raw, "lat_deg", where, low=-90, high=90),
            lon_deg=_number(raw, "lon_deg", where, low=-180, high=180),
            height_m=_number(raw, "height_m", where, 5.0, low=-100, high=1000),
            gain_db=None if raw.get("gain_db") is None else _number(raw, "gain_db", where,
                                                                   low=-40, high=40),
            clock_error_s=None if raw.get("clock_error_s") is None else
            _number(raw, "clock_error_s", where, low=-10, high=10)))
    if not sensors:
        raise ScenarioError("sensors: at least one sensor is required")
    ids = [s.id for s in sensors]
    if len(set(ids)) != len(ids):
        raise ScenarioError("sensors: ids must be unique")
    sources = []
    for i, raw in enumerate(doc.get("sources") or ()):
        where = f"sources[{i}]"
        if not isinstance(raw, dict):
            raise ScenarioError(f"{where}: a source is an object")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise ScenarioError(f"{where}: kind {kind!r} is not one of {sorted(KINDS)}")
        if "time_utc" in raw:
            try:
                t = parse_utc(raw["time_utc"])
            except ValueError as exc:
                raise ScenarioError(f"{where}: time_utc: {exc}") from None
        else:
            t = start + _number(raw, "t_s", where, low=0.0, high=duration)
        if not start <= t <= start + duration:
            raise ScenarioError(f"{where}: time is outside the scenario's duration")
        params = {k: v for k, v in raw.items() if k not in _SOURCE_KEYS}
        try:
            KINDS[kind].check(params)
        except ValueError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
        sources.append(Source(
            id=str(raw.get("id", f"src{i + 1}")), kind=kind, time_utc_s=t,
            lat_deg=_number(raw, "lat_deg", where, low=-90, high=90),
            lon_deg=_number(raw, "lon_deg", where, low=-180, high=180),
            height_m=_number(raw, "height_m", where, 1.5, low=-100, high=2000),
            params=params))
    sources.sort(key=lambda s: s.time_utc_s)
    origin = doc.get("origin")
    if origin is None:
        origin = (sum(s.lat_deg for s in sensors) / len(sensors),
                  sum(s.lon_deg for s in sensors) / len(sensors), 0.0)
    else:
        origin = (_number(origin, "lat_deg", "origin", low=-90, high=90),
                  _number(origin, "lon_deg", "origin", low=-180, high=180),
                  _number(origin, "alt_m", "origin", 0.0))
    return Scenario(
        name=str(doc.get("name", "scenario")), start_utc_s=start, duration_s=duration,
        sample_rate_hz=rate, seed=int(_number(doc, "seed", "scenario", 0)),
        weather=_section(doc, "weather", Weather),
        background=_section(doc, "background", Background),
        propagation=_section(doc, "propagation", Propagation),
        microphone=_section(doc, "microphone", Microphone),
        sensors=tuple(sensors), sources=tuple(sources), origin_llh=tuple(origin))
