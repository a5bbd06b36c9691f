"""Shotline wire protocol: one codec for the board and the host.

Valid MicroPython and CPython.  The full specification is ``docs/protocol.md``.

A frame is one text line::

    ~SL:<base64(packet)>\\n

    packet = version u8 | type u8 | seq u32 | ref u32 | body | crc32 u32
             (little-endian; CRC-32/IEEE over everything before it)

The line alphabet (``~SL:``, base64, ``\\r\\n``) contains no control byte, so a
Ctrl-C (0x03) or Ctrl-A (0x01) on the wire can only come from ``mpremote``:
the board keeps ``micropython.kbd_intr(3)``, so mpremote's break stops the
application and reaches the REPL.  Anything that is not a valid frame line
(REPL output, a traceback, noise) is skipped and counted; the decoder
resynchronises at the next newline or ``~SL:``.

``seq`` counts the sender's frames (mod 2**32); ``ref`` is, in a response,
the ``seq`` of the command it answers (0 otherwise).  Triggers are
acknowledged by their own trigger sequence number with an ACK message.
JSON bodies are UTF-8 objects; SNIPPET_CHUNK and SIGNED bodies are binary.

Example::

    >>> line = encode_json(HEARTBEAT, 7, {"uptime_s": 3})
    >>> d = StreamDecoder()
    >>> [(f.type, f.seq, f.json()) for f in d.feed(b"noise\\r\\n" + line)]
    [(3, 7, {'uptime_s': 3})]
"""
import binascii
import json
import struct

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

PROTOCOL_VERSION = const(1)
MAGIC = b"~SL:"
MAX_LINE = const(6144)       # longest frame line accepted, bytes (base64 text)
MAX_PACKET = const(4600)     # longest packet (header + body + crc), bytes
_HEADER = "<BBII"
_HEADER_N = const(10)
_CRC_N = const(4)

# ---- message types ------------------------------------------------------
# board -> host
HELLO = const(0x01)          # JSON: identity, versions, config digest (also host -> board: "say hello")
TRIGGER = const(0x02)        # JSON: one trigger record (see docs/protocol.md)
HEARTBEAT = const(0x03)      # JSON: health
RESPONSE = const(0x04)       # JSON: {"ok": bool, "status": str, ...}; ref = command seq
SNIPPET_CHUNK = const(0x05)  # binary: see encode_snippet_chunk
LOG = const(0x06)            # JSON: {"level": str, "msg": str} (safe mode errors, warnings)
# host -> board
ACK = const(0x20)            # JSON: {"seqs": [trigger seq, ...]}; idempotent, no response
STATUS_GET = const(0x40)     # -> RESPONSE with the heartbeat fields
CONFIG_GET = const(0x41)     # -> RESPONSE {"config": {...}, "digest": str}
CONFIG_SET = const(0x42)     # JSON {"config": {partial}} -> RESPONSE; signed; applied at reboot
TIME_GET = const(0x43)       # -> RESPONSE with time state
SELF_TEST = const(0x44)      # -> RESPONSE {"checks": {name: "ok" | error}}
SNIPPET = const(0x45)        # JSON {"trigger_seq": n} -> SNIPPET_CHUNK... then RESPONSE; signed
KEYS = const(0x46)           # JSON {"keys": [{"key_id": hex16, "public_key": hex64}]}; signed
REBOOT = const(0x47)         # -> RESPONSE, then machine.reset(); signed
SIGNED = const(0x7F)         # binary envelope around one command, see encode_signed

# Commands the board accepts: type -> (name, must arrive in a SIGNED envelope).
# No command streams live audio or reads an arbitrary range of audio: the only
# audio leaving the board is SNIPPET, addressed by trigger sequence number.
COMMANDS = {
    HELLO: ("hello", False),
    ACK: ("ack", False),
    STATUS_GET: ("status", False),
    CONFIG_GET: ("config_get", False),
    CONFIG_SET: ("config_set", True),
    TIME_GET: ("time", False),
    SELF_TEST: ("self_test", False),
    SNIPPET: ("snippet", True),
    KEYS: ("keys", True),
    REBOOT: ("reboot", True),
}

