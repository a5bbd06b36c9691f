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
