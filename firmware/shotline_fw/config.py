"""Sensor configuration: defaults and validation (board and host).

Valid MicroPython and CPython.  The board keeps its configuration in
``config.json`` (written by ``shotline provision`` or ``mpremote``).
``validate(dict) -> dict`` returns the complete configuration (defaults
filled in) or raises ``ConfigError`` naming the exact field and problem; the
firmware then enters safe mode and reports that message instead of running.

Position: ``lat_deg``/``lon_deg`` (WGS84 degrees) and ``alt_m``.  Because
MicroPython on the RP2040 has single-precision floats (about 0.5 m at these
magnitudes), ``load_text`` also reads the decimal text of ``lat_deg`` and
``lon_deg`` exactly into ``lat_e7``/``lon_e7`` (degrees x 1e7, integers),
which is what the triggers carry.
"""
import json

from shotline_fw import detconfig

CONFIG_FILE = "config.json"

DEFAULTS = {
    "sensor_id": None,          # None: "pico-" + unique id (hex)
    "lat_deg": None,            # surveyed WGS84 position: required
    "lon_deg": None,
    "alt_m": None,
    "sample_rate_hz": 16000,    # I2S rate
    "block_samples": 256,       # samples per I2S block (power of two)
    "ring_blocks": 8,           # captured blocks buffered between IRQ and main loop
    "i2s_shift": 16,            # int16 = (32-bit I2S word) >> i2s_shift; 8..16 (16: no gain)
    "full_scale_db_spl": 120.0, # RMS SPL of a full-scale sine (INMP441: -26 dBFS at 94 dB SPL);
                                # int16 peak full scale is then 123.0 dB SPL peak
    "detector": {},             # overrides of detconfig.DEFAULTS
    "heartbeat_s": 10,
    "resend_s": 2,              # re-send un-acked triggers this often
    "outbox_slots": 512,        # persistent trigger records (full: drop oldest, counted)
    "storage": "flash",         # "flash" or "sd": where the outbox lives
    "gps_baud": 9600,
    "pps_timeout_s": 1.5,       # no PPS for this long: holdover
    "holdover_ppm": 2.0,        # assumed crystal wander in holdover (uncertainty growth)
    "time_fit_points": 16,      # PPS edges in the sample->UTC fit
    "wdt_timeout_ms": 8000,
}

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


class ConfigError(ValueError):
    """Invalid configuration; the message names the field."""


