"""Pin map: pins.py is generated from hardware/pinmap.json and the pins are valid RP2040 choices."""
import importlib.util
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PINMAP = json.loads((REPO / "hardware" / "pinmap.json").read_text())


def _gen():
    spec = importlib.util.spec_from_file_location("gen_pins", REPO / "hardware" / "gen_pins.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pins_py_is_generated_from_the_pin_map():
    assert (REPO / "firmware" / "shotline_fw" / "pins.py").read_text() == _gen().render(PINMAP)
    from shotline_fw import pins
    assert (pins.I2S_SCK, pins.I2S_WS, pins.I2S_SD) == tuple(PINMAP["i2s"][k] for k in ("sck", "ws", "sd"))
    assert pins.GPS_PPS == PINMAP["gps_pps"] and pins.LED == PINMAP["led"]


def test_pins_are_valid_rp2040_functions_and_unique():
    used = [PINMAP["gps_pps"], *PINMAP["i2s"].values(), *PINMAP["sd_spi"].values(),
            *PINMAP["gps_uart"].values()]
    ids = {PINMAP["i2s"]["id"], PINMAP["sd_spi"]["id"], PINMAP["gps_uart"]["id"]}
    gpios = [p for k, p in [("pps", PINMAP["gps_pps"])] + [(k, v) for g in ("i2s", "sd_spi", "gps_uart")
                                                            for k, v in PINMAP[g].items() if k != "id"]]
    assert len(gpios) == len(set(gpios)) and all(0 <= p <= 28 for p in gpios) and used and ids
    i2s = PINMAP["i2s"]
    assert i2s["ws"] == i2s["sck"] + 1      # MicroPython rp2 I2S: WS must follow SCK
    uart = {0: ({0, 12, 16, 28}, {1, 13, 17}), 1: ({4, 8, 20, 24}, {5, 9, 21, 25})}
    tx, rx = uart[PINMAP["gps_uart"]["id"]]
    assert PINMAP["gps_uart"]["tx"] in tx and PINMAP["gps_uart"]["rx"] in rx
    spi = {0: ({2, 6, 18, 22}, {3, 7, 19, 23}, {0, 4, 16, 20}),
           1: ({10, 14, 26}, {11, 15, 27}, {8, 12, 28})}
    sck, mosi, miso = spi[PINMAP["sd_spi"]["id"]]
    sd = PINMAP["sd_spi"]
    assert sd["sck"] in sck and sd["mosi"] in mosi and sd["miso"] in miso


def test_wiring_table_in_the_readme_agrees_with_the_pin_map():
    text = (REPO / "hardware" / "README.md").read_text()
    rows = dict(re.findall(r"^\| ([^|]+?) \| pin \d+ \(GP(\d+)\)", text, re.M))
    expect = {"I2S SCK (bit clock)": PINMAP["i2s"]["sck"], "I2S WS (word select)": PINMAP["i2s"]["ws"],
              "I2S SD (data)": PINMAP["i2s"]["sd"], "GPS UART0 TX": PINMAP["gps_uart"]["tx"],
              "GPS UART0 RX": PINMAP["gps_uart"]["rx"], "GPS PPS": PINMAP["gps_pps"],
              "SD SPI1 SCK": PINMAP["sd_spi"]["sck"], "SD SPI1 MOSI": PINMAP["sd_spi"]["mosi"],
              "SD SPI1 MISO": PINMAP["sd_spi"]["miso"], "SD CS": PINMAP["sd_spi"]["cs"]}
    assert {k: int(v) for k, v in rows.items()} == expect
    assert "-26 dBFS at 94 dB SPL" in text and "120 dB SPL" in text
