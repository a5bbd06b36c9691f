"""The 72-hour audio ring buffer on the raw microSD card.

Valid MicroPython and CPython.  The card is used as a raw block device (any
object with ``readblocks(n, buf)``, ``writeblocks(n, buf)``, ``ioctl(op,
arg)`` like ``uos.AbstractBlockDev``; 512-byte blocks), no file system.

Layout: the region ``[first_block, first_block + n_blocks)`` is cut into
fixed-size *slots*; one slot = 1 header block + ``seg_data_blocks`` blocks of
int16 little-endian mono samples.  Segment number ``seq`` always lives in slot
``(seq - base) % n_slots``: segments are written in slot order, cyclically,
with no gap between consecutive capture blocks (a gap in the sample index
closes the segment and opens the next one; it is counted).

Header block (little-endian)::

    magic "SLA1" | seq u32 | session u32 | first_sample u64 | n_samples u32 |
    rate_hz u32 | utc_us i64 (UTC of first_sample, 0 = unknown) | flags u32 |
    data_crc u32 (CRC-32 of the n_samples * 2 data bytes) | header_crc u32 |
    n_notes u16 | n_stages u16 | stage CRC u32 x n_stages |
    notes (trigger_seq u32, onset offset i32) x n_notes

``header_crc`` covers the whole block but itself.  A *stage* is
``stage_blocks`` data blocks (4 kB): it is the unit written at once, and a
snippet reads and checks only the stages of its window.  Notes record the
triggers noted while the segment was open, so their snippets survive a reboot.

The header is rewritten at every commit (every stage, 128 ms at 16 kHz by
default), so after a power cut the committed part of the open segment is
intact and is kept; data blocks beyond it (older audio) are overwritten with
zeros at the next ``mount``, which reads every header once.

Retention (the public promise): no audio older than ``retention_s`` (72 h)
survives.  The ring never holds more than ``retention_s`` of slots, so in
continuous operation wrap-around overwrites each slot when it is 72 h old;
``mount(now_utc_us)`` at boot and ``expire(now_utc_us)`` (at every new
segment, and on demand) overwrite with zeros every segment that is older,
whose age cannot be proven (earlier boot, no UTC) or that is stamped in the
future (the clock went back).  Within the current boot session age is
measured in samples, so clock jumps cannot make audio live longer.

Faults never raise out of ``write``: they are counted and reported by
``health()``, and detection keeps running without the card.

Example (CPython, a file-backed card)::

    ring = AudioRing(dev, 16000, clock=lambda s: None)
    ring.mount(now_utc_us=None)
    ring.write(int16_array, first_sample_index)
"""
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from shotline_fw.wire import crc32

try:
    import uctypes

    def _int16_bytes(block):
        """A byte view (no copy) of an int16 array."""
        return memoryview(uctypes.bytearray_at(uctypes.addressof(block), 2 * len(block)))
except ImportError:  # CPython
    def _int16_bytes(block):
        return memoryview(block).cast("B")

BLOCK_BYTES = const(512)
RETENTION_S = const(259200)           # 72 h
FUTURE_SLACK_S = const(600)           # a stamp further than this ahead of "now" is implausible
_EXPIRE_PER_SEGMENT = const(32)       # headers examined for expiry at each new segment
MAGIC = b"SLA1"
_HEAD = "<4sIIQIIqII"
_HEAD_N = const(44)
_HEAD_CRC_N = const(48)
_STAGES_AT = const(52)                # n_notes u16 at 48, n_stages u16 at 50, then stage CRCs
MAX_STAGES = const(100)               # stage CRCs one header holds
_ZERO_TAIL = bytes(BLOCK_BYTES - _HEAD_CRC_N)
FLAG_UTC = const(1)                   # utc_us is known
FLAG_TAIL_CLEAN = const(2)            # blocks after n_samples hold no older audio
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)

