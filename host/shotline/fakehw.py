"""Fake sensor hardware: run the real firmware app (``shotline_fw.app``) on the host.

A discrete-event simulation of one board.  Simulated true time ``t_s``
(seconds since power-on) advances only when the host loop says so, so a
virtual sensor runs as fast as the CPU allows (``advance``) or paced to the
wall clock (``run_realtime``).  Events, in time order:

- I2S: a block of ``block_samples`` is complete every ``block_samples / rate``
  seconds *of the board's crystal*; its IRQ runs after a random latency
  (``i2s_latency_s``).  Audio comes from a numpy array, a sound file, or an
  iterable of int16 arrays; the board's sample k is the source's sample k
  (24-bit words in 32-bit slots, as the INMP441).  After the source ends the
  microphone hears silence (plus ``noise_lsb`` of white noise).
- GPS: a PPS edge at every true UTC second (``pps_enabled``, ``gps_fix`` can
  drop it), and the RMC/GGA/ZDA sentences naming that second on the UART
  ``nmea_delay_s`` later.
- The MCU clock (``ticks_us``/``ticks_ms``, wrapping at 2**30 like MicroPython)
  and the sample clock share one crystal, off by ``crystal_ppm``
  (plus ``drift_ppm_per_s`` of slow drift).
- USB: ``usb`` is any object with ``read() -> bytes`` (non-blocking) and
  ``write(bytes)``: by default a ``FakeUSB`` (``host_write``/``host_read``),
  or e.g. ``shotline.virtual.PtyPort`` to expose the board on a pty.

Storage is a host directory (``root``): the firmware's ``config.json``,
``state.json`` and ``outbox.bin`` live there, so ``reboot()`` (or a new
``FakeBoard`` on the same folder) finds them again, as after a power cycle.

>>> import tempfile, numpy as np
>>> root = tempfile.mkdtemp()
>>> write_config(root, sensor_id="S1", lat_deg=40.0, lon_deg=-80.0, alt_m=300.0)
>>> board = FakeBoard(root, audio=np.zeros(16000, dtype=np.int16))
>>> board.advance(3.0)
>>> board.app.mode, board.app.time_status()["time_quality"]
('run', 'pps')
"""
import heapq
import json
import math
import os
import time as _time
from pathlib import Path

import numpy as np

from shotline_fw import detconfig, wire
from shotline_fw.app import App
from shotline_fw.detector import MAX_OUT, RAW_N
from shotline_fw.priv_install import install as install_privacy

_PERIOD = 1 << 30