NAMES = {
    HELLO: "hello", TRIGGER: "trigger", HEARTBEAT: "heartbeat", RESPONSE: "response",
    SNIPPET_CHUNK: "snippet_chunk", LOG: "log", ACK: "ack", STATUS_GET: "status",
    CONFIG_GET: "config_get", CONFIG_SET: "config_set", TIME_GET: "time",
    SELF_TEST: "self_test", SNIPPET: "snippet", KEYS: "keys", REBOOT: "reboot",
    SIGNED: "signed",
}

# Trigger feature names, in this order everywhere.
FEATURES = (
    "onset_sample", "onset_frac", "peak_dbfs", "noise_dbfs", "snr_db", "rise_time_s",
    "width_s", "decay_s", "band_low_db", "band_mid_db", "band_high_db", "sta_lta",
)

# Time quality states carried in every trigger ("time_quality").
TIME_NONE = "none"          # no UTC yet: utc_s/utc_us are 0, do not locate
TIME_NMEA = "nmea"          # UTC from NMEA only (no PPS): about +-0.5 s
TIME_PPS = "pps"            # locked to PPS
TIME_HOLDOVER = "holdover"  # PPS lost, running on the crystal since the last fit


class WireError(ValueError):
    """A packet that cannot be decoded (bad CRC, truncated, bad base64, ...)."""


# ---- CRC-32 (IEEE 802.3, as zlib.crc32) ---------------------------------
try:
    _crc32 = binascii.crc32
except AttributeError:  # ports built without it
    _crc32 = None
_CRC_TABLE = None


def _crc_table():
    global _CRC_TABLE
    import array
    t = array.array("I", [0] * 256)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t[i] = c
    _CRC_TABLE = t
    return t


def crc32_py(data, crc=0):
    """CRC-32/IEEE of ``data`` continuing from ``crc`` (pure Python, table driven)."""
    t = _CRC_TABLE or _crc_table()
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32(data, crc=0):
    """CRC-32/IEEE of ``data`` (same as ``zlib.crc32``)."""
    if _crc32 is not None:
        return _crc32(data, crc) & 0xFFFFFFFF
    return crc32_py(data, crc)


# ---- packets and frames ---------------------------------------------------
class Frame:
    """One decoded packet: ``version``, ``type``, ``seq``, ``ref``, ``body`` (bytes)."""

    def __init__(self, version, msg_type, seq, ref, body):
        self.version = version
        self.type = msg_type
        self.seq = seq
        self.ref = ref
        self.body = body

    @property
    def name(self):
        return NAMES.get(self.type, "type_%d" % self.type)

    def json(self):
        """The body as a JSON object (dict); WireError if it is not one."""
        try:
            obj = json.loads(self.body) if self.body else {}
        except ValueError:
            raise WireError("body is not JSON")
        if not isinstance(obj, dict):
            raise WireError("body is not a JSON object")
        return obj

    def __repr__(self):
        return "Frame(%s, seq=%d, ref=%d, %d bytes)" % (self.name, self.seq, self.ref, len(self.body))


def encode_packet(msg_type, seq, body=b"", ref=0):
    """Binary packet (header, body, CRC) without the line framing."""
    if len(body) + _HEADER_N + _CRC_N > MAX_PACKET:
        raise WireError("body too long: %d bytes" % len(body))
    head = struct.pack(_HEADER, PROTOCOL_VERSION, msg_type, seq & 0xFFFFFFFF, ref & 0xFFFFFFFF)
    crc = crc32(body, crc32(head))
    return head + body + struct.pack("<I", crc)