CARD_OK = "ok"
CARD_MISSING = "missing"
CARD_TOO_SMALL = "too_small"
CARD_WRITE_ERROR = "write_error"
CARD_READ_ERROR = "read_error"
CARD_UNSUPPORTED = "unsupported"


class AudioGone(Exception):
    """The requested audio is not (or no longer) in the buffer; args[0] is a reason code."""


def max_notes(n_stages):
    """Trigger notes a header holds beside ``n_stages`` stage CRCs."""
    return (BLOCK_BYTES - _STAGES_AT - 4 * n_stages) // 8


class Header:
    """One decoded segment header (plain attributes).  ``notes``: list of
    ``(trigger_seq, onset_sample)`` of triggers noted while it was open;
    ``stage_crcs``: CRC-32 of each stage's committed bytes."""

    def __init__(self, seq, session, first_sample, n_samples, rate_hz, utc_us, flags, data_crc,
                 notes=None, stage_crcs=None):
        self.seq = seq
        self.session = session
        self.first_sample = first_sample
        self.n_samples = n_samples
        self.rate_hz = rate_hz
        self.utc_us = utc_us
        self.flags = flags
        self.data_crc = data_crc
        self.notes = notes if notes is not None else []
        self.stage_crcs = stage_crcs if stage_crcs is not None else []


def _header_crc(buf):
    mv = memoryview(buf)
    return crc32(mv[_HEAD_CRC_N:], crc32(mv[:_HEAD_N]))


def pack_header(buf, h):
    """Write header ``h`` into the 512-byte ``buf`` (rest zeroed)."""
    buf[_HEAD_CRC_N:] = _ZERO_TAIL
    struct.pack_into(_HEAD, buf, 0, MAGIC, h.seq, h.session, h.first_sample, h.n_samples,
                     h.rate_hz, h.utc_us, h.flags, h.data_crc)
    n_stages = len(h.stage_crcs)
    n = min(len(h.notes), max_notes(n_stages))
    struct.pack_into("<HH", buf, _HEAD_CRC_N, n, n_stages)
    struct.pack_into("<%dI" % n_stages, buf, _STAGES_AT, *h.stage_crcs)
    at = _STAGES_AT + 4 * n_stages
    for i in range(n):
        seq, onset = h.notes[i]
        struct.pack_into("<Ii", buf, at + 8 * i, seq, onset - h.first_sample)
    struct.pack_into("<I", buf, _HEAD_N, _header_crc(buf))


def unpack_header(buf):
    """``Header``, ``None`` for a slot never written (no magic), or raise ValueError if corrupt."""
    if bytes(buf[:4]) != MAGIC:
        return None
    f = struct.unpack_from(_HEAD, buf, 0)
    (crc,) = struct.unpack_from("<I", buf, _HEAD_N)
    if crc != _header_crc(buf):
        raise ValueError("header CRC")
    n, n_stages = struct.unpack_from("<HH", buf, _HEAD_CRC_N)
    if n_stages > MAX_STAGES or n > max_notes(n_stages):
        raise ValueError("header layout")
    stage_crcs = list(struct.unpack_from("<%dI" % n_stages, buf, _STAGES_AT))
    at = _STAGES_AT + 4 * n_stages
    notes = []
    for i in range(n):
        seq, off = struct.unpack_from("<Ii", buf, at + 8 * i)
        notes.append((seq, f[3] + off))
    return Header(f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], notes, stage_crcs)


def plan_slots(device_blocks, rate_hz, seg_data_blocks, retention_s=RETENTION_S):
    """Number of slots: as many as the card holds, but at most ``retention_s`` of audio."""
    seg_samples = seg_data_blocks * BLOCK_BYTES // 2
    by_card = device_blocks // (1 + seg_data_blocks)
    by_time = retention_s * rate_hz // seg_samples
    return min(by_card, by_time)


def card_bytes_for(retention_s, rate_hz, seg_data_blocks):
    """Card bytes needed to hold ``retention_s`` of 16-bit audio, headers included."""
    seg_samples = seg_data_blocks * BLOCK_BYTES // 2
    n = retention_s * rate_hz // seg_samples
    return n * (1 + seg_data_blocks) * BLOCK_BYTES


