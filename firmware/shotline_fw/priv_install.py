"""Plug the privacy modules into the sensor app: ring buffer, snippets, signed commands.

Valid MicroPython and CPython.  ``install(app, card, ...)`` sets, on a
``shotline_fw.app.App``:

- ``app.audio_sink``  -> a ``Privacy`` object: every captured block goes to
  the ``AudioRing`` on ``card``; a snippet being sent advances by a few chunks
  per captured block, so a transfer never stalls capture;
- ``app.authorizer``  -> ``auth.Authorizer`` with the keys of ``keys.json``
  (``{"ed25519": [hex, ...]}``, as ``shotline provision`` writes it), the
  vendored Ed25519 verifier and counters persisted in ``auth_counters.json``;
- ``app.handlers[SNIPPET]`` and ``app.handlers[KEYS]`` (both signed-only);
- each trigger the app records is remembered (seq, onset sample) for snippets,
  and heartbeats/status carry an ``audio`` health dict (card state, counters,
  authorizer refusals by reason);
- when UTC first becomes known (the app's time quality leaves TIME_NONE),
  every slot of the ring is examined for expiry at once (``expire_all``);
- ``app.close`` (REBOOT, Ctrl-C) also closes the ring, committing its open
  segment.  Noting triggers, health and closing go through the app's
  ``audio_sink`` protocol (``write``, ``note_trigger``, ``health``, ``close``).

Without a card the ring reports ``card: missing`` and snippets are refused
(``no_card``); detection and trigger delivery do not depend on it.

Card layout: the ring uses blocks ``[first_block, end)``; the default leaves
the first 64 MiB (131072 blocks) to a FAT partition for files.
"""
import json

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from shotline_fw import auth, config, wire
from shotline_fw.audiobuf import AudioRing
from shotline_fw.cardregion import FAT_BLOCKS
from shotline_fw.snippets import SnippetRefused, SnippetService

RING_FIRST_BLOCK = FAT_BLOCKS          # the first 64 MiB hold the FAT file system
CHUNKS_PER_BLOCK = const(1)           # snippet chunks sent per captured audio block
SWEEP_CHUNK = const(256)              # headers read between watchdog feeds in expire_all
KEYS_FILE = "keys.json"
COUNTERS_FILE = "auth_counters.json"


def _utc_us(app):
    """``clock(sample_index) -> UTC us or None`` from the app's GPS time model."""
    def clock(sample_index):
        r = app.time.utc(sample_index << 8, app.now_q8())
        if r[2] == wire.TIME_NONE:
            return None
        return r[0] * 1000000 + r[1]
    return clock


class Privacy:
    """The app's audio sink and the SNIPPET/KEYS command handlers."""

    def __init__(self, app, ring, service, authorizer, keys_path):
        self.app = app
        self.ring = ring
        self.service = service
        self.authorizer = authorizer
        self.keys_path = keys_path
        self._sending = None          # (command seq, info, chunk generator)
        self.utc_swept = False        # the full expiry sweep at the first UTC was done

    # -- audio sink --------------------------------------------------------
    def write(self, block, first_sample_index):
        self.ring.write(block, first_sample_index)
        if not self.utc_swept and self.ring.clock is not None:
            now_utc_us = self.ring.clock(first_sample_index)
            if now_utc_us is not None:            # time quality just left TIME_NONE
                self.expire_all(now_utc_us)
        if self._sending is not None:
            self._pump(CHUNKS_PER_BLOCK)

    def expire_all(self, now_utc_us):
        """Examine every slot of the ring for expiry at once (when UTC first becomes
        known: audio from before a long power-off goes now, not segment by segment).
        Feeds the watchdog between chunks; the capture ring overruns meanwhile
        (counted, like any stall)."""
        ring = self.ring
        wdt = getattr(getattr(self.app, "hw", None), "wdt", None)
        left = ring.n_slots
        while left > 0:
            ring.expire(now_utc_us, min(left, SWEEP_CHUNK))
            left -= SWEEP_CHUNK
            if wdt is not None:
                wdt.feed()
        self.utc_swept = True

    def _pump(self, n):
        seq, info, chunks = self._sending
        for _ in range(n):
            try:
                body = next(chunks)
            except StopIteration:
                self._sending = None
                self.app.respond(seq, info)
                return
            except SnippetRefused as exc:      # audio failed its CRC mid-transfer
                self._sending = None
                self.app.respond(seq, {"ok": False, "status": "refused", "error": exc.args[0]})
                return
            self.app.send(wire.SNIPPET_CHUNK, body, seq)

    # -- commands ------------------------------------------------------------
    def cmd_snippet(self, app, seq, body):
        if self._sending is not None:
            return {"ok": False, "status": "busy", "error": "a snippet is being sent"}
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        try:
            info, chunks = self.service.snippet(request)
        except SnippetRefused as exc:
            return {"ok": False, "status": "refused", "error": exc.args[0]}
        info["ok"] = True
        info["status"] = "ok"
        info["sensor_id"] = getattr(app, "sensor_id", None)
        self._sending = (seq, info, chunks)
        return None

    def cmd_keys(self, app, seq, body):
        try:
            keys = auth.parse_keys(json.loads(body))
        except ValueError as exc:
            return {"ok": False, "status": "bad_request", "error": str(exc)}
        auth.save_keys(self.keys_path, keys)
        self.authorizer.set_keys(keys)
        return {"key_ids": self.authorizer.key_ids}

    def note_trigger(self, seq, onset_sample):
        self.service.note_trigger(seq, onset_sample)

    def close(self):
        self.ring.close()              # commit the open segment before a reset / Ctrl-C

    def health(self):
        d = self.ring.health()
        d["snippets_served"] = self.service.counts["served"]
        d["snippets_refused"] = self.service.counts["refused"]
        d["auth"] = dict((k, v) for k, v in self.authorizer.counts.items() if v)
        return d


def install(app, card, root="", verify=None, first_block=RING_FIRST_BLOCK, n_blocks=None,
            **ring_options):
    """Wire the privacy modules into ``app`` (see the module docstring); returns ``Privacy``.

    ``card``: raw SD block device or None; ``root``: folder of ``keys.json`` and
    the counters; ``verify``: Ed25519 verifier (default: the vendored native one).
    """
    prefix = root + "/" if root else ""
    try:
        keys = auth.load_keys(prefix + KEYS_FILE)
    except (OSError, ValueError):
        keys = []
    verify = verify if verify is not None else auth.default_verifier()
    authorizer = auth.Authorizer(keys, verify, auth.CounterFile(prefix + COUNTERS_FILE),
                                 allow_empty=True)
    rate_hz = app.rate_hz if app.capture is not None else config.DEFAULTS["sample_rate_hz"]
    clock = _utc_us(app) if app.capture is not None else None
    ring = AudioRing(card, rate_hz, clock, first_block=first_block, n_blocks=n_blocks,
                     **ring_options)
    service = SnippetService(ring, rate_hz)     # before mount: it learns the held triggers
    if card is not None:
        ring.mount(now_utc_us=None)
    privacy = Privacy(app, ring, service, authorizer, prefix + KEYS_FILE)
    app.authorizer = authorizer
    app.audio_sink = privacy
    app.handlers[wire.SNIPPET] = privacy.cmd_snippet
    app.handlers[wire.KEYS] = privacy.cmd_keys
    app.signed_only.add(wire.SNIPPET)
    app.signed_only.add(wire.KEYS)
    return privacy