def decode_packet(packet):
    """Frame from a binary packet; raises WireError (CRC, length, version)."""
    n = len(packet)
    if n < _HEADER_N + _CRC_N:
        raise WireError("packet too short: %d bytes" % n)
    (crc,) = struct.unpack("<I", packet[n - _CRC_N:])
    if crc32(packet[:n - _CRC_N]) != crc:
        raise WireError("bad CRC")
    version, msg_type, seq, ref = struct.unpack(_HEADER, packet[:_HEADER_N])
    if version != PROTOCOL_VERSION:
        raise WireError("unsupported protocol version %d" % version)
    return Frame(version, msg_type, seq, ref, bytes(packet[_HEADER_N:n - _CRC_N]))


def encode_frame(msg_type, seq, body=b"", ref=0):
    """One frame line (bytes, ending in ``\\n``) carrying a binary ``body``."""
    b64 = binascii.b2a_base64(encode_packet(msg_type, seq, body, ref))
    if b64[-1:] != b"\n":
        b64 += b"\n"
    return MAGIC + b64


def encode_json(msg_type, seq, obj, ref=0):
    """One frame line carrying ``obj`` (a dict) as a compact JSON body."""
    return encode_frame(msg_type, seq, dumps(obj), ref)


def dumps(obj):
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


def decode_line(line):
    """Frame from one line (with or without MAGIC and newline); WireError if invalid."""
    i = bytes(line).rfind(MAGIC)
    if i >= 0:
        line = line[i + len(MAGIC):]
    line = bytes(line).strip()
    try:
        packet = binascii.a2b_base64(line)
    except (ValueError, TypeError):
        raise WireError("bad base64")
    return decode_packet(packet)


class StreamDecoder:
    """Frames from a byte stream, resynchronising after garbage.

    ``feed(data) -> [Frame, ...]``.  Lines without ``~SL:`` are text (REPL
    output, tracebacks): passed to ``on_text(bytes)`` if given, else counted.
    Counters: ``frames``, ``text_lines``, ``bad`` (lines starting a frame that
    failed to decode), ``overflows`` (lines longer than MAX_LINE, dropped);
    ``last_error`` holds the reason of the last bad frame.
    """

    def __init__(self, on_text=None, max_line=MAX_LINE):
        self._line = bytearray(max_line)
        self._mv = memoryview(self._line)
        self._n = 0
        self._overflow = False
        self.on_text = on_text
        self.frames = 0
        self.text_lines = 0
        self.bad = 0
        self.overflows = 0
        self.last_error = None

    def feed(self, data):
        out = []
        data = bytes(data)
        n = len(data)
        start = 0
        while start < n:
            i = data.find(b"\n", start)
            end = n if i < 0 else i
            self._append(data, start, end)
            if i < 0:
                break
            self._end_line(out)
            start = i + 1
        return out

    def _append(self, data, start, end):
        k = end - start
        if self._overflow or k == 0:
            return
        if self._n + k > len(self._line):
            # Too long for a frame: keep only a frame that starts in the tail.
            j = data.rfind(MAGIC, start, end)
            self.overflows += 1
            if j < 0:
                self._overflow = True
                self._n = 0
                return
            self._n = 0
            start = j
            k = end - start
            if k > len(self._line):
                self._overflow = True
                return
        self._mv[self._n:self._n + k] = data[start:end]
        self._n += k

    def _end_line(self, out):
        line = bytes(self._mv[:self._n])
        self._n = 0
        if self._overflow:
            self._overflow = False
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return
        i = line.rfind(MAGIC)
        if i < 0:
            self.text_lines += 1
            if self.on_text is not None:
                self.on_text(line)
            return
        if i > 0:
            self.text_lines += 1
            if self.on_text is not None:
                self.on_text(line[:i])
        try:
            out.append(decode_line(line[i:]))
            self.frames += 1
        except WireError as exc:
            self.bad += 1
            self.last_error = str(exc)


# ---- binary bodies ---------------------------------------------------------
_CHUNK_HEAD = "<IHHHI"   # trigger_seq, index, total, n_samples, crc32(samples)
_CHUNK_HEAD_N = const(14)
SNIPPET_CHUNK_SAMPLES = const(1024)   # int16 samples per chunk (2048 bytes)


