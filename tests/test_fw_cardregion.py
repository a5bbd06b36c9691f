"""The card split: FAT on the first 64 MiB, the raw audio ring on the rest."""
import numpy as np
import pytest

from shotline.fakehw import FileCard
from shotline_fw.audiobuf import AudioRing
from shotline_fw.cardregion import BLOCK_BYTES, FAT_BLOCKS, CardRegion, fat_region

REGION_SCRIPT = """
from shotline_fw.cardregion import CardRegion

class Ram:
    def __init__(self, n):
        self.b = bytearray(512 * n)
    def readblocks(self, n, buf, offset=0):
        buf[:] = self.b[n * 512 + offset:n * 512 + offset + len(buf)]
    def writeblocks(self, n, buf, offset=0):
        self.b[n * 512 + offset:n * 512 + offset + len(buf)] = buf
    def ioctl(self, op, arg):
        return len(self.b) // 512 if op == 4 else 0

dev = Ram(8)
r = CardRegion(dev, 2, 3)
assert r.ioctl(4, 0) == 3 and r.ioctl(5, 0) == 512
r.writeblocks(0, bytes([7]) * 512)
r.writeblocks(2, bytes([9]) * 512)
r.writeblocks(1, b"xy", 10)
assert dev.b[2 * 512] == 7 and dev.b[4 * 512] == 9 and dev.b[3 * 512 + 10:3 * 512 + 12] == b"xy"
assert dev.b[:1024] == bytes(1024) and dev.b[5 * 512:] == bytes(3 * 512)
for n, size in ((3, 512), (2, 1024), (-1, 512)):
    try:
        r.writeblocks(n, bytearray(size))
        raise SystemExit("out-of-region write accepted")
    except OSError:
        pass
print("ok")
"""


def test_region_maps_and_bounds_blocks_under_micropython(micropython):
    out = micropython(REGION_SCRIPT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_region_maps_and_bounds_blocks_under_cpython(tmp_path):
    card = FileCard(tmp_path / "card.img", 8)
    region = CardRegion(card, 2, 3)
    region.writeblocks(1, bytes([5]) * BLOCK_BYTES)
    back = bytearray(BLOCK_BYTES)
    card.readblocks(3, back)
    assert back == bytes([5]) * BLOCK_BYTES
    with pytest.raises(OSError):
        region.readblocks(3, bytearray(BLOCK_BYTES))


def test_fat_part_and_ring_never_overlap(tmp_path):
    """A full FAT part and a wrapped ring leave each other's blocks intact."""
    ring_blocks = 2 * (512 + 1) + 64
    card = FileCard(tmp_path / "card.img", FAT_BLOCKS + ring_blocks)
    fat = fat_region(card)
    assert fat.ioctl(4, 0) == FAT_BLOCKS
    fat.writeblocks(FAT_BLOCKS - 1, bytes([0xFA]) * BLOCK_BYTES)   # the FAT part's last block
    rate_hz = 16000
    ring = AudioRing(card, rate_hz, lambda i: 1_700_000_000_000_000 + i * 1_000_000 // rate_hz,
                     first_block=FAT_BLOCKS)
    ring.mount(now_utc_us=1_700_000_000_000_000)
    block = np.arange(256, dtype=np.int16)
    for k in range(3 * 512 * 512 // 256):          # more than the ring holds: it wraps
        ring.write(block, k * 256)
    last = bytearray(BLOCK_BYTES)
    card.readblocks(FAT_BLOCKS - 1, last)
    assert last == bytes([0xFA]) * BLOCK_BYTES
    with pytest.raises(OSError):
        fat.writeblocks(FAT_BLOCKS, bytes(BLOCK_BYTES))
