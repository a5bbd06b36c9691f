"""Fakes for the privacy tests: a RAM/file block device with fault injection
and a deterministic fake microphone.  Valid MicroPython and CPython (the
MicroPython tests put this directory on sys.path)."""


class RamBlockDev:
    """``uos.AbstractBlockDev``-style block device over a bytearray (the raw card image).

    ``fail_writes``/``fail_reads``: raise OSError(5) (EIO) while True;
    ``cut_after_writes``: raise OSError after that many more block writes
    (a power cut: later writes never reach the card).
    """

    def __init__(self, n_blocks, block_bytes=512, fill=0xA5):
        self.block_bytes = block_bytes
        self.n_blocks = n_blocks
        self.image = bytearray(bytes((fill,)) * (n_blocks * block_bytes))
        self.fail_writes = False
        self.fail_reads = False
        self.cut_after_writes = None
        self.blocks_written = 0
        self.blocks_read = 0

    def readblocks(self, n, buf):
        if self.fail_reads:
            raise OSError(5)
        b = self.block_bytes
        if n < 0 or n * b + len(buf) > len(self.image):
            raise OSError(22)
        buf[:] = self.image[n * b:n * b + len(buf)]
        self.blocks_read += len(buf) // b

    def writeblocks(self, n, buf):
        if self.fail_writes:
            raise OSError(5)
        b = self.block_bytes
        if n < 0 or n * b + len(buf) > len(self.image):
            raise OSError(22)
        count = len(buf) // b
        if self.cut_after_writes is not None:
            if self.cut_after_writes < count:
                k = self.cut_after_writes
                self.image[n * b:(n + k) * b] = bytes(buf[:k * b])
                self.cut_after_writes = 0
                raise OSError(5)
            self.cut_after_writes -= count
        self.image[n * b:n * b + len(buf)] = bytes(buf)
        self.blocks_written += count

    def ioctl(self, op, arg):
        if op == 4:
            return self.n_blocks
        if op == 5:
            return self.block_bytes
        return 0


class MissingCard:
    """A card slot with no card: every operation fails like the SD driver does."""

    def readblocks(self, n, buf):
        raise OSError(19)

    def writeblocks(self, n, buf):
        raise OSError(19)

    def ioctl(self, op, arg):
        raise OSError(19)


def mic_samples(first, n, seed=1):
    """Deterministic fake-microphone audio: int16 LE bytes of samples [first, first+n).

    Every sample value is a hash of its index, so any misplaced, lost or
    duplicated sample is detected by comparison."""
    out = bytearray(2 * n)
    for i in range(n):
        k = first + i
        v = ((k * 2654435761 + seed * 40503) >> 7) & 0xFFFF
        out[2 * i] = v & 0xFF
        out[2 * i + 1] = v >> 8
    return out
