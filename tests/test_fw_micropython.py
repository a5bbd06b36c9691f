"""The firmware's pure-logic modules on the real MicroPython interpreter.

Vectors are computed here under CPython and checked there; IRQ handlers run
under ``micropython.heap_lock()`` to prove they allocate nothing.
"""
import json
from pathlib import Path

import numpy as np

from shotline_fw import config, nmea, timefit
from shotline.fakehw import nmea_sentences

FAKEBOARD = Path(__file__).resolve().parents[1] / "tools" / "micropython"   # fakeboard.py


IRQ_SCRIPT = r"""
import micropython, time, array
from shotline_fw.capture import Capture

class I2S:
    def __init__(self):
        self.buf = None
        self.handler = None
    def irq(self, h):
        self.handler = h
    def readinto(self, buf):
        self.buf = buf

i2s = I2S()
cap = Capture(i2s, 256, 4, 16, time.ticks_us)
cap.start()
raw = i2s.buf
for i in range(256):                      # sample i*100-12800 in the top 16 bits
    v = (i * 100 - 12800) & 0xFFFF
    raw[4 * i + 2] = v & 0xFF
    raw[4 * i + 3] = v >> 8
    raw[4 * i + 1] = 0xA5                 # low bits of the 24-bit word
handler = i2s.handler
pps = cap.pps_irq
micropython.heap_lock()
try:
    for k in range(6):                    # 6 blocks into a ring of 4: 2 overruns
        handler(i2s)
    for k in range(3):
        pps(None)
finally:
    micropython.heap_unlock()
assert cap.overruns == 2, cap.overruns
block, first, stamp = cap.take()
assert first == 0 and block[0] == -12800 and block[255] == 255 * 100 - 12800, (block[0], block[255])
assert len(cap.pps_stamps()) == 3
print("irq-ok")
"""


