"""The board's end of a pseudo-terminal: a virtual sensor's USB serial port.

``PtyPort`` opens a pty, puts it in raw mode and publishes its slave path
under a stable name (a symlink ``<virtual_dir>/<name>``), so the collector
opens it with pyserial exactly like ``/dev/ttyACM0``.  ``unplug()`` closes the
pty (the host's reads fail, as when a USB cable is pulled) and ``plug()``
makes a new one behind the same stable name.

Writes never block the board: bytes the host has not read yet wait in a
bounded buffer (``max_pending`` bytes); beyond that the oldest are dropped
and counted (``dropped_bytes``), as a USB CDC device drops data nobody reads.
"""
import errno
import os
import select
import threading
import tty

from shotline.ports import virtual_dir


class PtyPort:
    """One pseudo-terminal, board side.  ``path``: the stable name the host opens."""

    def __init__(self, name, folder=None, max_pending=1 << 20):
        self.name = name
        self.folder = virtual_dir() if folder is None else folder
        self.path = os.path.join(str(self.folder), name)
        self.max_pending = max_pending
        self._master = self._slave = None
        self._pending = bytearray()
        self._lock = threading.Lock()
        self.dropped_bytes = 0
        self.plugs = 0

    @property
    def plugged(self):
        return self._master is not None

    @property
    def tty_path(self):
        return os.readlink(self.path) if os.path.islink(self.path) else None

    def plug(self):
        """Create a fresh pty and point the stable name at it."""
        with self._lock:
            self._close_fds()
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line editing, before the host opens it
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self._pending.clear()
            os.makedirs(self.folder, exist_ok=True)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(os.ttyname(slave), tmp)
            os.replace(tmp, self.path)  # atomic: the name is never missing while plugged
            self.plugs += 1
        return self

    def unplug(self):
        """Close the pty like a pulled cable; the stable name disappears."""
        with self._lock:
            self._close_fds()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    close = unplug

    def _close_fds(self):
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def read(self, n=4096):
        """Bytes the host wrote (b"" when none or unplugged); never blocks."""
        with self._lock:
            if self._master is None:
                return b""
            try:
                return os.read(self._master, n)
            except BlockingIOError:
                return b""
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return b""
                raise

    def write(self, data):
        """Queue ``data`` for the host and push as much as the pty takes now."""
        with self._lock:
            if self._master is None:
                self.dropped_bytes += len(data)
                return len(data)
            self._pending += data
            excess = len(self._pending) - self.max_pending
            if excess > 0:
                del self._pending[:excess]
                self.dropped_bytes += excess
            self._flush()
        return len(data)

    def flush(self):
        with self._lock:
            self._flush()

    def _flush(self):
        while self._pending and self._master is not None:
            try:
                n = os.write(self._master, self._pending)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EAGAIN):
                    return
                raise
            del self._pending[:n]

    def wait_readable(self, timeout_s):
        """Block up to ``timeout_s`` until the host has written something."""
        master = self._master
        if master is None:
            return False
        try:
            return bool(select.select([master], [], [], timeout_s)[0])
        except (OSError, ValueError):
            return False

    def __enter__(self):
        return self.plug()

    def __exit__(self, *exc):
        self.unplug()


