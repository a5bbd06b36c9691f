"""Fetch audio snippets from a sensor (signed request), verify, store as FLAC, audit.

The only audio a sensor ever releases is the snippet around one of its own
triggers (onset - 2 s .. onset + 4 s), on a SNIPPET command signed by an
authorised key (``shotline.keys``).  This module sends that request over a
``shotline.link.Link``, checks every SNIPPET_CHUNK (CRC-32, index, count,
length), writes a 16-bit FLAC whose tags carry the UTC start, and appends
one record per request -- served, refused or failed -- to an append-only,
hash-chained JSON-lines audit log (who asked, when, for what, and why).

Example::

    with Link("/dev/ttyACM0") as link:
        snip = fetch(link, Signer.load(), trigger_seq=12, sensor_id="S1")
    path, sha = save_flac(snip, "snippets")
"""
import dataclasses
import getpass
import hashlib
import json
import os
import socket
import time
from pathlib import Path

import numpy as np

from shotline.timeutil import format_utc
from shotline_fw import wire

AUDIT_NAME = "audit.jsonl"


class SnippetError(Exception):
    """A snippet that could not be fetched or failed verification."""


class SnippetRefused(SnippetError):
    """The sensor refused the request; ``status`` and ``reason`` say why."""

    def __init__(self, status, reason):
        super().__init__(f"sensor refused: {status}: {reason}")
        self.status = status
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Snippet:
    """Audio of one trigger's window as the sensor recorded it.

    ``samples``: int16 array; ``first_sample_index``: the sensor's sample index
    of ``samples[0]``; ``start_utc_s``: UTC (POSIX s) of ``samples[0]`` or None
    if the sensor had no time then.
    """

    sensor_id: str
    trigger_seq: int
    first_sample_index: int
    sample_rate_hz: int
    start_utc_s: float | None
    samples: np.ndarray
    key_id: str

    @property
    def duration_s(self):
        return len(self.samples) / self.sample_rate_hz


def board_uid(link, timeout_s=3.0):
    """The unique id (hex) of the board on ``link``, from its answer to a HELLO."""
    from shotline.link import LinkTimeout

    seq = link.next_seq()
    link.write(wire.encode_frame(wire.HELLO, seq, b"{}"))
    try:
        frame = link.wait_for(lambda f: f.ref == seq and f.type == wire.HELLO, timeout_s)
    except LinkTimeout as exc:
        raise SnippetError(f"no HELLO from the board: {exc}") from None
    uid = frame.json().get("uid")
    try:
        bytes.fromhex(uid)
    except (TypeError, ValueError):
        raise SnippetError(f"board HELLO has no valid uid: {uid!r}") from None
    return uid


def fetch(link, signer, trigger_seq, *, sensor_id=None, uid=None, timeout_s=20.0):
    """Request the snippet of ``trigger_seq`` over ``link`` (open ``Link``); returns ``Snippet``.

    The request is signed for the board's unique id ``uid`` (hex; asked with a
    HELLO when None), so it is valid on no other board.  ``timeout_s`` bounds
    the wait for each next frame (seconds, monotonic).  Raises SnippetRefused
    when the sensor says no, SnippetError on a bad or incomplete transfer.
    """
    from shotline.link import LinkTimeout

    uid = board_uid(link, min(timeout_s, 3.0)) if uid is None else uid
    body = signer.sign(wire.SNIPPET, json.dumps({"trigger_seq": int(trigger_seq)}).encode(), uid)
    seq = link.next_seq()
    link.write(wire.encode_frame(wire.SIGNED, seq, body))
    chunks = {}
    total = None
    while True:
        try:
            frame = link.wait_for(lambda f: f.ref == seq and f.type in
                                  (wire.SNIPPET_CHUNK, wire.RESPONSE), timeout_s)
        except LinkTimeout as exc:
            raise SnippetError(f"trigger {trigger_seq}: transfer stalled after "
                               f"{len(chunks)} chunks: {exc}") from None
        if frame.type == wire.RESPONSE:
            answer = frame.json()
            break
        try:
            t_seq, index, n, samples = wire.decode_snippet_chunk(frame.body)
        except wire.WireError as exc:
            raise SnippetError(f"trigger {trigger_seq}: bad chunk: {exc}") from None
        if t_seq != trigger_seq or (total is not None and n != total) or index in chunks:
            raise SnippetError(f"trigger {trigger_seq}: inconsistent chunk {index}/{n} "
                               f"for trigger {t_seq}")
        total = n
        chunks[index] = samples
    if not answer.get("ok"):
        raise SnippetRefused(answer.get("status", "error"), answer.get("error", ""))
    want = answer.get("chunks")
    if want != len(chunks) or sorted(chunks) != list(range(len(chunks))):
        raise SnippetError(f"trigger {trigger_seq}: got chunks {sorted(chunks)} of {want}")
    audio = np.frombuffer(b"".join(chunks[i] for i in range(len(chunks))), dtype="<i2").copy()
    if len(audio) != answer.get("n_samples"):
        raise SnippetError(f"trigger {trigger_seq}: {len(audio)} samples, sensor said "
                           f"{answer.get('n_samples')}")
    start_us = answer.get("start_utc_us")
    return Snippet(sensor_id=str(sensor_id or answer.get("sensor_id") or ""),
                   trigger_seq=int(trigger_seq),
                   first_sample_index=int(answer["first_sample_index"]),
                   sample_rate_hz=int(answer["sample_rate_hz"]),
                   start_utc_s=None if start_us is None else start_us / 1e6,
                   samples=audio, key_id=signer.key_id.hex())


