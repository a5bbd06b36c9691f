"""Generate firmware/shotline_fw/pins.py from hardware/pinmap.json.

    python hardware/gen_pins.py          # rewrite pins.py
    python hardware/gen_pins.py --check  # exit 1 if pins.py is out of date

The pin map is the single source of truth; pins.py is its MicroPython form
(``const()`` integers, so they cost no RAM on the board).
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINMAP = ROOT / "hardware" / "pinmap.json"
PINS_PY = ROOT / "firmware" / "shotline_fw" / "pins.py"


def render(pinmap):
    """The text of pins.py for a pin map dict."""
    lines = [
        '"""Pin assignments: GENERATED from hardware/pinmap.json by hardware/gen_pins.py; do not edit."""',
        "try:",
        "    from micropython import const",
        "except ImportError:  # CPython",
        "    def const(x):",
        "        return x",
        "",
        "BOARD = %r" % pinmap["board"],
    ]
    for group in ("i2s", "gps_uart", "sd_spi"):
        for key, value in pinmap[group].items():
            lines.append("%s_%s = const(%d)" % (group.upper(), key.upper(), value))
    lines.append("GPS_PPS = const(%d)" % pinmap["gps_pps"])
    lines.append("LED = %r" % pinmap["led"])
    return "\n".join(lines) + "\n"


def main(argv):
    text = render(json.loads(PINMAP.read_text()))
    if "--check" in argv:
        if PINS_PY.read_text() != text:
            print("pins.py is out of date: run python hardware/gen_pins.py", file=sys.stderr)
            return 1
        return 0
    PINS_PY.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