# -- virtual sensors: the real firmware app behind a pty ----------------------------
def impulse_audio(rate_hz=16000, period_s=1.0, first_s=0.5, peak_dbfs=-6.0, noise_dbfs=-60.0,
                  seed=0, block_s=1.0):
    """An endless int16 stream (blocks of ``block_s``): white noise at ``noise_dbfs`` RMS
    and a gunshot-like impulse (N-wave, 1 ms rise, ~3 ms positive phase, decaying ring)
    every ``period_s`` seconds starting at ``first_s``, peaking at ``peak_dbfs``.

    Sample ``k`` of the stream is at ``k / rate_hz`` seconds; the impulse onsets
    are at ``first_s + i * period_s``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n_block = int(round(block_s * rate_hz))
    t = np.arange(int(0.05 * rate_hz)) / rate_hz
    pulse = np.where(t < 0.001, t / 0.001, np.exp(-(t - 0.001) / 0.003)
                     * np.cos(2 * np.pi * 120 * (t - 0.001)))
    pulse = pulse / np.max(np.abs(pulse)) * 32767 * 10 ** (peak_dbfs / 20)
    noise_rms = 32767 * 10 ** (noise_dbfs / 20)
    k0 = 0
    next_onset = int(round(first_s * rate_hz))
    period = int(round(period_s * rate_hz))
    while True:
        block = rng.normal(0.0, noise_rms, n_block)
        onset = next_onset
        while onset - len(pulse) < k0 + n_block:
            lo, hi = max(onset, k0), min(onset + len(pulse), k0 + n_block)
            if hi > lo:
                block[lo - k0:hi - k0] += pulse[lo - onset:hi - onset]
            if onset + len(pulse) <= k0 + n_block:
                next_onset = onset + period
            onset += period
        yield np.clip(np.round(block), -32768, 32767).astype(np.int16)
        k0 += n_block


class VirtualSensor:
    """A board running the real firmware (``shotline.fakehw.FakeBoard``) on a pty.

    ``root``: its flash (config, outbox); a configuration is written there
    if none exists; ``root/sd`` is its SD card (used when the configuration
    says ``"storage": "sd"``).  ``audio``: as ``FakeBoard`` (array, file,
    iterable of int16 blocks; default ``impulse_audio()``).  The simulated GPS
    says ``utc0_s + clock_error_s`` at power-on (default: now, so onset times
    are comparable with the host clock): ``clock_error_s`` is a GPS time
    error; ``crystal_ppm`` is the board's crystal error, which the firmware's
    PPS fit removes.  ``speed``: simulated
    seconds per wall second (1 = real time).  ``card_mb``: size of the
    file-backed raw SD card ``root/sdcard.img`` that holds the audio ring
    (sparse; 0 = no card, so no audio is kept and snippets are refused).

    ``start()`` runs the board in a thread; ``unplug()``/``plug()`` pull and
    reconnect the cable; ``reboot()`` resets it; ``stop()`` ends it.
    """

    def __init__(self, name, root, *, audio=None, folder=None, position_llh=(40.4406, -79.9959, 300.0),
                 utc0_s=None, clock_error_s=0.0, crystal_ppm=25.0, speed=1.0, step_s=0.01,
                 config=None, seed=0, card_mb=64):
        import time as _t

        self._wall0 = _t.monotonic()  # simulated time 0, before the slow set-up below
        now_s = _t.time()
        from shotline import fakehw

        self.name = name
        self.root = os.path.abspath(str(root))
        self.speed = float(speed)
        self.step_s = float(step_s)
        cfg_path = os.path.join(self.root, "config.json")
        if not os.path.exists(cfg_path):
            lat, lon, alt = position_llh
            fakehw.write_config(self.root, sensor_id=name, lat_deg=lat, lon_deg=lon, alt_m=alt,
                                **(config or {}))
        self.port = PtyPort(name, folder)
        sd_root = os.path.join(self.root, "sd")  # the SD card (config "storage": "sd")
        os.makedirs(sd_root, exist_ok=True)
        utc0 = (now_s if utc0_s is None else utc0_s) + clock_error_s
        card = None
        if card_mb:
            card = fakehw.FileCard(os.path.join(self.root, "sdcard.img"),
                                   int(card_mb * 1024 * 1024) // fakehw.FileCard.BLOCK_BYTES)
        self.board = fakehw.FakeBoard(
            self.root, impulse_audio(seed=seed) if audio is None else audio, usb=self.port,
            utc0_s=utc0, crystal_ppm=crystal_ppm, seed=seed, sd_root=sd_root, sd_card=card)
        self.board.gps_position = tuple(position_llh)
        self._lock = threading.RLock()
        self._fleet = None

    @property
    def path(self):
        return self.port.path

    def start(self):
        """Plug in and run this board alone in its own thread (see ``VirtualFleet``)."""
        self._fleet = VirtualFleet([self], speed=self.speed, step_s=self.step_s).start()
        return self

    @property
    def error(self):
        return self._fleet.error if self._fleet is not None else None

    def stop(self):
        if self._fleet is not None:
            self._fleet.stop()
        self.close()

    def close(self):
        """Close the firmware's files and unplug (the board's thread must be stopped)."""
        with self._lock:
            self.board.app.close()
        self.port.unplug()

    def unplug(self):
        with self._lock:
            self.port.unplug()

    def plug(self):
        with self._lock:
            self.port.plug()

    def reboot(self, mid_frame=False):
        """Reset the board; with ``mid_frame``, first send half a frame, as a
        reset during a USB transfer does."""
        with self._lock:
            if mid_frame:
                from shotline_fw import wire
                line = wire.encode_json(wire.TRIGGER, 1, {"sensor_id": self.name, "seq": 0})
                self.port.write(line[: len(line) // 2])
            self.board.reboot("soft")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class VirtualFleet:
    """Several virtual sensors stepped in lockstep by ONE thread.

    Every board advances by ``step_s`` of simulated time in turn, paced to
    ``speed`` x the wall clock from the instant the first sensor was made, so
    all boards share one simulated "now" and their triggers reach the host in
    time order, as from boards that run in parallel.  Give the sensors one
    common ``utc0_s`` (their GPS time at simulated time 0) and the fleet the
    ``time.monotonic()`` of that instant (``wall0_monotonic_s``; default:
    when the first sensor was made).  ``error`` holds the
    exception that stopped the firmware, if one did.
    """

    def __init__(self, sensors, speed=1.0, step_s=0.01, wall0_monotonic_s=None):
        self.sensors = list(sensors)
        self.wall0_monotonic_s = wall0_monotonic_s
        self.speed = float(speed)
        self.step_s = float(step_s)
        self.error = None
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        for vs in self.sensors:
            vs.port.plug()
            vs.board.app.send_hello()  # a freshly plugged board announces itself
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"virtual sensors ({len(self.sensors)})")
        self._thread.start()
        return self

    def _run(self):
        import time as _t

        wall0 = self.wall0_monotonic_s
        if wall0 is None:
            wall0 = min(vs._wall0 for vs in self.sensors)
        sim_s = 0.0
        try:
            while not self._stop.is_set():
                for vs in self.sensors:
                    with vs._lock:
                        vs.board.advance(self.step_s)
                        vs.port.flush()
                sim_s += self.step_s
                ahead_s = sim_s / self.speed - (_t.monotonic() - wall0)
                if ahead_s > 0:
                    self._stop.wait(ahead_s)
        except Exception as exc:  # surfaced to the owner, not swallowed
            self.error = exc
            raise

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def close(self):
        self.stop()
        for vs in self.sensors:
            vs.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
