"""Firmware per-block cost and RAM, measured on the real MicroPython interpreter.

Runs the firmware's own Python (capture IRQ, main-loop block path, trigger
handling) under MicroPython (WebAssembly build, Node) with ``time.ticks_us``
and ``gc.mem_free``, and prints each cost as a share of the real-time budget
of one block (256 samples at 16 kHz = 16 ms).

What this does NOT say: the RP2040 (Cortex-M0+ at 125 MHz, no FPU, XIP
flash) runs MicroPython bytecode far slower than WebAssembly on a desktop
CPU; the ratio is not measured here.  The C detector's cost is not included
(the natmod cannot be loaded in this interpreter; see ``make cross`` for its
size).  Read the figures as the relative weight of each step, and as RAM
that is real (MicroPython object sizes are the same on the board, 32-bit).

    .venv/bin/python bench/firmware.py
"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import gc, time, os, json, array
from shotline_fw import wire, config
from shotline_fw.app import App
from shotline_fw.capture import Capture
from shotline_fw.detector import RAW_N
from fakeboard import build

RATE, BLOCK = 16000, 256
os.mkdir("/flash")
with open("/flash/config.json", "w") as f:
    f.write(json.dumps({"sensor_id": "bench", "lat_deg": 40.4406248, "lon_deg": -79.995886,
                        "alt_m": 300.0, "block_samples": BLOCK, "outbox_slots": 512}))

class Engine:
    # stands in for the natmod: returns a trigger when asked to
    def __init__(self, cfg):
        self.fire = False
        self.n = 0
    def process(self, block, out):
        self.n += len(block)
        if not self.fire:
            return 0
        vals = [self.n - 200, self.n - 201, self.n - 190, 10 ** 9, 2 * 10 ** 9, 3 * 10 ** 8, 12345,
                20000, 65536 * 30, 65536 * 900, 65536 * 400, 40, 80, 640, 0]
        for k in range(RAW_N):
            out[k] = vals[k]
        return 1
    def dropped(self):
        return 0

hw = build(Engine, mem_free=gc.mem_free, keep_output=False)

# start-up allocation, with frame encoding stubbed (its pure-Python binascii here
# would dominate; see below); gc off so every byte allocated is counted
encode_frame = wire.encode_frame
wire.encode_frame = lambda *a: b""
gc.collect()
gc.disable()
alloc0 = gc.mem_alloc()
app = App(hw)
alloc1 = gc.mem_alloc()
gc.enable()
wire.encode_frame = encode_frame
irq = hw.i2s.h
raw = hw.i2s.buf
for i in range(len(raw)):
    raw[i] = (i * 37) & 0xFF
N = 300

def per_call(fn, n=N, reps=5):
    # best of ``reps`` batches: the least disturbed by GC and the host
    best = None
    for _ in range(reps):
        t0 = time.ticks_us()
        for _ in range(n):
            fn()
        t = time.ticks_diff(time.ticks_us(), t0) / n
        best = t if best is None or t < best else best
    return best

def one_irq():
    irq(hw.i2s)
    app.capture.release()

def one_block():
    irq(hw.i2s)
    app.poll()

for _ in range(100):     # warm up
    one_block()
# 1. I2S IRQ: 32-bit words -> int16 (pure-Python conversion), one block
t_irq = per_call(one_irq)
# 2. the IRQ around the conversion (the natmod's C convert cannot run here: stubbed)
app.capture._native = lambda raw, dst, shift: None
t_irq_native = per_call(one_irq)
# 3. main loop per block, no trigger: take, time envelope, audio hook, detection, release
t_block = per_call(one_block, 1000) - t_irq_native
# 4. one trigger per block: features, UTC, JSON, outbox write (frame encoding stubbed)
app.detection.engine.fire = True
wire.encode_frame = lambda *a: b""
t_trig = per_call(one_block, 40) - t_irq_native - t_block
wire.encode_frame = encode_frame
app.detection.engine.fire = False
# 5. framing one trigger record: this interpreter's binascii is micropython-lib's
#    pure-Python module (the rp2 port has the C one), so it is timed apart
rec = json.loads(app.outbox.get(app.outbox.pending()[-1]))
t_frame = per_call(lambda: wire.encode_json(wire.TRIGGER, 1, rec), 10, 3)
# 6. heap allocated (garbage) per block and per trigger, with the collector off
gc.collect()
gc.disable()
a = gc.mem_alloc()
for _ in range(100):
    one_block()
alloc_block = (gc.mem_alloc() - a) / 100
app.detection.engine.fire = True
wire.encode_frame = lambda *a: b""
a = gc.mem_alloc()
for _ in range(20):
    one_block()
alloc_trig = (gc.mem_alloc() - a) / 20 - alloc_block
wire.encode_frame = encode_frame
gc.enable()
budget = BLOCK * 1e6 / RATE
print(json.dumps({"budget_us": budget, "irq_us": t_irq, "block_us": t_block, "trigger_us": t_trig,
                  "irq_native_us": t_irq_native, "frame_us": t_frame, "record_bytes": len(wire.dumps(rec)),
                  "app_ram_bytes": alloc1 - alloc0, "alloc_block": alloc_block,
                  "alloc_trigger": alloc_trig,
                  "triggers": app.triggers, "blocks": app.capture.samples // BLOCK}))
"""


