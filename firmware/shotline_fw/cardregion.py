"""A window of blocks on a block device: the SD card split in two.

The sensor's microSD card is dedicated to it.  Blocks ``[0, FAT_BLOCKS)``
hold a small FAT file system (mounted at ``/sd``: outbox, logs); blocks from
``FAT_BLOCKS`` on are the raw audio ring (``shotline_fw.audiobuf``), which
never goes through a file system, so expired audio is overwritten in place.
Valid MicroPython and CPython.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

BLOCK_BYTES = const(512)
FAT_BLOCKS = const(131072)          # 64 MiB for the file system; the ring starts here


class CardRegion:
    """``count`` blocks of ``dev`` from block ``first``, as a block device.

    Implements MicroPython's block-device protocol (``readblocks``,
    ``writeblocks``, ``ioctl``), so ``os.VfsFat`` can mount it; blocks outside
    the window raise ``OSError(22)`` instead of touching the rest of the card.
    """

    def __init__(self, dev, first, count):
        if first < 0 or count <= 0:
            raise ValueError("bad region")
        self.dev = dev
        self.first = first
        self.count = count

    def _check(self, n, buf, offset):
        end = n * BLOCK_BYTES + offset + len(buf)
        if n < 0 or end > self.count * BLOCK_BYTES:
            raise OSError(22)

    def readblocks(self, n, buf, offset=0):
        self._check(n, buf, offset)
        if offset:
            return self.dev.readblocks(self.first + n, buf, offset)
        return self.dev.readblocks(self.first + n, buf)

    def writeblocks(self, n, buf, offset=0):
        self._check(n, buf, offset)
        if offset:
            return self.dev.writeblocks(self.first + n, buf, offset)
        return self.dev.writeblocks(self.first + n, buf)

    def ioctl(self, op, arg):
        if op == 4:                 # block count
            return self.count
        if op == 5:                 # block size
            return BLOCK_BYTES
        return self.dev.ioctl(op, arg)


def fat_region(card):
    """The FAT part of a card (its first 64 MiB, or all of a smaller card)."""
    total = card.ioctl(4, 0)
    return CardRegion(card, 0, min(FAT_BLOCKS, total))