def encode_snippet_chunk(trigger_seq, index, total, samples):
    """SNIPPET_CHUNK body: header + ``samples`` (int16 little-endian bytes)."""
    n = len(samples) // 2
    if len(samples) != 2 * n or n > SNIPPET_CHUNK_SAMPLES:
        raise WireError("chunk must hold at most %d int16 samples" % SNIPPET_CHUNK_SAMPLES)
    if not 0 <= index < total:
        raise WireError("chunk index out of range")
    return struct.pack(_CHUNK_HEAD, trigger_seq, index, total, n, crc32(samples)) + bytes(samples)


def decode_snippet_chunk(body):
    """``(trigger_seq, index, total, samples_bytes)``; WireError on a bad chunk."""
    if len(body) < _CHUNK_HEAD_N:
        raise WireError("snippet chunk too short")
    trigger_seq, index, total, n, crc = struct.unpack(_CHUNK_HEAD, body[:_CHUNK_HEAD_N])
    samples = bytes(body[_CHUNK_HEAD_N:])
    if len(samples) != 2 * n:
        raise WireError("snippet chunk length mismatch")
    if crc32(samples) != crc:
        raise WireError("snippet chunk sample CRC mismatch")
    if index >= total:
        raise WireError("snippet chunk index out of range")
    return trigger_seq, index, total, samples


_SIGNED_HEAD = "<Q8s64s"   # counter, key_id, signature
_SIGNED_HEAD_N = const(80)
KEY_ID_N = const(8)
SIGNATURE_N = const(64)
SIGNING_DOMAIN = b"shotline-cmd-v2"
UID_MAX_N = const(255)


def command_bytes(msg_type, body):
    """The bytes a SIGNED envelope carries for one command: type byte + body."""
    return bytes((msg_type,)) + bytes(body)


def signed_message(command, counter, key_id, uid):
    """What the key signs: domain | uid length u8 | uid | counter u64 LE | key_id | command.

    ``uid`` is the target board's unique id (bytes, HELLO ``uid`` in hex): a
    command signed for one board does not verify on any other.
    """
    uid = bytes(uid)
    if not 0 < len(uid) <= UID_MAX_N:
        raise WireError("board uid must be 1..255 bytes")
    return (SIGNING_DOMAIN + bytes((len(uid),)) + uid + struct.pack("<Q", counter)
            + bytes(key_id) + bytes(command))


def encode_signed(command, counter, key_id, signature):
    """SIGNED body: counter u64 | key_id 8 bytes | Ed25519 signature 64 bytes | command bytes."""
    if len(key_id) != KEY_ID_N or len(signature) != SIGNATURE_N:
        raise WireError("key_id must be 8 bytes and signature 64 bytes")
    if not command:
        raise WireError("empty command")
    return struct.pack(_SIGNED_HEAD, counter, bytes(key_id), bytes(signature)) + bytes(command)


def decode_signed(body):
    """``(command_bytes, counter, key_id, signature)``; WireError if malformed."""
    if len(body) < _SIGNED_HEAD_N + 1:
        raise WireError("signed envelope too short")
    counter, key_id, signature = struct.unpack(_SIGNED_HEAD, body[:_SIGNED_HEAD_N])
    return bytes(body[_SIGNED_HEAD_N:]), counter, key_id, signature


def split_command(command):
    """``(msg_type, body)`` from command bytes."""
    return command[0], bytes(command[1:])


# ---- host-side helpers ------------------------------------------------------
def trigger_record(body):
    """Flat host record from a TRIGGER body (dict): adds ``onset_utc_s`` (float
    POSIX seconds), ``lat_deg``/``lon_deg`` from ``lat_e7``/``lon_e7``.
    CPython only (MicroPython on the board has single-precision floats)."""
    rec = dict(body)
    rec["onset_utc_s"] = rec.pop("utc_s") + rec.pop("utc_us") / 1e6
    if "lat_e7" in rec:
        rec["lat_deg"] = rec.pop("lat_e7") / 1e7
    if "lon_e7" in rec:
        rec["lon_deg"] = rec.pop("lon_e7") / 1e7
    return rec