def main():
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "@micropython").is_dir():
        print("bench/firmware.py: needs node and the npm MicroPython package (make setup)", file=sys.stderr)
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(SCRIPT)
    out = subprocess.run([node, str(REPO / "tools" / "mpy-run.mjs"), "--path", str(REPO / "firmware"),
                          "--path", str(REPO / "tools" / "micropython"),
                          f.name], capture_output=True, text=True, cwd=REPO, timeout=300)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    r = json.loads(out.stdout.strip().splitlines()[-1])
    b = r["budget_us"]
    print("firmware per-block cost on MicroPython %s (WebAssembly, this host; NOT an RP2040)" % "1.29")
    print("  block: 256 samples at 16 kHz = %.0f us real-time budget" % b)
    for name, key in (("I2S IRQ, 32->16-bit conversion in Python", "irq_us"),
                      ("I2S IRQ, conversion stubbed (natmod C not timed)", "irq_native_us"),
                      ("main loop per block (no trigger)", "block_us"),
                      ("one trigger (features, UTC, outbox write)", "trigger_us")):
        print("  %-45s %8.1f us  %5.2f %% of a block" % (name, r[key], 100 * r[key] / b))
    print("  (framing that %d-byte record: %.0f us here with micropython-lib's pure-Python"
          " binascii, excluded above; the rp2 port's binascii is C)" % (r["record_bytes"], r["frame_us"]))
    total = r["irq_native_us"] + r["block_us"]
    print("  %-45s %8.1f us  %5.2f %% (steady state; C convert and C detector excluded)"
          % ("capture IRQ + main loop", total, 100 * total / b))
    print("RAM (MicroPython heap; object sizes as on the board, 32-bit):")
    print("  allocated while the app starts (buffers, outbox file, lazy imports, garbage; an upper bound): %d bytes"
          % r["app_ram_bytes"])
    print("  garbage per block (main loop, no trigger): %.0f bytes; per trigger (framing excluded): %.0f bytes"
          % (r["alloc_block"], r["alloc_trigger"]))
    print("  (the Pico's MicroPython heap is about 190 KB; the detector state is extra, see `make cross`)")
    soak()
    return 0


def soak(minutes=40):
    """Trigger time accuracy over a long run of the real app on fake hardware."""
    import time

    import numpy as np

    from shotline import fakehw
    from shotline_fw import wire

    rate = 16000
    n = np.arange(int(0.02 * rate))
    pulse = 9000 * np.exp(-n / (0.002 * rate)) * np.sin(2 * np.pi * 1500 * n / rate)

    def audio():
        rng = np.random.default_rng(0)
        for k in range(minutes * 60):
            x = rng.normal(0, 30, rate)
            if k % 97 == 30:
                x[rate // 3:rate // 3 + len(n)] += pulse
            yield np.clip(x, -32768, 32767).astype(np.int16)

    with tempfile.TemporaryDirectory() as root:
        fakehw.write_config(root, sensor_id="soak", lat_deg=40.44, lon_deg=-79.99, alt_m=300.0)
        board = fakehw.FakeBoard(root, audio=audio(), crystal_ppm=-37.0, drift_ppm_per_s=0.001,
                                 i2s_latency_s=0.003)
        dec = wire.StreamDecoder()
        seen = {}
        t0 = time.monotonic()
        for _ in range(minutes * 60 // 10):
            board.advance(10)
            for f in dec.feed(board.usb.host_read()):
                if f.type == wire.TRIGGER:
                    t = f.json()
                    board.command(wire.ACK, {"seqs": [t["seq"]]})
                    truth = board.sample_utc_s(t["onset_sample"] + t["onset_frac"])
                    seen[t["seq"]] = ((wire.trigger_record(t)["onset_utc_s"] - truth) * 1e6, t["time_unc_us"])
        wall = time.monotonic() - t0
    err = np.array([e for e, _ in seen.values()])
    ratio = np.array([abs(e) / u for e, u in seen.values()])
    print("time accuracy, fake hardware, %d min (crystal -37 ppm, IRQ latency 0-3 ms, tick wraps):" % minutes)
    print("  %d triggers: onset UTC error mean %+.1f us, max |error| %.1f us, max |error|/time_unc_us %.1f"
          % (len(err), err.mean(), np.abs(err).max(), ratio.max()))
    print("  simulated %d s in %.1f s of wall time (%.0fx real time)" % (minutes * 60, wall, minutes * 60 / wall))


if __name__ == "__main__":
    sys.exit(main())
