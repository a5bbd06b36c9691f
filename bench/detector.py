"""Detector speed (make bench).

1. Host: throughput of the C detector through cffi on 60 s of 16 kHz noise
   with a shot every second, in Msamples/s and as a multiple of real time
   (best of 3; one core; the machine may be shared, so figures vary).
2. Cortex-M0: instructions per sample of impulse_process, measured under QEMU
   (machine microbit, nRF51 Cortex-M0) with -icount shift=0, where one
   instruction takes 1 ns of virtual time and TIMER0 (16 MHz) counts them.
   The loop that makes the input is measured separately and subtracted.
   Then cycles: QEMU logs every executed instruction (-singlestep -d exec);
   each executed detector instruction (and the libgcc/libc helpers it calls)
   is weighted by the Cortex-M0+ cycle table (loads/stores 2, taken branches
   2, BL 3, PUSH/POP 1+N, single-cycle multiply as on the RP2040, zero wait
   states), for -Os (the make cross build) and -O2.
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


def host(rate=16000, seconds=60):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 300, rate * seconds)
    t = np.arange(int(0.003 * rate)) / rate
    for s in range(1, seconds):
        i = s * rate
        x[i:i + len(t)] += 12000 * (1 - t / 0.003) * np.exp(-t / 0.003)
    x = np.clip(x, -32768, 32767).astype(np.int16)
    best = {}
    for name, bs in (("one call", len(x)), ("4096-sample blocks", 4096),
                     ("256-sample blocks (the board's DMA size)", 256)):
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


# Cortex-M0+ cycle counts (ARM DDI 0484, "Cortex-M0+ instruction summary"),
# with the single-cycle multiplier the RP2040 has and zero-wait-state memory.
_COND = {"beq", "bne", "bcs", "bhs", "bcc", "blo", "bmi", "bpl", "bvs", "bvc", "bhi", "bls",
         "bge", "blt", "bgt", "ble"}


def _cycles(mnemonic, operands, taken):
    m = mnemonic.split(".")[0]
    regs = operands.count(",") + 1 if "{" in operands else 0
    if m in _COND:
        return 2 if taken else 1
    if m in ("b",):
        return 2
    if m == "bl":
        return 3
    if m in ("bx", "blx"):
        return 2
    if m == "push" or m.startswith("stm"):
        return 1 + regs
    if m == "pop":
        return 3 + regs if "pc" in operands else 1 + regs
    if m.startswith("ldm"):
        return 1 + regs
    if m.startswith(("ldr", "str")):
        return 2
    return 1


def _build(gcc, tmp, rate, blocks, only_run=None, opt="-Os"):
    (tmp / "m0_config.h").write_text(", ".join(str(v) for v in detconfig.config(rate)) + "\n")
    elf = tmp / ("bench%s.elf" % ("" if only_run is None else only_run))
    defs = ["-DBLOCKS=%d" % blocks] + ([] if only_run is None else ["-DONLY_RUN=%d" % only_run])
    subprocess.run([gcc, "-mcpu=cortex-m0plus", "-mthumb", opt, "-std=c99", "-ffreestanding",
                    "-nostartfiles", *defs, "-I", str(tmp), "-I", str(ROOT / "native"),
                    "-T", str(BENCH_C / "m0.ld"), str(BENCH_C / "m0_bench.c"),
                    str(ROOT / "native" / "impulse.c"), "-o", str(elf), "-lgcc", "-lc"],
                   check=True)
    return elf


def _qemu(qemu, elf, *extra):
    res = subprocess.run([qemu, "-M", "microbit", "-nographic", "-monitor", "none",
                          "-serial", "none", "-semihosting", "-icount", "shift=0", *extra,
                          "-kernel", str(elf)], capture_output=True, text=True, timeout=300)
    return [int(v) for v in (res.stdout + res.stderr).split()[:6]]


def _trace_cycles(qemu, elf, tmp):
    """Cycles per detector sample from a one-instruction-per-block exec trace."""
    import re

    objdump = shutil.which("arm-none-eabi-objdump")
    nm = shutil.which("arm-none-eabi-nm")
    syms = {}
    for line in subprocess.run([nm, str(elf)], capture_output=True, text=True).stdout.splitlines():
        addr, _, name = line.split()
        syms[name] = int(addr, 16)
    lo, hi = syms["impulse_state_size"], syms["config"]  # detector + libgcc/libc helpers
    insns = {}
    for line in subprocess.run([objdump, "-d", str(elf)], capture_output=True,
                               text=True).stdout.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+[0-9a-f]{4}(?: [0-9a-f]{4})?\s+(\S+)\s*(.*)", line)
        if m and lo <= int(m.group(1), 16) < hi:
            insns[int(m.group(1), 16)] = (m.group(2), m.group(3))
    log = tmp / "trace.log"
    out = _qemu(qemu, elf, "-singlestep", "-d", "exec,nochain", "-D", str(log))
    pcs = [int(m.group(1), 16) for m in
           re.finditer(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/", log.read_text(), re.M)]
    cycles = instructions = 0
    for pc, nxt in zip(pcs, pcs[1:] + [0]):
        if pc in insns:
            mnemonic, operands = insns[pc]
            cycles += _cycles(mnemonic, operands, nxt != pc + 2)
            instructions += 1
    return out[0], instructions, cycles, out[4]


def m0(rate=16000):
    gcc, qemu = shutil.which("arm-none-eabi-gcc"), shutil.which("qemu-system-arm")
    if not gcc or not qemu:
        print("cortex-m0: skipped (needs arm-none-eabi-gcc and qemu-system-arm: make toolchain)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fields = _qemu(qemu, _build(gcc, tmp, rate, 24))
        if len(fields) < 6:
            print("cortex-m0: the emulator gave no result")
            return
        n, shots, quiet, base, n_trig, n_quiet = fields
        insn = lambda ticks: (ticks - base) * 62.5 / n  # 16 MHz timer, 1 ns per instruction
        print("cortex-m0 (qemu microbit, -icount shift=0), %d samples at %d Hz:" % (n, rate))
        print("  noise only: %.0f instructions/sample (%d triggers)" % (insn(quiet), n_quiet))
        print("  a shot every 256 ms: %.0f instructions/sample (%d triggers; onset pick and "
              "features included)" % (insn(shots), n_trig))
        print("  cycles from an instruction trace (-singlestep -d exec) weighted by the "
              "Cortex-M0+ cycle table, %d-sample runs:" % (8 * 1024))
        for opt in ("-Os", "-O2"):
            per_sample = {}
            for only, label in ((0, "noise only"), (1, "shots every 256 ms, the first in the warm-up")):
                n, ins, cyc, trig = _trace_cycles(qemu, _build(gcc, tmp, rate, 8, only, opt), tmp)
                per_sample[only] = (cyc / n, trig, n)
                print("    %s, %s (%d triggers): %.0f instructions, %.0f cycles/sample "
                      "(target <= 200) = %.1f %% of a 133 MHz core"
                      % (opt, label, trig, ins / n, cyc / n, 100 * cyc / n * rate / 133e6))
            # The first shot falls in the warm-up, so that run has one trigger
            # in 8192 samples: scale its extra cost to one trigger per 4096.
            (quiet_cps, _, _), (shots_cps, trig, n) = per_sample[0], per_sample[1]
            if trig:
                per_trigger = (shots_cps - quiet_cps) * n / trig
                dense = quiet_cps + per_trigger / 4096
                print("    %s: %.0f k cycles per trigger; with a trigger every 4096 samples "
                      "(256 ms): %.0f cycles/sample = %.1f %% of a 133 MHz core"
                      % (opt, per_trigger / 1e3, dense, 100 * dense * rate / 133e6))


if __name__ == "__main__":
    host()
    m0()
    sys.exit(0)