class SimClock:
    """MicroPython-style tick functions driven by simulated true time."""

    def __init__(self, crystal_ppm=0.0, drift_ppm_per_s=0.0, ticks_offset_us=0):
        self.t_s = 0.0
        self.crystal_ppm = crystal_ppm
        self.drift_ppm_per_s = drift_ppm_per_s
        self.ticks_offset_us = ticks_offset_us

    def mcu_s(self, t_s=None):
        """The board's crystal time at true time ``t_s`` (seconds)."""
        t = self.t_s if t_s is None else t_s
        return t * (1 + self.crystal_ppm * 1e-6) + 0.5e-6 * self.drift_ppm_per_s * t * t

    def true_s(self, mcu_s):
        """Inverse of ``mcu_s`` (true seconds when the crystal read ``mcu_s``)."""
        a = 0.5e-6 * self.drift_ppm_per_s
        b = 1 + self.crystal_ppm * 1e-6
        if a == 0:
            return mcu_s / b
        return (-b + math.sqrt(b * b + 4 * a * mcu_s)) / (2 * a)

    def ticks_us(self):
        return (int(self.mcu_s() * 1e6) + self.ticks_offset_us) % _PERIOD

    def ticks_ms(self):
        return (int(self.mcu_s() * 1e3) + self.ticks_offset_us // 1000) % _PERIOD

    @staticmethod
    def ticks_diff(a, b):
        return ((a - b + _PERIOD // 2) % _PERIOD) - _PERIOD // 2

    @staticmethod
    def ticks_add(t, delta):
        return (t + delta) % _PERIOD


class FakeUSB:
    """The board's USB serial: ``read``/``write`` for the firmware, ``host_*`` for the host."""

    def __init__(self):
        self._to_board = bytearray()
        self._to_host = bytearray()
        self.connected = True

    def read(self, n=4096):
        data = bytes(self._to_board[:n])
        del self._to_board[:n]
        return data

    def write(self, data):
        if self.connected:
            self._to_host += data
        return len(data)

    def host_write(self, data):
        self._to_board += data

    def host_read(self):
        data = bytes(self._to_host)
        self._to_host.clear()
        return data


class FakeI2S:
    """``machine.I2S`` in non-blocking RX mode (``irq`` + ``readinto``)."""

    def __init__(self):
        self.handler = None
        self.buf = None

    def irq(self, handler):
        self.handler = handler

    def readinto(self, buf):
        self.buf = buf
        return 0


class FakeUART:
    def __init__(self):
        self._rx = bytearray()

    def feed(self, data):
        self._rx += data

    def read(self):
        if not self._rx:
            return None
        data = bytes(self._rx)
        self._rx.clear()
        return data


class FakeLED:
    def __init__(self):
        self.state = 0
        self.toggles = 0

    def value(self, v=None):
        if v is None:
            return self.state
        if v != self.state:
            self.toggles += 1
        self.state = v


class FakeWDT:
    """Watchdog: ``expired`` once ``timeout_s`` of simulated time pass without ``feed``."""

    def __init__(self, clock, timeout_s=8.0):
        self.clock = clock
        self.timeout_s = timeout_s
        self.last_feed_s = clock.t_s
        self.feeds = 0

    def feed(self):
        self.last_feed_s = self.clock.t_s
        self.feeds += 1

    @property
    def expired(self):
        return self.clock.t_s - self.last_feed_s > self.timeout_s


class CffiDetector:
    """The detector engine on the host: ``shotline._impulse`` with the natmod's interface.

    ``CffiDetector(config_tuple)``; ``process(int16_buffer, out) -> n`` writes
    ``n`` raw triggers (``shotline_fw.detector.RAW_ORDER``) into ``out``;
    ``dropped()``.
    """

    def __init__(self, config):
        from shotline._impulse import ffi, lib

        self._ffi, self._lib = ffi, lib
        cfg = ffi.new("impulse_config_t *")
        for name, value in zip(detconfig.FIELDS, config):
            setattr(cfg, name, value)
        self._state = ffi.new("impulse_state_t *")
        if lib.impulse_init(self._state, cfg) != lib.IMPULSE_OK:
            raise ValueError("impulse_init rejected the configuration")
        self._trig = ffi.new("impulse_trigger_t[]", MAX_OUT)

    def process(self, samples, out):
        buf = np.frombuffer(samples, dtype=np.int16)
        n = self._lib.impulse_process(self._state, self._ffi.from_buffer("int16_t[]", buf),
                                      len(buf), self._trig, min(MAX_OUT, len(out) // RAW_N))
        for i in range(n):
            t = self._trig[i]
            vals = (t.onset_sample, t.trigger_sample, t.peak_sample, t.band_energy[0],
                    t.band_energy[1], t.band_energy[2], t.onset_frac_q16, t.peak_abs,
                    t.noise_q16, t.sta_peak_q16, t.sta_trigger_q16, t.width_n, t.decay_n,
                    t.measure_n, t.clipped)
            out[i * RAW_N:(i + 1) * RAW_N] = __import__("array").array("q", vals)
        return n

    def dropped(self):
        return int(self._lib.impulse_dropped(self._state))


def numpy_convert(raw, dst, shift):
    """A numpy twin of ``Capture._convert`` and the natmod's ``impulse.convert``."""
    w = np.frombuffer(raw, dtype="<i4")
    np.frombuffer(dst, dtype=np.int16)[:] = np.clip(w >> shift, -32768, 32767)


def write_config(root, **settings):
    """Write ``config.json`` into ``root`` (the fake flash)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / "config.json").write_text(json.dumps(settings))


def _nmea(body):
    c = 0
    for ch in body.encode():
        c ^= ch
    return ("$%s*%02X\r\n" % (body, c)).encode()


def nmea_sentences(utc_s, fix=True, lat_deg=40.4406, lon_deg=-79.9959, alt_m=300.0, sats=9):
    """RMC, GGA and ZDA (bytes) naming UTC second ``utc_s``."""
    tm = _time.gmtime(utc_s)
    hms = "%02d%02d%02d.00" % (tm.tm_hour, tm.tm_min, tm.tm_sec)
    la, lo = abs(lat_deg), abs(lon_deg)
    lat = "%02d%08.5f,%s" % (int(la), (la - int(la)) * 60, "N" if lat_deg >= 0 else "S")
    lon = "%03d%08.5f,%s" % (int(lo), (lo - int(lo)) * 60, "E" if lon_deg >= 0 else "W")
    date = "%02d%02d%02d" % (tm.tm_mday, tm.tm_mon, tm.tm_year % 100)
    if not fix:
        return _nmea("GPRMC,%s,V,,,,,,,%s,,,N" % (hms, date)) + _nmea("GPGGA,%s,,,,,0,00,99.99,,,,,," % hms)
    return (_nmea("GPRMC,%s,A,%s,%s,0.0,0.0,%s,,,A" % (hms, lat, lon, date))
            + _nmea("GPGGA,%s,%s,%s,1,%02d,0.9,%.1f,M,-33.0,M,," % (hms, lat, lon, sats, alt_m))
            + _nmea("GPZDA,%s,%02d,%02d,%04d,00,00" % (hms, tm.tm_mday, tm.tm_mon, tm.tm_year)))


class _Hardware:
    """What ``App`` needs, for one boot of the fake board."""

    def __init__(self, board):
        self._board = board
        self.clock = board.clock
        self.root = str(board.root)
        self.sd_root = str(board.sd_root) if board.sd_root else None
        self.usb = board.usb
        self.led = board.led
        self.wdt = board.wdt
        self.unique_id = board.unique_id
        self.reset_cause = board.reset_cause
        if board.fast_convert:
            self.convert_i2s = numpy_convert

    def open_i2s(self, sample_rate_hz, block_samples):
        return self._board._open_i2s(sample_rate_hz, block_samples)

    def open_uart(self, baud):
        return self._board.uart

    def attach_pps(self, handler):
        self._board.pps_handler = handler

    def make_detector(self, config):
        return self._board.detector_factory(config)

    def mem_free(self):
        return None

    def temp_c(self):
        return self._board.temp_c

    def reset(self):
        self._board.reset_requested = True


class FileCard:
    """A raw SD card as a sparse file: MicroPython's block-device protocol.

    ``readblocks(n, buf)``/``writeblocks(n, buf)`` move whole 512-byte
    blocks; ``ioctl(4)`` gives the block count, ``ioctl(5)`` the block size.
    Unwritten blocks read as zeros.  This is the part of the card the audio
    ring owns (on the board, ``boot.py`` keeps the first 64 MiB for FAT).
    """

    BLOCK_BYTES = 512

    def __init__(self, path, n_blocks):
        self.path = str(path)
        self.n_blocks = int(n_blocks)
        mode = "r+b" if os.path.exists(self.path) else "w+b"
        self._f = open(self.path, mode)
        self._f.truncate(self.n_blocks * self.BLOCK_BYTES)

    def _seek(self, n, buf):
        if n < 0 or n * self.BLOCK_BYTES + len(buf) > self.n_blocks * self.BLOCK_BYTES:
            raise OSError(22, "block out of range")
        self._f.seek(n * self.BLOCK_BYTES)

    def readblocks(self, n, buf):
        self._seek(n, buf)
        self._f.readinto(memoryview(buf))

    def writeblocks(self, n, buf):
        self._seek(n, buf)
        self._f.write(buf)
        self._f.flush()

    def ioctl(self, op, arg):
        if op == 4:
            return self.n_blocks
        if op == 5:
            return self.BLOCK_BYTES
        return 0

    def close(self):
        self._f.close()


class FakeBoard:
    """One simulated sensor running the real firmware ``App``.

    ``root``: folder standing for the flash file system (holds config.json).
    ``audio``: int16 numpy array, a sound file path (first channel), or an
    iterable of int16 arrays; None = silence.  ``utc0_s``: true UTC (POSIX
    seconds) at power-on.  ``crystal_ppm``: the board's crystal error.
    ``sd_card``: a raw card (e.g. ``FileCard``) for the privacy modules --
    the 72-hour audio ring, snippets and signed commands are installed at
    every boot, as ``firmware/main.py`` does; None = a board with no card.
    """

    def __init__(self, root, audio=None, *, utc0_s=1545094000.25, crystal_ppm=25.0,
                 drift_ppm_per_s=0.0, i2s_latency_s=0.002, nmea_delay_s=0.12,
                 pps_jitter_s=20e-9, noise_lsb=0.0, usb=None, unique_id=b"\xe6\x61\x38\x52\x83\x4a\x2b\x21",
                 sd_root=None, detector_factory=CffiDetector, seed=0, fast_convert=True,
                 reset_cause="power", ticks_offset_us=0, sd_card=None):
        self.root = Path(root)
        self.sd_root = sd_root
        self.sd_card = sd_card
        self.utc0_s = utc0_s
        self.clock = SimClock(crystal_ppm, drift_ppm_per_s, ticks_offset_us)
        self.i2s_latency_s = i2s_latency_s
        self.nmea_delay_s = nmea_delay_s
        self.pps_jitter_s = pps_jitter_s
        self.noise_lsb = noise_lsb
        self.usb = usb if usb is not None else FakeUSB()
        self.unique_id = unique_id
        self.detector_factory = detector_factory
        self.rng = np.random.default_rng(seed)
        self.fast_convert = fast_convert
        self.led = FakeLED()
        self.uart = FakeUART()
        self.temp_c = 21.5
        self.pps_enabled = True
        self.gps_fix = True
        self.pps_without_fix = False   # True: PPS keeps pulsing when the fix is lost
        self.gps_position = (40.4406, -79.9959, 300.0)
        self.polls = 0
        self.polling = True      # False: the main loop is stuck, IRQs still run
        self.loop_period_s = 0.02  # the main loop runs at least this often
        self._set_audio(audio)
        self.reset_cause = reset_cause
        self.boot()

    # -- audio source ----------------------------------------------------------
    def _set_audio(self, audio):
        if audio is None:
            self._chunks = iter(())
        elif isinstance(audio, (str, os.PathLike)):
            import soundfile as sf
            data, _ = sf.read(str(audio), dtype="int16", always_2d=True)
            self._chunks = iter([data[:, 0].copy()])
        elif isinstance(audio, np.ndarray):
            self._chunks = iter([np.asarray(audio, dtype=np.int16)])
        else:
            self._chunks = iter(audio)
        self._pending = np.zeros(0, dtype=np.int16)
        self.audio_exhausted = False

    def _next_samples(self, n):
        while len(self._pending) < n:
            try:
                chunk = np.asarray(next(self._chunks))
            except StopIteration:
                self.audio_exhausted = True
                fill = self.rng.normal(0, self.noise_lsb, n).round() if self.noise_lsb else np.zeros(n)
                chunk = fill.astype(np.int16)
            if chunk.dtype != np.int16:
                raise TypeError("audio must be int16, got %s" % chunk.dtype)
            self._pending = np.concatenate([self._pending, chunk])
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    # -- life cycle ------------------------------------------------------------------
    def boot(self):
        """Power on (or reset): a fresh App on the same storage."""
        self._events = []
        self._n_event = 0
        self.i2s = None
        self.pps_handler = None
        self.reset_requested = False
        self.wdt = FakeWDT(self.clock)
        self.hw = _Hardware(self)
        self.boot_t_s = self.clock.t_s
        self.app = App(self.hw)
        self.privacy = None
        if self.sd_card is not None:
            self.privacy = install_privacy(self.app, self.sd_card, root=str(self.root), first_block=0)
        self._push(self.clock.t_s + self.loop_period_s, self._tick, None)
        next_second = math.floor(self.utc0_s + self.clock.t_s) + 1
        self._push(next_second - self.utc0_s, self._gps_second, next_second)

    def reboot(self, cause="soft"):
        """Reset the board: the app closes its files (as on Ctrl-C/reset) and boots again."""
        self.app.close()
        self.reset_cause = cause
        self.boot()

    def power_cut(self):
        """Lose power without closing anything, then boot again."""
        self.reset_cause = "power"
        self.boot()

    def _open_i2s(self, rate_hz, block_samples):
        self.i2s = FakeI2S()
        self.rate_hz = rate_hz
        self.block_samples = block_samples
        self._block_k = 0
        self._sample0 = self.clock.mcu_s()      # crystal time of sample 0
        self._push(self._block_true_s(1), self._i2s_block, 1)
        return self.i2s

    def _block_true_s(self, k):
        """True time when block k-1 (samples up to k*block) is complete."""
        return self.clock.true_s(self._sample0 + k * self.block_samples / self.rate_hz)

    def sample_utc_s(self, sample_index):
        """True UTC of a sample index of the current boot (test oracle)."""
        return self.utc0_s + self.clock.true_s(self._sample0 + sample_index / self.rate_hz)

    # -- events ------------------------------------------------------------------------
    def _push(self, t_s, fn, arg):
        self._n_event += 1
        heapq.heappush(self._events, (t_s, self._n_event, fn, arg))

    def _i2s_block(self, k):
        samples = self._next_samples(self.block_samples).astype(np.int32)
        low = self.rng.integers(0, 256, self.block_samples, dtype=np.int32) << 8
        words = (samples << 16) | low
        if self.i2s.buf is not None and self.i2s.handler is not None:
            self.i2s.buf[:] = words.astype("<i4").tobytes()
            self.i2s.handler(self.i2s)
        done = self._block_true_s(k + 1)
        self._push(done + self.rng.uniform(0, self.i2s_latency_s), self._i2s_block, k + 1)

    def _tick(self, _):
        """The main loop also spins when no IRQ happened."""
        self._push(self.clock.t_s + self.loop_period_s, self._tick, None)

    def _gps_second(self, utc_s):
        if (self.gps_fix or self.pps_without_fix) and self.pps_enabled and self.pps_handler is not None:
            self.pps_handler(None)
        self._push(self.clock.t_s + self.nmea_delay_s, self._nmea, (utc_s, self.gps_fix))
        self._push(utc_s + 1 - self.utc0_s + self.rng.normal(0, self.pps_jitter_s),
                   self._gps_second, utc_s + 1)

    def _nmea(self, arg):
        utc_s, fix = arg
        lat, lon, alt = self.gps_position
        self.uart.feed(nmea_sentences(utc_s, fix, lat, lon, alt))

    def advance(self, dt_s):
        """Run the simulation for ``dt_s`` seconds of true time (as fast as possible)."""
        end = self.clock.t_s + dt_s
        while self._events and self._events[0][0] <= end:
            t, _, fn, arg = heapq.heappop(self._events)
            self.clock.t_s = max(self.clock.t_s, t)
            fn(arg)
            self._poll()
        self.clock.t_s = end
        self._poll()

    def _poll(self):
        if not self.polling:
            return
        self.app.poll()
        self.polls += 1
        if self.reset_requested:
            self.reboot("soft")

    def run_realtime(self, duration_s, speed=1.0, step_s=0.01, stop=None):
        """Advance paced to the wall clock (``speed`` x real time) until ``duration_s``
        or until ``stop()`` returns true."""
        start_wall = _time.monotonic()
        start_sim = self.clock.t_s
        while self.clock.t_s - start_sim < duration_s and not (stop and stop()):
            self.advance(step_s)
            ahead = (self.clock.t_s - start_sim) / speed - (_time.monotonic() - start_wall)
            if ahead > 0:
                _time.sleep(ahead)

    # -- host side helpers ------------------------------------------------------------
    def frames(self):
        """Frames the board sent since the last call (FakeUSB only)."""
        if not hasattr(self, "_decoder"):
            self._decoder = wire.StreamDecoder()
        return self._decoder.feed(self.usb.host_read())

    def command(self, msg_type, body=None, seq=1):
        """Send one command frame from the host (FakeUSB only)."""
        if isinstance(body, (bytes, bytearray)):
            self.usb.host_write(wire.encode_frame(msg_type, seq, bytes(body)))
        else:
            self.usb.host_write(wire.encode_json(msg_type, seq, body or {}))
