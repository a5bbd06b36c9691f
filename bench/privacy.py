"""Privacy figures: ring-buffer write bandwidth (needed vs achieved in the simulated
path), card plan for 72 h, snippet serving cost, and Ed25519 verify time (host build
of the vendored C, and its Cortex-M0+ code size).

Run: ``.venv/bin/python bench/privacy.py`` (part of ``make bench``).
"""
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from audiobuf_helpers import RamBlockDev, mic_samples  # noqa: E402
from shotline_fw import audiobuf, wire  # noqa: E402
from shotline_fw.audiobuf import BLOCK_BYTES, AudioRing  # noqa: E402
from shotline_fw.snippets import SnippetService  # noqa: E402

RATE_HZ = 16000
BLOCK_SAMPLES = 256            # the firmware's I2S block (config default)
SEG_BLOCKS = 512
STAGE_BLOCKS = 8


class CountingDev(RamBlockDev):
    """RamBlockDev that counts write calls (an SD command each)."""

    def __init__(self, n_blocks):
        super().__init__(n_blocks, fill=0)
        self.write_calls = 0

    def writeblocks(self, n, buf):
        self.write_calls += 1
        super().writeblocks(n, buf)


def card_plan():
    print("== card plan (16-bit mono, 512-block segments of 8.192 s, 1 header block each)")
    for rate in (12000, 16000, 24000, 48000):
        n = audiobuf.card_bytes_for(audiobuf.RETENTION_S, rate, SEG_BLOCKS)
        print(f"  {rate:6d} Hz: 72 h needs {n / 1e9:6.2f} GB "
              f"(audio alone {rate * 2 * audiobuf.RETENTION_S / 1e9:.2f} GB)")
    for card_gb in (4, 8, 16, 32):
        slots = audiobuf.plan_slots(int(card_gb * 1e9 * 0.95) // BLOCK_BYTES, RATE_HZ, SEG_BLOCKS)
        hours = slots * SEG_BLOCKS * 256 / RATE_HZ / 3600
        print(f"  {card_gb:3d} GB card (95% usable) at 16 kHz: {slots} slots = {hours:5.1f} h")


def write_bandwidth(seconds=60.0):
    n_slots = 12
    dev = CountingDev(n_slots * (SEG_BLOCKS + 1))
    ring = AudioRing(dev, RATE_HZ, lambda s: 1_545_180_567_000_000 + s * 62,
                     seg_data_blocks=SEG_BLOCKS, stage_blocks=STAGE_BLOCKS)
    ring.mount()
    block = mic_samples(0, BLOCK_SAMPLES)
    n_blocks = int(seconds * RATE_HZ / BLOCK_SAMPLES)
    w0 = dev.blocks_written
    t0 = time.perf_counter()
    for k in range(n_blocks):
        ring.write(block, k * BLOCK_SAMPLES)
    dt = time.perf_counter() - t0
    blocks = dev.blocks_written - w0
    need = RATE_HZ * 2
    print("== ring write path (CPython AudioRing -> RAM block device)")
    print(f"  audio to store:              {need / 1000:.1f} kB/s ({RATE_HZ} Hz x 16 bit)")
    print(f"  card writes incl. headers:   {blocks * BLOCK_BYTES / seconds / 1000:.1f} kB/s, "
          f"{dev.write_calls / seconds:.1f} write commands/s "
          f"(header rewritten every {STAGE_BLOCKS} blocks = "
          f"{STAGE_BLOCKS * BLOCK_BYTES / 2 / RATE_HZ * 1000:.0f} ms)")
    print(f"  achieved (simulated path):   {seconds * need / dt / 1e6:.2f} MB/s of audio = "
          f"{seconds / dt:.0f}x real time; {dt / n_blocks * 1e6:.1f} us per {BLOCK_SAMPLES}-sample block")
    return ring


def snippet_cost(ring):
    svc = SnippetService(ring, RATE_HZ)
    onset = ring.next_sample - 5 * RATE_HZ
    svc.note_trigger(1, onset)
    dev = ring.dev
    r0 = dev.blocks_read
    t0 = time.perf_counter()
    info, chunks = svc.snippet({"trigger_seq": 1})
    n_bytes = sum(len(wire.encode_frame(wire.SNIPPET_CHUNK, 1, body)) for body in chunks)
    dt = time.perf_counter() - t0
    print("== snippet (onset - 2 s .. + 4 s at 16 kHz)")
    print(f"  {info['n_samples']} samples in {info['chunks']} chunks, {n_bytes / 1000:.0f} kB on the "
          f"wire; {dev.blocks_read - r0} card blocks read (each 4 kB stage once, CRC-checked); "
          f"{dt * 1000:.0f} ms on CPython")


class SparseCard:
    """A large card that stores only the blocks written (for mount figures)."""

    def __init__(self, n_blocks):
        self.n_blocks = n_blocks
        self.blocks = {}
        self.reads = 0

    def readblocks(self, n, buf):
        for i in range(len(buf) // BLOCK_BYTES):
            buf[i * BLOCK_BYTES:(i + 1) * BLOCK_BYTES] = self.blocks.get(n + i, bytes(BLOCK_BYTES))
        self.reads += len(buf) // BLOCK_BYTES

    def writeblocks(self, n, buf):
        for i in range(len(buf) // BLOCK_BYTES):
            self.blocks[n + i] = bytes(buf[i * BLOCK_BYTES:(i + 1) * BLOCK_BYTES])

    def ioctl(self, op, arg):
        return {4: self.n_blocks, 5: BLOCK_BYTES}.get(op, 0)


def mount_cost():
    """Boot scan of a full 72-hour card (16 GB, every slot holding a segment)."""
    card = SparseCard(int(16e9) // BLOCK_BYTES)
    n = audiobuf.plan_slots(card.n_blocks, RATE_HZ, SEG_BLOCKS)
    t0_us = 1_545_180_567_000_000
    seg_us = SEG_BLOCKS * 256 * 1_000_000 // RATE_HZ
    buf = bytearray(BLOCK_BYTES)
    for slot in range(n):
        h = audiobuf.Header(slot + 1, 1, slot * SEG_BLOCKS * 256, SEG_BLOCKS * 256, RATE_HZ,
                            t0_us + slot * seg_us, audiobuf.FLAG_UTC | audiobuf.FLAG_TAIL_CLEAN,
                            0, [], [0] * (SEG_BLOCKS // STAGE_BLOCKS))
        audiobuf.pack_header(buf, h)
        card.blocks[slot * (SEG_BLOCKS + 1)] = bytes(buf)
    ring = AudioRing(card, RATE_HZ, None, seg_data_blocks=SEG_BLOCKS, stage_blocks=STAGE_BLOCKS)
    t0 = time.perf_counter()
    summary = ring.mount(now_utc_us=t0_us + n * seg_us)
    dt = time.perf_counter() - t0
    print("== boot scan of a full 72-hour ring (16 GB card, all slots in use)")
    print(f"  {summary['kept']} of {n} segments kept, {card.reads} header blocks read, "
          f"{dt:.2f} s CPU on CPython; on the card add one single-block read each "
          f"(about {card.reads / 1000:.0f} s at 1 ms per read)")


def micropython_write_rate():
    node = shutil.which("node")
    runner = ROOT / "tools" / "mpy-run.mjs"
    if node is None or not runner.exists():
        print("== MicroPython (wasm) write path: skipped (node or tools/mpy-run.mjs missing)")
        return
    script = f"""
import time, array
from audiobuf_helpers import RamBlockDev
from shotline_fw.audiobuf import AudioRing
dev = RamBlockDev(4 * {SEG_BLOCKS + 1}, fill=0)
ring = AudioRing(dev, {RATE_HZ}, None, seg_data_blocks={SEG_BLOCKS}, stage_blocks={STAGE_BLOCKS})
ring.mount()
a = array.array("h", [0] * {BLOCK_SAMPLES})
n = 2000
t0 = time.ticks_us()
for k in range(n):
    ring.write(a, k * {BLOCK_SAMPLES})
dt = time.ticks_diff(time.ticks_us(), t0)
print(dt / n)
"""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    out = subprocess.run([node, str(runner), "--path", str(ROOT / "firmware"), "--path",
                          str(ROOT / "tests"), f.name], capture_output=True, text=True, timeout=300)
    Path(f.name).unlink()
    if out.returncode != 0:
        print("== MicroPython (wasm) write path: failed:", out.stderr.strip()[-300:])
        return
    us = float(out.stdout.split()[-1])
    budget_us = BLOCK_SAMPLES / RATE_HZ * 1e6
    print("== MicroPython (wasm in Node) write path, array('h') blocks as the capture delivers")
    print(f"  {us:.0f} us per {BLOCK_SAMPLES}-sample block of a {budget_us:.0f} us budget "
          f"({us / budget_us * 100:.1f}% of real time; RAM fake card, so card latency excluded)")


def verify_time(n=300):
    from nacl.signing import SigningKey

    from shotline._verify import lib
    from shotline_fw import auth

    sk = SigningKey(bytes(range(32)))
    key = bytes(sk.verify_key)
    msg = wire.signed_message(wire.command_bytes(wire.SNIPPET, b'{"trigger_seq": 123}'), 7,
                              auth.key_id_of(key), bytes(8))
    sig = sk.sign(msg).signature
    assert lib.verify_ed25519(sig, key, msg, len(msg)) == lib.VERIFY_OK
    t0 = time.perf_counter()
    for _ in range(n):
        lib.verify_ed25519(sig, key, msg, len(msg))
    native_us = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        sk.verify_key.verify(msg, sig)
    nacl_us = (time.perf_counter() - t0) / n * 1e6
    print("== Ed25519 verify of a signed SNIPPET command "
          f"({len(msg)}-byte message, {n} runs)")
    print(f"  vendored Monocypher + libsodium SHA-512, host cffi build: {native_us:.0f} us "
          "(includes the small-order key check)")
    print(f"  libsodium via PyNaCl, for reference:                     {nacl_us:.0f} us")


def m0_code_size():
    cc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
    if not cc or not size:
        print("== Cortex-M0+ code size: skipped (arm-none-eabi-gcc missing)")
        return
    native = ROOT / "native"
    srcs = ["verify.c", "monocypher/monocypher.c", "monocypher/sha512/hash_sha512_cp.c"]
    with tempfile.TemporaryDirectory() as d:
        objs = []
        for i, s in enumerate(srcs):
            o = f"{d}/{i}.o"
            subprocess.run([cc, "-std=c99", "-Os", "-mcpu=cortex-m0plus", "-mthumb",
                            "-ffunction-sections", "-fdata-sections", "-DCONFIGURED=1",
                            "-I", str(native), "-I", str(native / "monocypher" / "sha512" / "include"),
                            "-c", str(native / s), "-o", o], check=True)
            objs.append(o)
        # keep only what verify_ed25519 reaches
        elf = f"{d}/verify.elf"
        subprocess.run([cc, "-mcpu=cortex-m0plus", "-mthumb", "-nostartfiles", "-Wl,--gc-sections",
                        "-Wl,-e,verify_ed25519", "-Wl,--undefined=verify_ed25519", *objs,
                        "-o", elf, "-lgcc", "-lc"], check=True, capture_output=True)
        out = subprocess.run([size, elf], capture_output=True, text=True, check=True).stdout
        text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    print("== Cortex-M0+ build of the verifier (-Os, gc-sections, libgcc helpers included)")
    print(f"  code+rodata {text} bytes, data {data}, bss {bss}")


def m0_instructions():
    """Instructions of one verify on ARMv6-M, counted by qemu (-icount shift=0)."""
    cc, qemu = shutil.which("arm-none-eabi-gcc"), shutil.which("qemu-system-arm")
    if not cc or not qemu:
        print("== ARMv6-M instruction count: skipped (arm-none-eabi-gcc or qemu-system-arm missing)")
        return
    native, here = ROOT / "native", ROOT / "bench" / "privacy_m0"
    flags = ["-std=c99", "-Os", "-mcpu=cortex-m0plus", "-mthumb", "-ffunction-sections",
             "-fdata-sections", "-DCONFIGURED=1", "-I", str(native),
             "-I", str(native / "monocypher" / "sha512" / "include")]
    srcs = [here / "m0main.c", native / "verify.c", native / "monocypher" / "monocypher.c",
            native / "monocypher" / "sha512" / "hash_sha512_cp.c"]
    with tempfile.TemporaryDirectory() as d:
        elf = f"{d}/m0.elf"
        subprocess.run([cc, *flags, "-nostartfiles", "-T", str(here / "m0.ld"), "-Wl,--gc-sections",
                        *map(str, srcs), "-o", elf, "-lgcc"], check=True)
        run = subprocess.run([qemu, "-M", "microbit", "-nographic", "-icount", "shift=0",
                              "-semihosting-config", "enable=on,target=native", "-kernel", elf],
                             capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    vals = dict((w[0], int(w[1], 16)) for w in (line.split() for line in out.splitlines())
                if len(w) == 2 and w[0] in ("valid", "verify_ticks", "weak", "weak_key_ticks"))
    assert vals["valid"] == 0 and vals["weak"] == 3, out
    instr = vals["verify_ticks"] * 62.5          # 16 MHz ticks of 1-ns instructions
    weak = vals["weak_key_ticks"] * 62.5
    print("== ARMv6-M (Cortex-M0 in qemu, -icount: 1 instruction = 1 ns), RFC 8032 TEST 1")
    print(f"  one verify: {instr / 1e6:.1f} M instructions, of which the small-order key check "
          f"{weak / 1e6:.1f} M; at 125 MHz and 1.0-1.5 cycles/instruction: "
          f"{instr / 125e6 * 1000:.0f}-{instr * 1.5 / 125e6 * 1000:.0f} ms on the RP2040")


if __name__ == "__main__":
    card_plan()
    ring = write_bandwidth()
    snippet_cost(ring)
    mount_cost()
    micropython_write_rate()
    verify_time()
    m0_code_size()
    m0_instructions()