def _number(cfg, name, lo, hi, integer=False):
    v = cfg[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError("%s: expected a number, got %r" % (name, v))
    if integer and not isinstance(v, int):
        raise ConfigError("%s: expected an integer, got %r" % (name, v))
    if not lo <= v <= hi:
        raise ConfigError("%s: %r is outside %r..%r" % (name, v, lo, hi))
    return v


def validate(cfg):
    """The full configuration (defaults filled in), or ConfigError."""
    if not isinstance(cfg, dict):
        raise ConfigError("configuration must be a JSON object")
    for k in cfg:
        if k not in DEFAULTS and k not in ("lat_e7", "lon_e7"):
            raise ConfigError("%s: unknown setting" % k)
    out = dict(DEFAULTS)
    out.update(cfg)
    sid = out["sensor_id"]
    if sid is not None:
        if not isinstance(sid, str) or not 1 <= len(sid) <= 32:
            raise ConfigError("sensor_id: expected 1 to 32 characters, got %r" % (sid,))
        for c in sid:
            if c not in _ID_CHARS:
                raise ConfigError("sensor_id: character %r not allowed (use letters, digits, . _ -)" % c)
    for name in ("lat_deg", "lon_deg", "alt_m"):
        if out[name] is None:
            raise ConfigError("%s: missing (the sensor's surveyed position is required)" % name)
    _number(out, "lat_deg", -90, 90)
    _number(out, "lon_deg", -180, 180)
    _number(out, "alt_m", -500, 9000)
    rate = _number(out, "sample_rate_hz", detconfig.RATE_MIN_HZ, detconfig.RATE_MAX_HZ, True)
    block = _number(out, "block_samples", 64, 4096, True)
    if block & (block - 1):
        raise ConfigError("block_samples: %d is not a power of two" % block)
    _number(out, "ring_blocks", 2, 64, True)
    _number(out, "i2s_shift", 8, 16, True)
    _number(out, "full_scale_db_spl", 90, 140)
    det = out["detector"]
    if not isinstance(det, dict):
        raise ConfigError("detector: expected an object of detector parameters")
    try:
        detconfig.config(rate, **det)
    except (ValueError, TypeError) as exc:
        raise ConfigError("detector: %s" % exc)
    _number(out, "heartbeat_s", 1, 3600)
    _number(out, "resend_s", 0.1, 600)
    _number(out, "outbox_slots", 8, 65536, True)
    if out["storage"] not in ("flash", "sd"):
        raise ConfigError("storage: expected \"flash\" or \"sd\", got %r" % (out["storage"],))
    _number(out, "gps_baud", 4800, 921600, True)
    _number(out, "pps_timeout_s", 1.1, 10)
    _number(out, "holdover_ppm", 0, 1000)
    _number(out, "time_fit_points", 2, 64, True)
    _number(out, "wdt_timeout_ms", 1000, 8388, True)
    for name in ("lat", "lon"):
        e7 = out.get(name + "_e7")
        deg = out[name + "_deg"]
        if e7 is None or not isinstance(e7, int) or abs(e7 - deg * 1e7) > 100:
            out[name + "_e7"] = int(round(deg * 1e7))
    return out


def decimal_e7(text):
    """Degrees x 1e7 (int, rounded half away from zero) from decimal text such as '-79.9958860'."""
    text = text.strip()
    neg = text.startswith("-")
    if neg or text.startswith("+"):
        text = text[1:]
    if "e" in text or "E" in text or not text:
        raise ValueError("not a plain decimal: %r" % text)
    whole, _, frac = text.partition(".")
    if not (whole or frac) or not (whole + frac).isdigit():
        raise ValueError("not a plain decimal: %r" % text)
    frac8 = (frac + "00000000")[:8]
    v = int(whole or "0") * 10000000 + int(frac8[:7])
    if int(frac8[7]) >= 5:
        v += 1
    return -v if neg else v


def _raw_number(text, name):
    """The literal text of a top-level number field ``name`` in JSON ``text``, or None."""
    key = '"%s"' % name
    i = text.find(key)
    if i < 0:
        return None
    j = text.find(":", i + len(key))
    if j < 0:
        return None
    k = j + 1
    while k < len(text) and text[k] in " \t\r\n":
        k += 1
    e = k
    while e < len(text) and text[e] in "+-0123456789.eE":
        e += 1
    return text[k:e] or None


def load_text(text):
    """Parse and validate config JSON text; exact ``lat_e7``/``lon_e7`` from the decimal text."""
    try:
        cfg = json.loads(text)
    except ValueError as exc:
        raise ConfigError("config.json is not valid JSON: %s" % exc)
    if isinstance(cfg, dict):
        for name in ("lat", "lon"):
            raw = _raw_number(text, name + "_deg")
            if raw is not None and name + "_e7" not in cfg:
                try:
                    cfg[name + "_e7"] = decimal_e7(raw)
                except ValueError:
                    pass
    return validate(cfg)


def load(path=CONFIG_FILE):
    """Read and validate the configuration file; ConfigError says what is wrong."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError("%s: not found (provision the sensor first)" % path)
    return load_text(text)


def canonical(cfg):
    """Deterministic JSON text of a configuration (sorted keys), for the digest."""
    if isinstance(cfg, dict):
        return "{" + ",".join(json.dumps(k) + ":" + canonical(cfg[k]) for k in sorted(cfg)) + "}"
    if isinstance(cfg, (list, tuple)):
        return "[" + ",".join(canonical(v) for v in cfg) + "]"
    return json.dumps(cfg)


def digest(cfg):
    """8 hex digits: CRC-32 of the canonical configuration (as the board computes it)."""
    from shotline_fw.wire import crc32
    return "%08x" % crc32(canonical(cfg).encode())


def merge(cfg, changes, text=None):
    """A validated copy of ``cfg`` with ``changes`` applied (for CONFIG_SET).

    ``text``: the JSON text ``changes`` came from, to read a new position's
    decimal degrees exactly (as ``load_text``)."""
    if not isinstance(changes, dict):
        raise ConfigError("config: expected an object of settings")
    new = {}
    for k in cfg:
        if k not in ("lat_e7", "lon_e7"):
            new[k] = cfg[k]
    new.update(changes)
    for name in ("lat", "lon"):
        if name + "_deg" not in changes:
            if name + "_e7" in cfg:
                new[name + "_e7"] = cfg[name + "_e7"]
        elif text is not None:
            raw = _raw_number(text, name + "_deg")
            try:
                new[name + "_e7"] = decimal_e7(raw) if raw else None
            except ValueError:
                pass
            if new.get(name + "_e7") is None:
                new.pop(name + "_e7", None)
    return validate(new)
