"""Audio capture: I2S IRQ -> ring of int16 blocks; PPS IRQ -> tick stamps.

Valid MicroPython and CPython.  Both IRQ handlers allocate nothing (tested
under ``micropython.heap_lock()``): they index preallocated buffers, do small
integer arithmetic only, and keep every counter below 2**30 (MicroPython's
small-int range) by wrapping.

I2S: the INMP441 sends 24-bit samples left-justified in 32-bit slots.  The
non-blocking ``machine.I2S`` fills ``raw`` (``block_samples`` 32-bit words)
and calls ``i2s_irq``; it converts to int16 = word >> ``shift`` (saturating)
into the next free ring slot, stamps ``ticks_us`` and the block number, and
restarts the read.  When the ring is full the block is dropped and counted in
``overruns`` -- but its samples still count, so sample indices (and therefore
time) never slip.  The main loop takes blocks with ``take()`` / ``release()``.

PPS: ``pps_irq`` (a hard pin IRQ) only stores ``ticks_us`` in a small ring;
the main loop converts the stamps with ``timefit.BlockClock``.
"""
import array

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_WRAP = const(0x3FFFFFFF)   # counters wrap below 2**30 (small ints)
_PPS_N = const(8)           # PPS stamps buffered (power of two)


class Capture:
    """I2S and PPS capture into preallocated buffers.

    ``i2s``: object with ``irq(handler)`` and ``readinto(buf)`` (``machine.I2S``
    in non-blocking mode); ``ticks_us``: the clock function; ``convert``: an
    optional faster ``convert(raw, dst, shift)`` with the same result as
    ``_convert`` (the natmod's ``impulse.convert`` on the board).
    """

    def __init__(self, i2s, block_samples, ring_blocks, shift, ticks_us, convert=None):
        self._i2s = i2s
        self._native = convert
        self._full_shift = shift
        self._ticks_us = ticks_us
        self.block_samples = block_samples
        self._nring = ring_blocks
        self._shift = shift - 8                 # applied to the top 24 bits
        self._raw = bytearray(4 * block_samples)
        self._ring = [array.array("h", bytes(2 * block_samples)) for _ in range(ring_blocks)]
        self._stamp = array.array("i", [0] * ring_blocks)   # ticks_us at completion
        self._number = array.array("i", [0] * ring_blocks)  # block number (wrapped)
        self._head = 0            # blocks stored (wrapped); IRQ writes
        self._tail = 0            # blocks released (wrapped); main loop writes
        self._blocks = 0          # blocks completed, stored or not (wrapped)
        self.overruns = 0         # blocks dropped because the ring was full
        self._pps_t = array.array("i", [0] * _PPS_N)
        self._pps_w = 0           # PPS stamps written (wrapped); IRQ writes
        self._pps_r = 0           # PPS stamps read; main loop writes
        self.pps_overruns = 0
        self._abs_blocks = 0      # main loop: unwrapped block number of the next take
        self._last_number = -1

    def start(self):
        """Register the IRQ and start the first non-blocking read."""
        self._i2s.irq(self.i2s_irq)
        self._i2s.readinto(self._raw)

    # -- IRQ handlers: no allocation --------------------------------------
    def i2s_irq(self, _arg=None):
        t = self._ticks_us()
        h = self._head
        if ((h - self._tail) & _WRAP) >= self._nring:
            self.overruns += 1
        else:
            slot = h % self._nring
            if self._native is not None:
                self._native(self._raw, self._ring[slot], self._full_shift)
            else:
                self._convert(self._raw, self._ring[slot])
            self._stamp[slot] = t
            self._number[slot] = self._blocks
            self._head = (h + 1) & _WRAP
        self._blocks = (self._blocks + 1) & _WRAP
        self._i2s.readinto(self._raw)

    def _convert(self, raw, dst):
        sh = self._shift
        j = 1
        for i in range(self.block_samples):
            v = (raw[j + 2] << 16) | (raw[j + 1] << 8) | raw[j]
            if v & 0x800000:
                v -= 0x1000000
            v >>= sh
            if v > 32767:
                v = 32767
            elif v < -32768:
                v = -32768
            dst[i] = v
            j += 4

    def pps_irq(self, _pin=None):
        t = self._ticks_us()
        w = self._pps_w
        if ((w - self._pps_r) & _WRAP) >= _PPS_N:
            self.pps_overruns += 1
            return
        self._pps_t[w & (_PPS_N - 1)] = t
        self._pps_w = (w + 1) & _WRAP

    # -- main loop ---------------------------------------------------------
    def available(self):
        """Blocks waiting to be taken."""
        return (self._head - self._tail) & _WRAP

    def take(self):
        """``(block, first_sample_index, ticks_us)`` of the oldest block, or None.

        ``block`` is the ring's int16 array: use it before ``release()``.
        """
        if self._head == self._tail:
            return None
        slot = self._tail % self._nring
        number = self._number[slot]
        if self._last_number >= 0:
            self._abs_blocks += (number - self._last_number) & _WRAP
        else:
            self._abs_blocks = number
        self._last_number = number
        return self._ring[slot], self._abs_blocks * self.block_samples, self._stamp[slot]

    def release(self):
        self._tail = (self._tail + 1) & _WRAP

    def pps_stamps(self):
        """PPS ``ticks_us`` stamps captured since the last call (a list)."""
        out = []
        while self._pps_r != self._pps_w:
            out.append(self._pps_t[self._pps_r & (_PPS_N - 1)])
            self._pps_r = (self._pps_r + 1) & _WRAP
        return out

    @property
    def samples(self):
        """Samples captured since start (dropped blocks included)."""
        return ((self._abs_blocks if self._last_number >= 0 else 0)
                + ((self._blocks - max(self._last_number, 0)) & _WRAP)) * self.block_samples