def file_name(snip):
    """``<sensor>_<seq>_<UTC start, basic ISO>.flac`` (``notime`` without UTC)."""
    stamp = "notime" if snip.start_utc_s is None else \
        format_utc(snip.start_utc_s, 3).replace("-", "").replace(":", "")
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in snip.sensor_id) or "sensor"
    return f"{safe}_{snip.trigger_seq}_{stamp}.flac"


def save_flac(snip, out_dir):
    """Write ``snip`` as 16-bit FLAC in ``out_dir``; returns ``(path, sha256 hex)``.

    Tags: ``date`` = UTC start (ISO 8601), ``comment`` = JSON with sensor, trigger,
    first sample index and rate.  Written to a temporary name, then renamed; the
    folder is created 0750 and the file is 0640 (audio is personal data)."""
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True, mode=0o750)
    path = out / file_name(snip)
    tmp = path.with_name(path.name + ".part")
    with sf.SoundFile(tmp, "w", samplerate=snip.sample_rate_hz, channels=1,
                      subtype="PCM_16", format="FLAC") as f:
        f.date = "" if snip.start_utc_s is None else format_utc(snip.start_utc_s)
        f.comment = json.dumps({"sensor_id": snip.sensor_id, "trigger_seq": snip.trigger_seq,
                                "first_sample_index": snip.first_sample_index,
                                "sample_rate_hz": snip.sample_rate_hz,
                                "start_utc_s": snip.start_utc_s})
        f.write(snip.samples)
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


class AuditLog:
    """Append-only JSON-lines log; each record carries the SHA-256 of the previous line
    (``prev``), so removing or editing any line but the newest breaks the chain
    (``verify``).  The newest line's hash (the chain head) can be noted elsewhere
    to cover that one too."""

    def __init__(self, path):
        self.path = Path(path)

    def _last_hash(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 65536))
                lines = f.read().splitlines()
        except FileNotFoundError:
            return "0" * 64
        return hashlib.sha256(lines[-1]).hexdigest() if lines else "0" * 64

    def append(self, record):
        """Append one record (a dict); adds ``utc``, ``user``, ``host`` and ``prev``."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            rec = {"utc": format_utc(time.time()), "user": _user(), "host": socket.gethostname()}
            rec.update(record)
            rec["prev"] = self._last_hash()
            os.write(fd, (json.dumps(rec, separators=(",", ":"), sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return rec

    def records(self):
        with open(self.path, "rb") as f:
            return [json.loads(line) for line in f if line.strip()]

    def verify(self):
        """Index of the first record whose ``prev`` does not match, or None if intact."""
        prev = "0" * 64
        with open(self.path, "rb") as f:
            for i, line in enumerate(f.read().splitlines()):
                if json.loads(line).get("prev") != prev:
                    return i
                prev = hashlib.sha256(line).hexdigest()
        return None


def _user():
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def fetch_and_store(link, signer, sensor_id, trigger_seq, *, out_dir, audit, reason,
                    event_id=None, store=None, timeout_s=20.0):
    """Fetch one snippet, save it, record it in ``store`` (if given) and in ``audit``.

    Every outcome is audited before this returns or raises.  Returns a dict
    (the audit record)."""
    base = {"sensor_id": sensor_id, "trigger_seq": int(trigger_seq), "event_id": event_id,
            "reason": reason, "key_id": signer.key_id.hex(), "port": getattr(link, "url", None)}
    try:
        snip = fetch(link, signer, trigger_seq, sensor_id=sensor_id, timeout_s=timeout_s)
    except SnippetRefused as exc:
        return audit.append(dict(base, status="refused", error=f"{exc.status}: {exc.reason}"))
    except Exception as exc:
        audit.append(dict(base, status="failed", error=str(exc)))
        raise
    path, sha = save_flac(snip, out_dir)
    if store is not None:
        store.insert_snippet(sensor_id, trigger_seq, start_utc_s=snip.start_utc_s or 0.0,
                             sample_rate_hz=snip.sample_rate_hz, n_samples=len(snip.samples),
                             path=str(path), sha256=sha, requested_by=_user())
    return audit.append(dict(base, status="ok", path=str(path), sha256=sha,
                             start_utc=None if snip.start_utc_s is None else format_utc(snip.start_utc_s),
                             n_samples=len(snip.samples), sample_rate_hz=snip.sample_rate_hz))
