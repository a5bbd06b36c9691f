"""Shotline sensor: build the real hardware and run the app forever.

Ctrl-C (from a person or ``mpremote``) stops the app cleanly and leaves the
REPL (the watchdog is then fed by a timer); ``mpremote reset`` or a power
cycle starts it again.  A file ``norun`` on the flash makes the board boot
straight to the REPL.
"""
import gc
import select
import sys
import time

import machine
import micropython
from shotline_fw import pins
from shotline_fw.app import App
from shotline_fw.cardregion import fat_region
from shotline_fw.priv_install import install as install_privacy

_RESET_CAUSES = {machine.PWRON_RESET: "power", machine.WDT_RESET: "wdt"}


class Usb:
    """USB CDC serial (sys.stdin/stdout) read without blocking."""

    def __init__(self):
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._buf = bytearray(256)

    def read(self):
        n = 0
        while n < len(self._buf) and self._poll.poll(0):
            self._buf[n] = self._in.read(1)[0]
            n += 1
        return bytes(self._buf[:n]) if n else None

    def write(self, data):
        self._out.write(data)


class Hardware:
    """The Pico's peripherals, as ``shotline_fw.app.App`` expects them."""

    def __init__(self):
        self.clock = time
        self.root = ""
        self.sd_card = None      # the raw card: the audio ring uses it from block 131072
        self.sd_root = None      # its FAT part, mounted at /sd
        self.sd_error = None
        self.open_card()
        self.usb = Usb()
        self.led = machine.Pin(pins.LED, machine.Pin.OUT)
        self.wdt = None
        self.unique_id = machine.unique_id()
        self.reset_cause = _RESET_CAUSES.get(machine.reset_cause(), "soft")
        self._adc = machine.ADC(4)
        try:
            import impulse  # the native module built from native/natmod
            self.convert_i2s = impulse.convert
        except ImportError:
            pass  # make_detector will fail and say so: safe mode

    def open_card(self):
        """Open the dedicated microSD card: FAT on its first 64 MiB at /sd, raw ring on the rest.

        A card whose first 64 MiB hold no file system is formatted there (the
        card belongs to the sensor).  Needs micropython-lib's ``sdcard`` driver
        (``mpremote mip install sdcard``).  No card or no driver: flash only,
        and the heartbeat says so.
        """
        import os
        try:
            import sdcard
            spi = machine.SPI(pins.SD_SPI_ID, baudrate=10_000_000, sck=machine.Pin(pins.SD_SPI_SCK),
                              mosi=machine.Pin(pins.SD_SPI_MOSI), miso=machine.Pin(pins.SD_SPI_MISO))
            card = sdcard.SDCard(spi, machine.Pin(pins.SD_SPI_CS))
        except Exception as exc:  # noqa: BLE001 -- no card or no driver
            self.sd_error = "no SD card: %r" % (exc,)
            return
        fat = fat_region(card)
        try:
            os.mount(fat, "/sd")
        except OSError:
            os.VfsFat.mkfs(fat)
            os.mount(fat, "/sd")
        self.sd_card = card
        self.sd_root = "/sd"

    def open_i2s(self, sample_rate_hz, block_samples):
        return machine.I2S(pins.I2S_ID, sck=machine.Pin(pins.I2S_SCK), ws=machine.Pin(pins.I2S_WS),
                           sd=machine.Pin(pins.I2S_SD), mode=machine.I2S.RX, bits=32,
                           format=machine.I2S.MONO, rate=sample_rate_hz,
                           ibuf=16 * 4 * block_samples)

    def open_uart(self, baud):
        uart = machine.UART(pins.GPS_UART_ID, baudrate=baud, tx=machine.Pin(pins.GPS_UART_TX),
                            rx=machine.Pin(pins.GPS_UART_RX), rxbuf=1024, timeout=0)
        return uart

    def attach_pps(self, handler):
        machine.Pin(pins.GPS_PPS, machine.Pin.IN).irq(handler, trigger=machine.Pin.IRQ_RISING,
                                                      hard=True)

    def make_detector(self, config):
        import impulse  # the native module built from native/natmod
        return impulse.Detector(config)

    def mem_free(self):
        return gc.mem_free()

    def temp_c(self):
        volts = self._adc.read_u16() * 3.3 / 65535
        return 27 - (volts - 0.706) / 0.001721

    def reset(self):
        machine.reset()


def _mounted(path):
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def run():
    hw = Hardware()
    app = App(hw)
    install_privacy(app, hw.sd_card)  # 72-hour ring on the raw card, snippets, signed commands
    wdt_ms = app.cfg["wdt_timeout_ms"] if app.cfg else 8000
    hw.wdt = machine.WDT(timeout=wdt_ms)
    gc.collect()
    try:
        while True:
            app.poll()
            if app.capture is not None and not app.capture.available():
                machine.idle()
    except KeyboardInterrupt:
        app.close()
        # The RP2040 watchdog cannot be stopped: keep feeding it from a soft
        # timer so the REPL (and mpremote) stay usable until the next reset.
        machine.Timer(period=1000, callback=lambda t: hw.wdt.feed())
        print("shotline: stopped (Ctrl-C); REPL")


if not _mounted("norun"):
    micropython.kbd_intr(3)
    run()
