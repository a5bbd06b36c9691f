"""Finding sensor boards: USB serial ports by VID/PID, and virtual sensors.

A board is picked by a selector:

- ``id:<serial>`` -- the USB serial number (the Pico's flash unique id), or a
  virtual sensor's id;
- a port path (``/dev/ttyACM0``, ``COM3``) or any pyserial URL (``loop://``);
- ``all`` (or ``auto``) -- every attached board.

Real boards are listed with ``serial.tools.list_ports``; Raspberry Pi's USB
vendor id is 0x2E8A (MicroPython on the Pico enumerates as 2E8A:0005).
Virtual sensors (``shotline virtual-sensor``) live on pseudo-terminals and
announce themselves as symlinks in ``virtual_dir()``.
"""
import dataclasses
import os
import tempfile
from pathlib import Path

RPI_VID = 0x2E8A
MICROPYTHON_PICO_PID = 0x0005


class PortError(Exception):
    """No board matches a selector, or a selector is malformed."""


@dataclasses.dataclass(frozen=True)
class Board:
    """One attached board: its port and what USB (or the virtual sensor) says about it."""

    port: str
    serial_number: str | None = None
    vid: int | None = None
    pid: int | None = None
    description: str = ""
    kind: str = "usb"  # "usb" or "virtual"

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["vid"] = None if self.vid is None else f"{self.vid:04X}"
        d["pid"] = None if self.pid is None else f"{self.pid:04X}"
        return d


def virtual_dir():
    """Folder where virtual sensors publish ``<id>`` -> pty symlinks.

    ``$SHOTLINE_VIRTUAL_DIR``, else ``<tmp>/shotline-virtual-<uid>``.
    """
    env = os.environ.get("SHOTLINE_VIRTUAL_DIR")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"shotline-virtual-{os.getuid()}"


def usb_boards(vids=(RPI_VID,), comports=None):
    """Serial ports whose USB vendor id is in ``vids`` (all USB ports if ``vids`` is empty)."""
    if comports is None:
        from serial.tools.list_ports import comports
    boards = []
    for info in comports():
        if info.vid is None or (vids and info.vid not in vids):
            continue
        boards.append(Board(port=info.device, serial_number=info.serial_number,
                            vid=info.vid, pid=info.pid,
                            description=info.description or "", kind="usb"))
    return sorted(boards, key=lambda b: b.port)


def virtual_boards(folder=None):
    """Virtual sensors currently published in ``folder`` (dangling links are skipped)."""
    folder = Path(folder) if folder is not None else virtual_dir()
    if not folder.is_dir():
        return []
    boards = []
    for link in sorted(folder.iterdir()):
        if link.is_symlink() and link.exists():
            boards.append(Board(port=str(link), serial_number=link.name,
                                description="Shotline virtual sensor", kind="virtual"))
    return boards


def list_boards(*, vids=(RPI_VID,), include_virtual=True, comports=None, folder=None):
    """Every board attached: USB boards with a vendor id in ``vids``, then virtual sensors."""
    boards = usb_boards(vids, comports)
    if include_virtual:
        boards += virtual_boards(folder)
    return boards


def select(selectors, boards=None):
    """Boards for ``selectors`` (see the module docstring), in order, without repeats.

    ``boards`` defaults to ``list_boards()``; it is only consulted for ``id:``
    and ``all``, so a plain port path or URL need not be listed.  Raises
    ``PortError`` when a selector matches nothing.
    """
    selectors = list(selectors) or ["all"]
    chosen, seen = [], set()

    def add(board):
        if board.port not in seen:
            seen.add(board.port)
            chosen.append(board)

    for sel in selectors:
        if not isinstance(sel, str) or not sel.strip():
            raise PortError(f"empty board selector: {sel!r}")
        sel = sel.strip()
        if sel in ("all", "auto"):
            boards = list_boards() if boards is None else boards
            if not boards:
                raise PortError("no boards attached (looked for USB VID "
                                f"{RPI_VID:04X} and virtual sensors in {virtual_dir()})")
            for b in boards:
                add(b)
        elif sel.startswith("id:"):
            wanted = sel[3:]
            if not wanted:
                raise PortError("id: needs a serial number, e.g. id:E6614103E7452D2F")
            boards = list_boards() if boards is None else boards
            matches = [b for b in boards if b.serial_number and b.serial_number.lower() == wanted.lower()]
            if not matches:
                known = ", ".join(b.serial_number for b in boards if b.serial_number) or "none"
                raise PortError(f"no board with serial number {wanted} (attached: {known})")
            for b in matches:
                add(b)
        else:
            known = {b.port: b for b in (boards or [])}
            add(known.get(sel, Board(port=sel, kind="url" if "://" in sel else "usb")))
    return chosen