class AudioRing:
    """Gap-free cyclic recorder of int16 audio on a raw block device.

    ``dev``: block device; ``rate_hz``: nominal sample rate; ``clock``:
    ``clock(sample_index) -> UTC microseconds (int) or None`` while unknown;
    ``first_block``/``n_blocks``: the card region to use (default: all);
    ``seg_data_blocks``: data blocks per segment (512 = 8.192 s at 16 kHz);
    ``stage_blocks``: data blocks buffered in RAM between commits.
    """

    def __init__(self, dev, rate_hz, clock, first_block=0, n_blocks=None,
                 seg_data_blocks=512, stage_blocks=8, retention_s=RETENTION_S):
        if seg_data_blocks % stage_blocks or seg_data_blocks // stage_blocks > MAX_STAGES:
            raise ValueError("seg_data_blocks must be a multiple of stage_blocks, "
                             "at most %d stages" % MAX_STAGES)
        self.dev = dev
        self.rate_hz = rate_hz
        self.clock = clock
        self.first_block = first_block
        self.n_blocks = n_blocks
        self.seg_data_blocks = seg_data_blocks
        self.seg_samples = seg_data_blocks * BLOCK_BYTES // 2
        self.stage_blocks = stage_blocks
        self.retention_s = retention_s
        self._retention_samples = retention_s * rate_hz
        self._hbuf = bytearray(BLOCK_BYTES)
        self._rbuf = bytearray(BLOCK_BYTES)
        self.n_stages = seg_data_blocks // stage_blocks
        self.max_notes = max_notes(self.n_stages)
        self._rstage = bytearray(stage_blocks * BLOCK_BYTES)
        self._rkey = None             # (seq, stage, valid bytes) held in _rstage
        self._found = None            # the header find() returned last
        self._utc_floor = None        # newest UTC stamp on the card at mount, us
        self._stage = bytearray(stage_blocks * BLOCK_BYTES)
        self._stage_mv = memoryview(self._stage)
        self._zero = bytearray(stage_blocks * BLOCK_BYTES)
        self.n_slots = 0
        self.session = 0
        self._base = 0
        self._next_seq = 1
        self._session_seq = 1
        self._tail_seq = 1
        self.card = CARD_MISSING
        self.last_error = ""
        self.counts = {"gaps": 0, "dropped_samples": 0, "write_errors": 0, "read_errors": 0,
                       "corrupt_segments": 0, "wiped_segments": 0, "segments_written": 0,
                       "notes_dropped": 0}
        self.on_note = None           # on_note(trigger_seq, session, onset_sample) at mount
        self._notes = []              # notes waiting for the next segment
        self._cur = None              # Header of the open segment
        self._fault = None            # header of a segment cut by a write error
        self._fault_samples = 0
        self._next = None             # next expected sample index
        self._fill = 0                # bytes in the stage
        self._crc_done = 0            # stage bytes already in the data CRC
        self._stage_block = 0         # data block (in segment) where the stage starts
        self._expire_seq = 0          # sweep cursor (segment seq)

    # -- geometry -------------------------------------------------------------
    def _slot_block(self, seq):
        slot = (seq - self._base) % self.n_slots
        return self.first_block + slot * (1 + self.seg_data_blocks)

    @property
    def next_sample(self):
        """Index of the next sample expected (everything before it is written), or None."""
        return self._next

    @property
    def capacity_s(self):
        """Audio the ring can hold, seconds."""
        return self.n_slots * self.seg_samples // self.rate_hz

    # -- raw I/O with fault accounting --------------------------------------------
    def _write(self, block, buf):
        try:
            self.dev.writeblocks(block, buf)
            return True
        except OSError as exc:
            self.counts["write_errors"] += 1
            self.card = CARD_WRITE_ERROR
            self.last_error = "write block %d: %s" % (block, exc)
            return False

    def _read(self, block, buf):
        try:
            self.dev.readblocks(block, buf)
            return True
        except OSError as exc:
            self.counts["read_errors"] += 1
            self.card = CARD_READ_ERROR
            self.last_error = "read block %d: %s" % (block, exc)
            return False

    def header(self, seq):
        """Header of segment ``seq`` if that slot holds it, else None (never raises)."""
        if self.n_slots == 0 or not self._read(self._slot_block(seq), self._hbuf):
            return None
        try:
            h = unpack_header(self._hbuf)
        except ValueError:
            return None
        if h is None or h.seq != seq:
            return None
        return h

    def _wipe(self, seq, from_data_block=-1):
        """Overwrite slot of ``seq`` with zeros (see ``_wipe_at``)."""
        return self._wipe_at(self._slot_block(seq), from_data_block)

    def _wipe_at(self, block, from_data_block=-1):
        """Overwrite the slot at ``block`` with zeros: data blocks from ``from_data_block``
        (-1: all, then the header) to the end of the slot.  The header goes last, so a
        wipe cut short by a power failure is found and done again at the next mount."""
        end = block + 1 + self.seg_data_blocks
        b = block + 1 + max(0, from_data_block)
        self._found = None
        self._rkey = None
        ok = True
        while b < end:
            n = min(end - b, self.stage_blocks)
            ok = self._write(b, memoryview(self._zero)[:n * BLOCK_BYTES]) and ok
            b += n
        if from_data_block < 0 and ok:
            ok = self._write(block, memoryview(self._zero)[:BLOCK_BYTES])
        return ok

    # -- boot ------------------------------------------------------------------------
    def mount(self, now_utc_us=None):
        """Scan every slot header, repair and expire; returns a summary dict.

        Starts a new boot session.  Corrupt headers and segments whose age cannot
        be proven are overwritten; partial segments (power cut) keep their
        committed audio and lose the older bytes after it.  With ``now_utc_us``
        every segment older than the retention is overwritten too.
        """
        try:
            total = self.n_blocks
            if total is None:
                total = self.dev.ioctl(_IOCTL_BLOCK_COUNT, 0) - self.first_block
            size = self.dev.ioctl(_IOCTL_BLOCK_SIZE, 0)
        except (OSError, TypeError) as exc:
            self.card = CARD_MISSING
            self.last_error = "no card: %s" % exc
            self.n_slots = 0
            return {"card": self.card}
        if size not in (None, 0, BLOCK_BYTES):
            self.card = CARD_UNSUPPORTED
            self.last_error = "block size %r, need 512" % (size,)
            self.n_slots = 0
            return {"card": self.card}
        self.n_slots = plan_slots(total, self.rate_hz, self.seg_data_blocks, self.retention_s)
        if self.n_slots < 2:
            self.card = CARD_TOO_SMALL
            self.n_slots = 0
            return {"card": self.card}
        self.card = CARD_OK
        self.session = 0              # during the scan every segment is of an earlier boot
        self._next = None
        self._cur = None
        self._fault = None
        n = self.n_slots
        max_seq, max_slot, max_session = 0, 0, 0
        kept = 0
        odd = []                      # kept slots whose seq does not fit the running numbering
        recheck_all = False
        self._utc_floor = None
        min_utc = None
        for slot in range(n):         # one pass: each header is read once
            block = self._block_of_slot(slot)
            if not self._read(block, self._hbuf):
                continue
            try:
                h = unpack_header(self._hbuf)
            except ValueError:        # torn or damaged header: its audio cannot be dated
                self._wipe_at(block)
                self.counts["corrupt_segments"] += 1
                continue
            if h is None:
                continue
            if h.session > max_session:
                max_session = h.session
            if self._expired(h, now_utc_us):
                self._wipe_at(block)
                self.counts["wiped_segments"] += 1
                continue
            if not h.flags & FLAG_TAIL_CLEAN:
                self._close_tail(h, block)
            kept += 1
            if h.flags & FLAG_UTC:
                if self._utc_floor is None or h.utc_us > self._utc_floor:
                    self._utc_floor = h.utc_us
                if min_utc is None or h.utc_us < min_utc:
                    min_utc = h.utc_us
            if self.on_note is not None:
                for trigger_seq, onset in h.notes:
                    self.on_note(trigger_seq, h.session, onset)
            residue = (h.seq - slot) % n
            if max_seq and residue != (max_seq - max_slot) % n:
                if h.seq > max_seq or len(odd) >= 64:
                    recheck_all = True
                else:
                    odd.append(slot)
            if h.seq > max_seq:
                max_seq, max_slot = h.seq, slot
        self._base = (max_seq - max_slot) % n
        self._next_seq = max_seq + 1
        self.session = max_session + 1
        self._session_seq = self._next_seq
        self._tail_seq = self._next_seq
        # Headers not where their number says (a stale layout): their audio could never
        # be found, dated or expired, so it goes now.
        # Without the time, the newest stamp on the card is a floor for "now": audio
        # older than that by the retention is certainly expired (a rare second pass).
        old = now_utc_us is None and min_utc is not None and \
            self._utc_floor - min_utc >= self.retention_s * 1000000
        for slot in (range(n) if recheck_all or old else odd):
            block = self._block_of_slot(slot)
            h = self._header_at(block)
            if h is not None and (h.seq - slot) % n != self._base:
                self._wipe_at(block)
                self.counts["corrupt_segments"] += 1
                kept -= 1
            elif h is not None and old and self._expired(h, None):
                self._wipe_at(block)
                self.counts["wiped_segments"] += 1
                kept -= 1
        self._expire_seq = self._next_seq - n
        return {"card": self.card, "slots": n, "kept": kept,
                "session": self.session, "capacity_s": self.capacity_s}

    def _block_of_slot(self, slot):
        return self.first_block + slot * (1 + self.seg_data_blocks)

    def _header_at(self, block):
        if not self._read(block, self._hbuf):
            return None
        try:
            return unpack_header(self._hbuf)
        except ValueError:
            return None

    def _close_tail(self, h, block=None):
        """Zero the data blocks after the committed samples of ``h`` (slot at ``block``,
        default where its seq says); mark it clean.  False if the card refused."""
        block = self._slot_block(h.seq) if block is None else block
        used = (h.n_samples * 2 + BLOCK_BYTES - 1) // BLOCK_BYTES
        if used * BLOCK_BYTES > h.n_samples * 2:
            # the last partly used block: keep its committed bytes, zero the rest
            b = block + used
            if self._read(b, self._rbuf):
                for i in range(h.n_samples * 2 - (used - 1) * BLOCK_BYTES, BLOCK_BYTES):
                    self._rbuf[i] = 0
                self._write(b, self._rbuf)
        if not self._wipe_at(block, used):
            return False
        h.flags |= FLAG_TAIL_CLEAN
        pack_header(self._hbuf, h)
        return self._write(block, self._hbuf)

    # -- retention policy ------------------------------------------------------------
    def _expired(self, h, now_utc_us):
        """True if segment ``h`` must not be kept (see the module docstring)."""
        if h.session == self.session and self._next is not None:
            return self._next - h.first_sample >= self._retention_samples
        if not h.flags & FLAG_UTC:
            return h.session != self.session
        if now_utc_us is None:                # the newest stamp seen: time is at least that
            floor = self._utc_floor
            return floor is not None and floor - h.utc_us >= self.retention_s * 1000000
        age_us = now_utc_us - h.utc_us
        return age_us >= self.retention_s * 1000000 or -age_us > FUTURE_SLACK_S * 1000000

    def expire(self, now_utc_us=None, max_headers=64):
        """Overwrite expired segments; returns how many were wiped.

        Segments of earlier sessions are examined round robin, every one of them,
        at most ``max_headers`` per call; those of the current session oldest
        first, stopping at the first young enough, with a budget of their own of
        ``max_headers`` (so they are never starved by the first pass).  Call it
        periodically (once per segment) and, when UTC first becomes known, with
        ``max_headers=n_slots`` for a full sweep (``priv_install`` does both).
        """
        if self.n_slots == 0:
            return 0
        self.flush()
        wiped = 0
        lo = self._next_seq - self.n_slots
        end = self._cur.seq if self._cur is not None else self._next_seq
        prior_end = min(self._session_seq, end)
        budget = min(max_headers, prior_end - lo)     # each earlier segment once at most
        while budget > 0:
            budget -= 1
            if self._expire_seq < lo or self._expire_seq >= prior_end:
                self._expire_seq = lo                  # round robin
            h = self.header(self._expire_seq)
            if h is not None and self._expired(h, now_utc_us):
                self._wipe(h.seq)
                self.counts["wiped_segments"] += 1
                wiped += 1
            self._expire_seq += 1
        seq = max(lo, self._session_seq, self._tail_seq)
        budget = max_headers                  # the current session's own budget
        while budget > 0 and seq < end:
            budget -= 1
            h = self.header(seq)
            if h is not None:
                if not self._expired(h, now_utc_us):
                    break
                self._wipe(seq)
                self.counts["wiped_segments"] += 1
                wiped += 1
            seq += 1
        self._tail_seq = seq
        return wiped

    # -- writing ---------------------------------------------------------------------------
    def write(self, block, first_sample_index):
        """Append ``block`` (an int16 array, or its little-endian bytes as bytes/
        bytearray) whose first sample has index ``first_sample_index`` (the app's
        ``audio_sink`` hook).  Never raises on card faults."""
        if isinstance(block, (bytes, bytearray)):
            mv = memoryview(block)
        else:
            mv = _int16_bytes(block)
        if self.n_slots == 0 or (self._fault is not None and not self._recover(len(mv) // 2)):
            self.counts["dropped_samples"] += len(mv) // 2
            self._next = first_sample_index + len(mv) // 2
            return
        if self._next is not None and first_sample_index != self._next:
            self.counts["gaps"] += 1
            if first_sample_index > self._next:
                self.counts["dropped_samples"] += first_sample_index - self._next
            self._close()
        pos = 0
        n = len(mv)
        s = first_sample_index
        while pos < n:
            if self._cur is None:
                self._open(s)
                if self._cur is None:         # the card failed: drop the rest
                    self.counts["dropped_samples"] += (n - pos) // 2
                    break
            room_seg = (self.seg_samples - self._cur.n_samples) * 2 - (self._fill - self._crc_done)
            take = min(n - pos, len(self._stage) - self._fill, room_seg)
            self._stage_mv[self._fill:self._fill + take] = mv[pos:pos + take]
            self._fill += take
            pos += take
            s += take // 2
            if self._fill == len(self._stage):
                self._commit()
            if self._cur is not None and self._cur.n_samples + (self._fill - self._crc_done) // 2 \
                    >= self.seg_samples:
                self._commit()
                self._cur = None
            if self._fault is not None:       # the card failed: drop the rest
                self.counts["dropped_samples"] += (n - pos) // 2
                break
        self._next = first_sample_index + n // 2

    def _recover(self, n_samples):
        """After a write failure, recording stays off (no slot is used up) until the
        failed segment's slot can be cleaned; tried every quarter second of audio."""
        self._fault_samples += n_samples
        if self._fault_samples < self.rate_hz // 4:
            return False
        self._fault_samples = 0
        if not self._close_tail(self._fault):
            return False
        self._fault = None
        self._next = None                     # resume in a new segment
        return True

    def _open(self, first_sample):
        utc = self.clock(first_sample) if self.clock is not None else None
        h = Header(self._next_seq, self.session, first_sample, 0, self.rate_hz,
                   utc or 0, (FLAG_UTC if utc else 0), 0, self._notes, [0] * self.n_stages)
        self._notes = []
        self._next_seq += 1
        self._cur = h
        self._fill = 0
        self._crc_done = 0
        self._stage_block = 0
        pack_header(self._hbuf, h)
        if not self._write(self._slot_block(h.seq), self._hbuf):
            self._cur = None
            self._fault = h
            self._fault_samples = 0
            return
        self.counts["segments_written"] += 1
        self.expire(utc, _EXPIRE_PER_SEGMENT)

    def _commit(self):
        """Write the staged blocks, then the header that makes them valid."""
        h = self._cur
        if h is None or self._fill == self._crc_done:
            return
        nblk = (self._fill + BLOCK_BYTES - 1) // BLOCK_BYTES
        for i in range(self._fill, nblk * BLOCK_BYTES):
            self._stage[i] = 0
        base = self._slot_block(h.seq) + 1 + self._stage_block
        if not self._write(base, self._stage_mv[:nblk * BLOCK_BYTES]):
            self.counts["dropped_samples"] += (self._fill - self._crc_done) // 2
            self._cur = None        # the segment ends at its last good commit
            self._fault = h         # see write(): nothing more until its tail is clean
            self._fault_samples = 0
            return
        h.data_crc = crc32(self._stage_mv[self._crc_done:self._fill], h.data_crc)
        h.stage_crcs[self._stage_block // self.stage_blocks] = crc32(self._stage_mv[:self._fill])
        h.n_samples += (self._fill - self._crc_done) // 2
        if not h.flags & FLAG_UTC and self.clock is not None:
            utc = self.clock(h.first_sample)
            if utc:
                h.utc_us = utc
                h.flags |= FLAG_UTC
        if h.n_samples >= self.seg_samples:
            h.flags |= FLAG_TAIL_CLEAN
        pack_header(self._hbuf, h)
        if self._write(self._slot_block(h.seq), self._hbuf) and self.card != CARD_OK:
            self.card = CARD_OK
        if self._fill == len(self._stage):
            self._stage_block += self.stage_blocks
            self._fill = 0
            self._crc_done = 0
        else:
            self._crc_done = self._fill

    def note(self, trigger_seq, onset_sample):
        """Record that trigger ``trigger_seq`` has its onset at ``onset_sample`` (this
        session) in the open segment's header, so a reboot can still find it."""
        notes = self._cur.notes if self._cur is not None else self._notes
        if len(notes) >= self.max_notes:
            self.counts["notes_dropped"] += 1
            return
        notes.append((trigger_seq, onset_sample))

    def flush(self):
        """Commit what is staged (a partly filled block is padded and rewritten later)."""
        if self._cur is not None:
            self._commit()

    def _close(self):
        """End the open segment early (gap or shutdown): commit it, zero the rest of its slot."""
        h = self._cur
        if h is None:
            return
        self._commit()
        self._cur = None
        if self.n_slots and not h.flags & FLAG_TAIL_CLEAN:
            self._close_tail(h)

    def close(self):
        """Orderly shutdown: commit and close the open segment."""
        self._close()
        self._next = None

    # -- reading (for the snippet service only) ----------------------------------------
    def find(self, sample_index, session=None):
        """Header of the segment of ``session`` (default: this one) holding
        ``sample_index``; AudioGone("expired") if none.  Binary search over the ring:
        (session, first_sample) grows with seq; blank or wiped slots are stepped over."""
        if self.n_slots == 0:
            raise AudioGone("no_card")
        session = self.session if session is None else session
        cur = self._cur
        if cur is not None and session == self.session and \
                sample_index >= cur.first_sample + cur.n_samples:
            self.flush()              # the sample is still in RAM: commit it first
        h = self._found
        if h is not None and h.session == session and h.seq >= self._next_seq - self.n_slots \
                and h.first_sample <= sample_index < h.first_sample + h.n_samples:
            return h                  # consecutive reads of one segment: no header reads
        lo = self._next_seq - self.n_slots
        hi = self._next_seq - 1
        found = None
        while lo <= hi:
            mid = (lo + hi) // 2
            probe = mid
            h = self.header(probe)
            while h is None and probe < hi:
                probe += 1
                h = self.header(probe)
            if h is None:
                hi = mid - 1
            elif h.session < session or (h.session == session and h.first_sample <= sample_index):
                if h.session == session:
                    found = h
                lo = probe + 1
            else:
                hi = mid - 1
        if found is None or sample_index >= found.first_sample + found.n_samples:
            raise AudioGone("expired")
        self._found = found
        return found

    def utc_us_of(self, sample_index, session=None):
        """UTC (us) of a held sample: the live clock for this session, else its segment's
        stamp; None if unknown."""
        session = self.session if session is None else session
        if session == self.session and self.clock is not None:
            return self.clock(sample_index)
        h = self.find(sample_index, session)
        if not h.flags & FLAG_UTC:
            return None
        return h.utc_us + (sample_index - h.first_sample) * 1000000 // h.rate_hz

    def read(self, first_sample, out, session=None):
        """Fill ``out`` (bytearray/memoryview, 2 bytes per sample) with the audio from
        ``first_sample`` on (of ``session``, default this one).  Every stage read is
        checked against its CRC.  Raises AudioGone("expired" | "corrupt" |
        "read_error" | "no_card" | "no_time")."""
        out = memoryview(out)
        n = len(out) // 2
        s = first_sample
        while s < first_sample + n:
            h = self._live(s, session)
            end = min(first_sample + n, h.first_sample + h.n_samples)
            self._copy(h, s, end, out[(s - first_sample) * 2:(end - first_sample) * 2])
            s = end
        return n

    def check(self, first_sample, n_samples, session=None):
        """Raise AudioGone unless samples ``[first_sample, first_sample + n_samples)`` are
        all held and may be served (headers only; the data is checked as it is read)."""
        s = first_sample
        while s < first_sample + n_samples:
            h = self._live(s, session)
            s = h.first_sample + h.n_samples

    def _live(self, sample_index, session=None):
        h = self.find(sample_index, session)
        if h.session == self.session:
            if self._expired(h, None):
                raise AudioGone("expired")
            return h
        now = self.clock(self._next) if self.clock is not None and self._next is not None else None
        if now is None:
            raise AudioGone("no_time")          # an earlier session's age needs UTC
        if self._expired(h, now):
            raise AudioGone("expired")
        return h

    def _load_stage(self, h, k):
        """Stage ``k`` of segment ``h`` in ``_rstage`` after checking its CRC; valid bytes."""
        sb = self.stage_blocks * BLOCK_BYTES
        valid = min(sb, h.n_samples * 2 - k * sb)
        key = (h.seq, k, valid)
        if self._rkey != key:
            self._rkey = None
            nblk = (valid + BLOCK_BYTES - 1) // BLOCK_BYTES
            block = self._slot_block(h.seq) + 1 + k * self.stage_blocks
            if not self._read(block, memoryview(self._rstage)[:nblk * BLOCK_BYTES]):
                raise AudioGone("read_error")
            if k >= len(h.stage_crcs) or \
                    crc32(memoryview(self._rstage)[:valid]) != h.stage_crcs[k]:
                self.counts["corrupt_segments"] += 1
                raise AudioGone("corrupt")
            self._rkey = key
        return valid

    def _copy(self, h, s0, s1, out):
        sb = self.stage_blocks * BLOCK_BYTES
        lo = (s0 - h.first_sample) * 2
        hi = (s1 - h.first_sample) * 2
        off = lo - lo % sb
        while off < hi:
            self._load_stage(h, off // sb)
            a = max(lo, off)
            b = min(hi, off + sb)
            out[a - lo:b - lo] = memoryview(self._rstage)[a - off:b - off]
            off += sb

    # -- health ------------------------------------------------------------------------------
    def health(self):
        """Dict for heartbeats: card state, capacity, counters, last error."""
        d = {"card": self.card, "capacity_s": self.capacity_s if self.n_slots else 0,
             "last_error": self.last_error}
        for k in self.counts:
            d[k] = self.counts[k]
        return d
