"""Detector speed (make bench).

1. Host: throughput of the C detector through cffi on 60 s of 16 kHz noise
   with a shot every second, in Msamples/s and as a multiple of real time.
2. Cortex-M0: instructions per sample of impulse_process, measured under QEMU
   (machine microbit, nRF51 Cortex-M0) with -icount shift=0, where one
   instruction takes 1 ns of virtual time and TIMER0 (16 MHz) counts them.
   The loop that makes the input is measured separately and subtracted.
   Skipped with a message when arm-none-eabi-gcc or qemu-system-arm is missing.
"""
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shotline.detect import ImpulseDetector
from shotline_fw import detconfig

ROOT = Path(__file__).resolve().parents[1]
BENCH_C = ROOT / "native" / "bench"


def host(rate=16000, seconds=60, block=256):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 300, rate * seconds)
    t = np.arange(int(0.003 * rate)) / rate
    for s in range(1, seconds):
        i = s * rate
        x[i:i + len(t)] += 12000 * (1 - t / 0.003) * np.exp(-t / 0.003)
    x = np.clip(x, -32768, 32767).astype(np.int16)
    best = {}
    for name, bs in (("one call", len(x)), ("%d-sample blocks" % block, block)):
        runs = []
        for _ in range(3):
            det = ImpulseDetector(rate)
            t0 = time.perf_counter()
            n_trig = 0
            for i in range(0, len(x), bs):
                n_trig += len(det.process(x[i:i + bs]))
            runs.append(time.perf_counter() - t0)
        best[name] = (min(runs), n_trig)
    for name, (dt, n_trig) in best.items():
        msps = len(x) / dt / 1e6
        print("host, %s: %.1f Msamples/s = %.0fx real time at %d Hz (%d triggers in %d s)"
              % (name, msps, msps * 1e6 / rate, rate, n_trig, seconds))


def m0(rate=16000):
    gcc, qemu = shutil.which("arm-none-eabi-gcc"), shutil.which("qemu-system-arm")
    if not gcc or not qemu:
        print("cortex-m0: skipped (needs arm-none-eabi-gcc and qemu-system-arm: make toolchain)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "m0_config.h").write_text(", ".join(str(v) for v in detconfig.config(rate)) + "\n")
        elf = tmp / "bench.elf"
        subprocess.run([gcc, "-mcpu=cortex-m0plus", "-mthumb", "-Os", "-std=c99", "-ffreestanding",
                        "-nostartfiles", "-I", str(tmp), "-I", str(ROOT / "native"),
                        "-T", str(BENCH_C / "m0.ld"), str(BENCH_C / "m0_bench.c"),
                        str(ROOT / "native" / "impulse.c"), "-o", str(elf), "-lgcc", "-lc"],
                       check=True)
        res = subprocess.run([qemu, "-M", "microbit", "-nographic", "-monitor", "none",
                              "-serial", "none", "-semihosting", "-icount", "shift=0",
                              "-kernel", str(elf)], capture_output=True, text=True, timeout=120)
    fields = (res.stdout + res.stderr).split()
    if len(fields) < 6:
        print("cortex-m0: emulator gave no result: %r" % (res.stdout + res.stderr)[:200])
        return
    n, shots, quiet, base, n_trig, n_quiet = (int(v) for v in fields[:6])
    insn = lambda ticks: (ticks - base) * 62.5 / n  # 16 MHz timer, 1 ns per instruction
    print("cortex-m0 (qemu microbit, -icount shift=0), %d samples at %d Hz:" % (n, rate))
    print("  noise only: %.0f instructions/sample (%d triggers)" % (insn(quiet), n_quiet))
    print("  a shot every 256 ms: %.0f instructions/sample (%d triggers, onset pick and "
          "features included)" % (insn(shots), n_trig))
    print("  target <= 200 cycles/sample; %.1f %% of one 133 MHz RP2040 core at %.0f "
          "instructions/sample" % (100 * insn(shots) * rate / 133e6, insn(shots)))

if __name__ == "__main__":
    host()
    m0()
    sys.exit(0)
