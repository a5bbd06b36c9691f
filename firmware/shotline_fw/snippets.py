"""Snippet service: the only way audio can leave the sensor.

Valid MicroPython and CPython.  A snippet is the audio around a trigger this
sensor itself emitted and still holds, from at most ``PRE_MS`` before
its onset to at most ``POST_MS`` after, read from the ``audiobuf.AudioRing``
and sent as SNIPPET_CHUNK messages (each with its CRC-32) of at most
``wire.SNIPPET_CHUNK_SAMPLES`` samples.  Everything else is refused with a
reason code:

``bad_request``   the request is not ``{"trigger_seq": n}`` (optionally with
                  ``pre_ms``/``post_ms`` within the limits)
``window``        a window wider than onset - 2 s .. onset + 4 s
``unknown_trigger`` a sequence number this sensor did not emit (or forgot)
``not_yet``       the window's end has not been recorded yet (ask again later)
``expired`` / ``corrupt`` / ``read_error`` / ``no_card``  from the ring
``no_time``       a trigger of an earlier boot, before UTC is known again

Triggers are remembered in RAM and in the ring's segment headers, so after
a reboot the triggers whose audio is still held are known again (``mount``
reports them through ``ring.on_note``).

Example::

    service = SnippetService(ring, 16000)
    service.note_trigger(seq, onset_sample)          # the app, on each trigger
    info, chunks = service.snippet({"trigger_seq": seq})
    for body in chunks:                              # SNIPPET_CHUNK bodies
        send(wire.SNIPPET_CHUNK, body)
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from shotline_fw import wire
from shotline_fw.audiobuf import AudioGone

PRE_MS = const(2000)
POST_MS = const(4000)
_REQUEST_KEYS = ("trigger_seq", "pre_ms", "post_ms")


class SnippetRefused(Exception):
    """A refused snippet request; ``args[0]`` is the reason code."""


class SnippetService:
    """Serves snippets of noted triggers from ``ring`` (an ``AudioRing``).

    ``rate_hz``: nominal sample rate; ``capacity``: triggers remembered (the
    oldest is forgotten first; a forgotten trigger is ``unknown_trigger``).
    """

    def __init__(self, ring, rate_hz, capacity=256):
        self.ring = ring
        self.rate_hz = rate_hz
        self.capacity = capacity
        self._seq = [-1] * capacity
        self._session = [0] * capacity
        self._onset = [0] * capacity
        self._next = 0
        ring.on_note = self._remember
        self._chunk = bytearray(2 * wire.SNIPPET_CHUNK_SAMPLES)
        self.counts = {"served": 0, "refused": 0}

    def note_trigger(self, trigger_seq, onset_sample):
        """Remember a trigger this sensor emitted (its onset, in samples of this session)."""
        self._remember(trigger_seq, self.ring.session, onset_sample)
        self.ring.note(trigger_seq, onset_sample)

    def _remember(self, trigger_seq, session, onset_sample):
        i = self._next
        self._seq[i] = trigger_seq
        self._session[i] = session
        self._onset[i] = onset_sample
        self._next = (i + 1) % self.capacity

    def _find(self, trigger_seq):
        """(session, onset) of the most recent note of ``trigger_seq``, or None."""
        for k in range(1, self.capacity + 1):
            i = (self._next - k) % self.capacity
            if self._seq[i] == trigger_seq:
                return self._session[i], self._onset[i]
        return None

    def window(self, request):
        """``(trigger_seq, session, first_sample, n_samples)`` for a request dict, or
        SnippetRefused."""
        if not isinstance(request, dict):
            raise self._refuse("bad_request")
        for k in request:
            if k not in _REQUEST_KEYS:
                raise self._refuse("bad_request")
        seq = request.get("trigger_seq")
        pre_ms = request.get("pre_ms", PRE_MS)
        post_ms = request.get("post_ms", POST_MS)
        for v in (seq, pre_ms, post_ms):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise self._refuse("bad_request")
        if pre_ms > PRE_MS or post_ms > POST_MS or pre_ms + post_ms == 0:
            raise self._refuse("window")
        if self.ring.n_slots == 0:
            raise self._refuse("no_card")
        found = self._find(seq)
        if found is None:
            raise self._refuse("unknown_trigger")
        session, onset = found
        first = max(0, onset - pre_ms * self.rate_hz // 1000)
        end = onset + post_ms * self.rate_hz // 1000
        if session == self.ring.session and \
                (self.ring.next_sample is None or end > self.ring.next_sample):
            raise self._refuse("not_yet")
        return seq, session, first, end - first

    def _refuse(self, reason):
        self.counts["refused"] += 1
        return SnippetRefused(reason)

    def snippet(self, request):
        """Validate ``request`` and check the audio; returns ``(info, chunks)``.

        ``info``: dict for the final RESPONSE (``trigger_seq``, ``first_sample_index``,
        ``n_samples``, ``sample_rate_hz``, ``chunks``, ``start_utc_us`` or None);
        ``chunks``: generator of SNIPPET_CHUNK bodies.  Raises SnippetRefused, here
        or (audio that fails its CRC as it is read) from the generator.
        """
        seq, session, first, n = self.window(request)
        try:
            self.ring.check(first, n, session)
            start_utc_us = self.ring.utc_us_of(first, session)
        except AudioGone as exc:
            raise self._refuse(exc.args[0])
        total = (n + wire.SNIPPET_CHUNK_SAMPLES - 1) // wire.SNIPPET_CHUNK_SAMPLES
        info = {"trigger_seq": seq, "first_sample_index": first, "n_samples": n,
                "sample_rate_hz": self.rate_hz, "chunks": total, "boot_session": session,
                "start_utc_us": start_utc_us}
        return info, self._chunks(seq, session, first, n, total)

    def _chunks(self, seq, session, first, n, total):
        for i in range(total):
            s = first + i * wire.SNIPPET_CHUNK_SAMPLES
            k = min(wire.SNIPPET_CHUNK_SAMPLES, first + n - s)
            buf = memoryview(self._chunk)[:2 * k]
            try:
                self.ring.read(s, buf, session)
            except AudioGone as exc:
                raise self._refuse(exc.args[0])
            yield wire.encode_snippet_chunk(seq, i, total, buf)
        self.counts["served"] += 1          # only a completed transfer counts as served