def test_irq_handlers_do_not_allocate(micropython):
    out = micropython(IRQ_SCRIPT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "irq-ok"


LOGIC_SCRIPT = r"""
import sys, json
from shotline_fw import nmea, timefit, config
v = json.loads(sys.argv[1])
p = nmea.NMEA()
got = p.feed(v["nmea"].encode())
assert got == v["nmea_times"], got
assert [p.fix, p.sats, p.lat_e7, p.lon_e7, p.alt_dm] == v["nmea_state"], [p.fix, p.sats, p.lat_e7, p.lon_e7, p.alt_dm]
fit = timefit.ClockFit(16000, points=16)
for u, s in v["edges"]:
    fit.pps(s)
    fit.nmea(u, s + 3000)
for q, want in v["queries"]:
    got = list(fit.utc(q, q))
    assert got == want, (got, want)
cfg = config.load_text(v["config"])
assert cfg["lat_e7"] == v["lat_e7"], cfg["lat_e7"]
assert config.digest(cfg) == v["digest"], config.digest(cfg)
for bad, msg in v["bad"]:
    try:
        config.validate(bad)
        raise AssertionError("accepted " + repr(bad))
    except config.ConfigError as e:
        assert str(e) == msg, (str(e), msg)
print("logic-ok")
"""


def test_nmea_timefit_config_match_cpython(micropython):
    t0 = 1545094000
    stream = b"".join(nmea_sentences(t0 + k) for k in range(3)) + b"$GPRMC,bad*00\r\n"
    p = nmea.NMEA()
    times = p.feed(stream)
    rng = np.random.default_rng(5)
    edges = [(t0 + k, 1000 + int(k * 16000.37 * 256 + rng.normal(0, 3))) for k in range(20)]
    fit = timefit.ClockFit(16000, points=16)
    for u, s in edges:
        fit.pps(s)
        fit.nmea(u, s + 3000)
    queries = [edges[-1][1] + d for d in (0, 12345, 16000 * 256 // 3, 16000 * 256 * 5)]
    text = json.dumps({"sensor_id": "A", "lat_deg": 40.4406248, "lon_deg": -79.995886, "alt_m": 3.5,
                       "detector": {"ratio_db": 14.0}})
    cfg = config.load_text(text)
    bad = [{"sensor_id": "A", "lat_deg": 1, "lon_deg": 2}, {"sensor_id": "A", "lat_deg": 1, "lon_deg": 2,
                                                             "alt_m": 0, "block_samples": 100}]
    msgs = []
    for b in bad:
        try:
            config.validate(b)
        except config.ConfigError as exc:
            msgs.append(str(exc))
    vec = {"nmea": stream.decode(), "nmea_times": times,
           "nmea_state": [p.fix, p.sats, p.lat_e7, p.lon_e7, p.alt_dm],
           "edges": edges, "queries": [[q, list(fit.utc(q, q))] for q in queries],
           "config": text, "lat_e7": cfg["lat_e7"], "digest": config.digest(cfg),
           "bad": list(zip(bad, msgs))}
    out = micropython(LOGIC_SCRIPT, args=[json.dumps(vec)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "logic-ok"


APP_SCRIPT = r"""
import os, time, array, json
from shotline_fw import wire, outbox
from shotline_fw.app import App
from shotline_fw.detector import RAW_N
import fakeboard

os.mkdir("/flash")
with open("/flash/config.json", "w") as f:
    f.write(json.dumps({"sensor_id": "mp1", "lat_deg": 40.4406248, "lon_deg": -79.995886,
                        "alt_m": 300.0, "block_samples": 64, "outbox_slots": 8}))

class Engine:
    # a stand-in for the natmod: one trigger in every 10th block
    def __init__(self, cfg):
        self.n = 0
    def process(self, block, out):
        self.n += 1
        if self.n % 10:
            return 0
        base = (self.n - 1) * 64
        vals = [base + 5, base + 4, base + 9, 1000, 2000, 3000, 16384, 20000, 65536 * 30,
                65536 * 900, 65536 * 400, 40, 80, 640, 0]
        for k in range(RAW_N):
            out[k] = vals[k]
        return 1
    def dropped(self):
        return 0

def build():
    return fakeboard.build(Engine)

hw = build()
app = App(hw)
assert app.mode == "run", app.error
for k in range(30):
    hw.i2s.h(hw.i2s)
    app.poll()
frames = wire.StreamDecoder().feed(hw.usb.out)
trig = [f.json() for f in frames if f.type == wire.TRIGGER]
assert [t["seq"] for t in trig] == [1, 2, 3], [t["seq"] for t in trig]
assert trig[0]["sample_index"] == 9 * 64 + 5 and trig[0]["time_quality"] == "none"
assert trig[0]["lat_e7"] == 404406248
hw.usb.inp = wire.encode_json(wire.ACK, 1, {"seqs": [1, 1, 3]})
app.poll()
assert app.outbox.pending() == [2], app.outbox.pending()
app.close()
hw2 = build()                      # reboot: the un-acked trigger 2 is still there
app2 = App(hw2)
assert app2.boot == 2 and app2.outbox.pending() == [2] and app2.outbox.next_seq == 4
hw2.usb.inp = wire.encode_json(wire.HELLO, 5, {})
app2.poll()
got = [f for f in wire.StreamDecoder().feed(hw2.usb.out)]
assert [f.type for f in got] == [wire.HELLO, wire.HELLO, wire.TRIGGER], [f.type for f in got]
assert got[2].json()["seq"] == 2
print("app-ok")
"""


def test_app_runs_under_micropython(micropython):
    out = micropython(APP_SCRIPT, paths=[FAKEBOARD])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "app-ok"


OUTBOX_SCRIPT = r"""
from shotline_fw.outbox import Outbox, SLOT_BYTES
ob = Outbox("/o.bin", 4)
for i in range(6):
    ob.put(b"rec%d" % i)
assert ob.pending() == [3, 4, 5, 6] and ob.dropped == 2, (ob.pending(), ob.dropped)
assert ob.ack(4) and not ob.ack(4) and not ob.ack(1)
ob.close()
with open("/o.bin", "r+b") as f:            # tear record 5 (slot 1)
    f.seek(1 * SLOT_BYTES + 13)
    f.write(b"\xff")
ob = Outbox("/o.bin", 4)
assert ob.pending() == [3, 6] and ob.next_seq == 7, (ob.pending(), ob.next_seq)
ob.close()
ob = Outbox("/o.bin", 8)                     # capacity change keeps pending records
assert ob.pending() == [3, 6] and ob.get(6) == b"rec5" and ob.next_seq == 7
print("outbox-ok")
"""


def test_outbox_on_micropython_file_system(micropython):
    out = micropython(OUTBOX_SCRIPT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "outbox-ok"


GAP_SCRIPT = """
import array
from shotline_fw.detector import RAW_N, MAX_GAPS, Detection

class Engine:
    n = 0
    def process(self, block, out):
        self.n += len(block)
        if self.n == 192:   # onset 100, peak 120 before the gap at 128; trigger 130 after
            vals = [100, 130, 120, 1 << 40, 1 << 30, 5, 0, 1000, 65536 * 20, 65536 * 400,
                    65536 * 100, 30, 60, 640, 0]
            for k in range(RAW_N):
                out[k] = vals[k]
            return 1
        return 0
    def dropped(self):
        return 0

d = Detection(Engine(), 16000)
d.process(array.array("h", [0] * 64), 0)
d.process(array.array("h", [0] * 64), 64)
(f,) = d.process(array.array("h", [1] * 64), 1128)
assert f["onset_sample"] == 100, f["onset_sample"]
assert abs(f["rise_time_s"] - 20 / 16000) < 1e-7, f["rise_time_s"]
assert d.board_index(127) == 127 and d.board_index(128) == 1128
print("gap-ok")
"""


def test_detection_gap_mapping_under_micropython(micropython):
    out = micropython(GAP_SCRIPT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "gap-ok"
