"""A bare board for running ``shotline_fw.app.App`` on the MicroPython interpreter.

Valid MicroPython (the WebAssembly build has no ``machine``); used by the
firmware tests and ``bench/firmware.py``, which mount this folder.  The
caller brings the detector: a class standing in for the natmod ``impulse``.
``hw.i2s.h(hw.i2s)`` fires the I2S IRQ; ``hw.pps`` holds the PPS handlers.
"""
import time


class Obj:
    pass


class USB:
    """The board's USB serial: ``inp`` is what the host sent; ``out`` what the
    board wrote (``keep=False`` only counts bytes in ``n``, allocating nothing)."""

    def __init__(self, keep=True):
        self.keep = keep
        self.out = b""
        self.inp = b""
        self.n = 0

    def read(self):
        d, self.inp = self.inp, b""
        return d or None

    def write(self, b):
        self.n += len(b)
        if self.keep:
            self.out += b


class I2S:
    def irq(self, h):
        self.h = h

    def readinto(self, buf):
        self.buf = buf


class UART:
    def read(self):
        return None


def build(engine, root="/flash", mem_free=None, keep_output=True):
    """The ``hw`` object ``App(hw)`` expects, with ``engine`` as the detector class."""
    hw = Obj()
    hw.clock = time
    hw.root = root
    hw.usb = USB(keep_output)
    hw.led = Obj()
    hw.led.value = lambda v: None
    hw.wdt = None
    hw.unique_id = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    hw.reset_cause = "power"
    hw.i2s = I2S()
    hw.open_i2s = lambda rate, block: hw.i2s
    hw.open_uart = lambda baud: UART()
    hw.pps = []
    hw.attach_pps = hw.pps.append
    hw.make_detector = engine
    hw.mem_free = mem_free
    hw.temp_c = None
    hw.reset = lambda: None
    return hw
