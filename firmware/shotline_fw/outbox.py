"""Persistent trigger outbox: records stay on flash/SD until the host ACKs them.

Valid MicroPython and CPython (plain ``open``/``seek``/``write``, so it works
on littlefs, FAT on SD, or a host directory).

One file of ``capacity`` fixed slots of ``SLOT_BYTES``; record ``seq`` lives
in slot ``seq % capacity``, so slots are reused oldest-first.  Slot layout::

    state u8 (0 empty, 1 pending, 2 acked) | 0 u8 | length u16 | seq u32 |
    crc32 u32 (of seq and payload) | payload (length bytes)

- ``put`` writes the record and flushes before returning.  If its slot still
  holds a pending record, the outbox is full: that oldest record is dropped and
  counted in ``dropped``.
- ``ack(seq)`` marks the slot acked (one byte written).  Acking twice, late,
  or an unknown seq changes nothing and returns False.
- At open the file is scanned: pending records with a valid CRC are restored
  (a record torn by power loss fails its CRC and is ignored), and ``next_seq``
  continues after the highest seq seen (or ``seq_floor``, whichever is larger).
- A file of another capacity is migrated (its pending records are kept).
"""
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from shotline_fw.wire import crc32

SLOT_BYTES = const(768)
HEADER = "<BBHII"
HEADER_N = const(12)
MAX_PAYLOAD = const(756)     # SLOT_BYTES - HEADER_N
_EMPTY = const(0)
_PENDING = const(1)
_ACKED = const(2)


class OutboxError(ValueError):
    """The outbox cannot store a record (too long) or its file is unusable."""


class Outbox:
    """Persistent FIFO of trigger records keyed by sequence number."""

    def __init__(self, path, capacity, seq_floor=1):
        self.path = path
        self.capacity = capacity
        self.dropped = 0
        self._pending = []            # pending seqs, ascending
        self._hdr = bytearray(HEADER_N)
        self._slot = bytearray(SLOT_BYTES)
        self.next_seq = max(1, seq_floor)
        self._f = None
        self._open()

    # -- file ---------------------------------------------------------------
    def _open(self):
        old = []
        try:
            f = open(self.path, "r+b")
        except OSError:
            f = None
        if f is not None:
            f.seek(0, 2)
            size = f.tell()
            if size == self.capacity * SLOT_BYTES:
                self._f = f
                self._scan()
                return
            old = self._read_all(f, size // SLOT_BYTES)
            f.close()
        self._create()
        top = self.next_seq
        for seq, payload in old:
            self.next_seq = seq
            self.put(payload)
        self.next_seq = top

    def _create(self):
        with open(self.path, "wb") as f:
            zero = bytes(SLOT_BYTES)
            for _ in range(self.capacity):
                f.write(zero)
        self._f = open(self.path, "r+b")

    def _read_slot(self, f, i):
        """(state, seq, payload bytes) of slot i, or None if empty/invalid."""
        f.seek(i * SLOT_BYTES)
        n = f.readinto(self._slot)
        if n is None or n < HEADER_N:
            return None
        state, _, length, seq, crc = struct.unpack_from(HEADER, self._slot, 0)
        if state not in (_PENDING, _ACKED) or length > MAX_PAYLOAD:
            return None
        mv = memoryview(self._slot)
        payload = mv[HEADER_N:HEADER_N + length]
        if crc32(payload, crc32(mv[4:8])) != crc:
            return None
        return state, seq, bytes(payload)

    def _read_all(self, f, slots):
        out = []
        for i in range(slots):
            r = self._read_slot(f, i)
            if r is not None and r[0] == _PENDING:
                out.append((r[1], r[2]))
            if r is not None and r[1] >= self.next_seq:
                self.next_seq = r[1] + 1
        out.sort()
        return out

    def _scan(self):
        self._pending = [seq for seq, _ in self._read_all(self._f, self.capacity)]

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    # -- records -------------------------------------------------------------
    def put(self, payload):
        """Store ``payload`` (bytes) as record ``next_seq``; returns that seq.

        The seq is used up even when storing fails (OutboxError, OSError): the
        caller has already sent or noted a record under it, so it is never reused.
        """
        seq = self.next_seq
        self.next_seq = seq + 1
        while self._pending and self._pending[0] <= seq - self.capacity:
            self._pending.pop(0)           # its slot is about to be overwritten
            self.dropped += 1
        if len(payload) > MAX_PAYLOAD:
            raise OutboxError("record of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD))
        i = seq % self.capacity
        crc = crc32(payload, crc32(struct.pack("<I", seq)))
        struct.pack_into(HEADER, self._hdr, 0, _PENDING, 0, len(payload), seq, crc)
        f = self._f
        f.seek(i * SLOT_BYTES)
        f.write(self._hdr)
        f.write(payload)
        f.flush()
        self._pending.append(seq)
        return seq

    def ack(self, seq):
        """Mark record ``seq`` delivered; True if it was pending."""
        if seq not in self._pending:
            return False
        self._f.seek((seq % self.capacity) * SLOT_BYTES)
        self._f.write(b"\x02")
        self._f.flush()
        self._pending.remove(seq)
        return True

    def get(self, seq):
        """Payload of pending record ``seq``, or None."""
        if seq not in self._pending:
            return None
        r = self._read_slot(self._f, seq % self.capacity)
        return r[2] if r is not None and r[1] == seq else None

    def pending(self):
        """Pending seqs, oldest first (a copy)."""
        return list(self._pending)

    def __len__(self):
        return len(self._pending)
