"""The serial session with one board, in three layers.

1. Transport: a pyserial port (``serial.serial_for_url``, so a device path,
   a pty, ``loop://`` or ``socket://`` all work), read with a short timeout.
2. Framing: ``shotline_fw.wire.StreamDecoder`` -- the one codec the firmware
   uses too -- turns bytes into frames and skips garbage and REPL text.
3. Application: ``Link`` sends commands and ACKs (each with this side's frame
   sequence number) and hands received frames to the caller; ``request``
   waits for the RESPONSE that refers to a command, ``hello`` for the board's
   identity.

Errors: ``LinkError`` > ``LinkClosed`` (the port went away: cable pulled,
board reset, virtual sensor stopped) and ``LinkTimeout`` (no answer in time).
Every timeout is in seconds on the monotonic clock.
"""
import collections
import threading
import time

import serial

from shotline_fw import wire

DEFAULT_BAUD = 115200  # ignored by USB CDC, kept for UART adapters


class LinkError(Exception):
    """Something went wrong talking to a board."""


class LinkClosed(LinkError):
    """The port is gone or was closed."""


class LinkTimeout(LinkError):
    """The board did not answer in time."""


class Link:
    """A session with the board at ``url``.

    ``read_timeout_s`` bounds how long ``read_frames`` blocks waiting for
    bytes.  Frames that arrive while ``request``/``hello`` wait for their
    answer are kept in ``backlog`` for the next ``read_frames``.
    """

    def __init__(self, url, *, baudrate=DEFAULT_BAUD, read_timeout_s=0.05, on_text=None):
        self.url = str(url)
        self.baudrate = baudrate
        self.read_timeout_s = read_timeout_s
        self.on_text = on_text
        self.port = None
        self.decoder = None
        self.backlog = collections.deque()
        self._seq = 0
        self._write_lock = threading.Lock()
        self.bytes_in = 0

    # -- transport ------------------------------------------------------
    def open(self):
        """Open the port (raises LinkClosed when it cannot be opened)."""
        self.close()
        try:
            # exclusive: a second program (monitor, ports) cannot steal the collector's bytes
            self.port = serial.serial_for_url(self.url, baudrate=self.baudrate,
                                              timeout=self.read_timeout_s, write_timeout=2.0,
                                              exclusive="://" not in self.url)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkClosed(f"{self.url}: cannot open: {exc}") from exc
        self.decoder = wire.StreamDecoder(on_text=self.on_text)
        self.backlog.clear()
        return self

    def close(self):
        port, self.port = self.port, None
        self.backlog.clear()
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    @property
    def is_open(self):
        return self.port is not None

    def __enter__(self):
        return self.open() if self.port is None else self

    def __exit__(self, *exc):
        self.close()

    def _read(self):
        port = self.port
        if port is None:
            raise LinkClosed(f"{self.url}: not open")
        try:
            data = port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # TypeError/AttributeError: pyserial racing a close() from another thread.
            raise LinkClosed(f"{self.url}: read failed: {exc}") from exc
        self.bytes_in += len(data)
        return data

    def write(self, data):
        """Write raw bytes (thread-safe; used for frames and for tests' garbage)."""
        with self._write_lock:
            port = self.port
            if port is None:
                raise LinkClosed(f"{self.url}: not open")
            try:
                port.write(data)
                port.flush()
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                raise LinkClosed(f"{self.url}: write failed: {exc}") from exc

    # -- framing / application ----------------------------------------------
    def next_seq(self):
        with self._write_lock:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            return self._seq

    def send(self, msg_type, obj=None, ref=0):
        """Send one JSON message; returns its frame sequence number."""
        seq = self.next_seq()
        self.write(wire.encode_json(msg_type, seq, obj or {}, ref))
        return seq

    def ack(self, trigger_seqs):
        """Acknowledge triggers by their trigger sequence numbers (idempotent)."""
        if trigger_seqs:
            self.send(wire.ACK, {"seqs": sorted(int(s) for s in trigger_seqs)})

    def read_frames(self):
        """Frames received so far (blocks at most ``read_timeout_s`` for bytes)."""
        if self.backlog:
            out = list(self.backlog)
            self.backlog.clear()
            return out
        if self.port is None:
            raise LinkClosed(f"{self.url}: not open")
        return self.decoder.feed(self._read())

    def wait_for(self, match, timeout_s):
        """First received frame for which ``match(frame)`` is true; others go to ``backlog``."""
        deadline = time.monotonic() + timeout_s
        kept = []
        while self.backlog:
            frame = self.backlog.popleft()
            if match(frame):
                self.backlog.extendleft(reversed(kept))
                return frame
            kept.append(frame)
        found = None
        try:
            while found is None and time.monotonic() < deadline:
                for frame in self.decoder.feed(self._read()):
                    if found is None and match(frame):
                        found = frame
                    else:
                        kept.append(frame)  # including frames after the match
        finally:
            self.backlog.extend(kept)
        if found is not None:
            return found
        raise LinkTimeout(f"{self.url}: no answer within {timeout_s:.1f} s")

    def request(self, msg_type, obj=None, timeout_s=3.0):
        """Send a command and return its RESPONSE body (dict)."""
        seq = self.send(msg_type, obj)
        frame = self.wait_for(lambda f: f.type == wire.RESPONSE and f.ref == seq, timeout_s)
        return frame.json()

    def hello(self, timeout_s=3.0, retries=3):
        """Ask the board to introduce itself; returns its HELLO body (dict).

        Repeats the request ``retries`` times within ``timeout_s`` (a board
        just plugged in may miss the first one while it boots).
        """
        tries = max(1, retries)
        for attempt in range(tries):
            self.send(wire.HELLO, {})
            try:
                return self.wait_for(lambda f: f.type == wire.HELLO, timeout_s / tries).json()
            except LinkTimeout:
                if attempt == tries - 1:
                    raise
