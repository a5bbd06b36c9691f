"""HTTP webhook delivery through a durable SQLite outbox.

An alert is first written to the ``webhook_outbox`` table of the store (one
durable transaction), then POSTed.  So an alert survives a crash or restart
of the host, and a receiver that is down for a while gets it later.

- Each message has an ``Idempotency-Key`` header, stable per alert
  (:func:`alert_key`), and the same body on every attempt: a receiver that
  keeps the keys it has seen records each alert once even when a response was
  lost and the POST is repeated.  Enqueuing the same key twice stores it once.
- Retries: on a network error, a timeout, HTTP 408, 429 or 5xx.  The n-th
  retry waits ``min(max_delay_s, base_delay_s * 2**(n-1))`` with "equal
  jitter" (half fixed, half uniform random) so many hosts do not retry in
  step, or the receiver's ``Retry-After`` if that is longer.  Any other 4xx is
  the receiver refusing the message: retrying cannot help, so it is given up
  at once, as it is after ``max_attempts``.  Given-up rows stay in the table
  with their last error.
- stdlib ``urllib`` only; times are POSIX seconds; timeouts in seconds.
"""
import json
import random
import threading
import time
import urllib.error
import urllib.request

from shotline import __version__

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def alert_key(incident, kind="alert"):
    """The idempotency key of one alert about an incident: same alert, same key."""
    return f"shotline-{incident['uid']}-{kind}"


def post(url, body, *, idempotency_key, content_type="application/json", timeout_s=5.0):
    """POST ``body`` (bytes); returns ``(http_status, retry_after_s or None)``.

    Network errors and timeouts raise ``OSError`` (``urllib.error.URLError``
    is one).
    """
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": content_type, "Idempotency-Key": idempotency_key,
        "User-Agent": f"shotline/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return response.status, None
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        try:
            retry_after = float(retry_after) if retry_after is not None else None
        except ValueError:
            retry_after = None
        exc.close()
        return exc.code, retry_after


class WebhookOutbox:
    """Durable at-least-once delivery of alerts to one webhook ``url``.

    ``store`` is a :class:`shotline.store.Store`; ``clock`` returns POSIX
    seconds, ``rng`` draws the jitter, ``post`` sends one request (all
    injectable for tests).
    """

    def __init__(self, store, url, *, max_attempts=12, base_delay_s=1.0, max_delay_s=300.0,
                 timeout_s=5.0, clock=time.time, rng=None, post=post):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http:// or https://, got {url!r}")
        if max_attempts < 1 or base_delay_s <= 0 or max_delay_s < base_delay_s:
            raise ValueError("need max_attempts >= 1 and 0 < base_delay_s <= max_delay_s")
        self.store, self.url = store, url
        self.max_attempts, self.timeout_s = int(max_attempts), float(timeout_s)
        self.base_delay_s, self.max_delay_s = float(base_delay_s), float(max_delay_s)
        self.clock, self.rng, self._post = clock, rng or random.Random(), post

    def backoff_s(self, attempts):
        """Delay (s) after the ``attempts``-th failed attempt: capped exponential, equal jitter."""
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempts - 1))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    def enqueue(self, payload, idempotency_key, content_type="application/json"):
        """Write one message to the outbox (durably); returns ``(row id, inserted)``.

        ``payload`` is bytes, or an object sent as JSON.  A key already in the
        outbox for this url is not stored again.
        """
        body = payload if isinstance(payload, bytes) else json.dumps(
            payload, separators=(",", ":"), allow_nan=False).encode()
        now = self.clock()
        with self.store.transaction() as db:
            cur = db.execute(
                """INSERT INTO webhook_outbox (url, idempotency_key, body, content_type,
                       next_attempt_utc_s, created_utc_s) VALUES (?,?,?,?,?,?)
                   ON CONFLICT (url, idempotency_key) DO NOTHING""",
                (self.url, str(idempotency_key), body, content_type, now, now))
            if cur.rowcount == 1:
                return cur.lastrowid, True
            row = db.execute("SELECT id FROM webhook_outbox WHERE url=? AND idempotency_key=?",
                             (self.url, str(idempotency_key))).fetchone()
            return row["id"], False

    def rows(self, *, pending_only=False):
        sql = "SELECT * FROM webhook_outbox WHERE url=?"
        if pending_only:
            sql += " AND delivered_utc_s IS NULL AND gave_up_utc_s IS NULL"
        return self.store.query(sql + " ORDER BY id", (self.url,))

    def pending(self):
        """Messages neither delivered nor given up."""
        return self.rows(pending_only=True)

    def deliver_due(self, now_utc_s=None):
        """Try every message that is due once; returns one result dict per attempt.

        Each result has ``id``, ``key``, ``outcome`` (delivered | retry |
        gave_up), ``attempts``, ``http_status`` (or None) and ``error``.
        """
        now = self.clock() if now_utc_s is None else float(now_utc_s)
        due = self.store.query(
            """SELECT * FROM webhook_outbox WHERE url=? AND delivered_utc_s IS NULL
               AND gave_up_utc_s IS NULL AND next_attempt_utc_s<=? ORDER BY id""",
            (self.url, now))
        return [self._attempt(row) for row in due]

    def _attempt(self, row):
        attempts = row["attempts"] + 1
        status, retry_after, error = None, None, None
        try:
            status, retry_after = self._post(self.url, bytes(row["body"]),
                                             idempotency_key=row["idempotency_key"],
                                             content_type=row["content_type"],
                                             timeout_s=self.timeout_s)
        except OSError as exc:  # refused, reset, DNS, timeout (URLError is an OSError)
            error = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
        now = self.clock()
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
            sql, args = "delivered_utc_s=?, last_error=NULL", (now,)
        else:
            error = error or f"HTTP {status}"
            permanent = status is not None and status not in RETRY_STATUSES
            if permanent or attempts >= self.max_attempts:
                outcome = "gave_up"
                sql, args = "gave_up_utc_s=?, last_error=?", (now, error)
            else:
                outcome = "retry"
                wait = max(self.backoff_s(attempts), retry_after or 0.0)
                sql, args = "next_attempt_utc_s=?, last_error=?", (now + wait, error)
        with self.store.transaction() as db:
            db.execute(f"UPDATE webhook_outbox SET attempts=?, {sql} WHERE id=?",
                       (attempts, *args, row["id"]))
        return {"id": row["id"], "key": row["idempotency_key"], "outcome": outcome,
                "attempts": attempts, "http_status": status, "error": error}

    def next_due_utc_s(self):
        rows = self.store.query(
            """SELECT min(next_attempt_utc_s) AS t FROM webhook_outbox WHERE url=? AND
               delivered_utc_s IS NULL AND gave_up_utc_s IS NULL""", (self.url,))
        return rows[0]["t"]

    def drain(self, timeout_s, *, sleep=time.sleep):
        """Deliver until nothing is pending or ``timeout_s`` (monotonic) passes; True if drained."""
        deadline = time.monotonic() + float(timeout_s)
        while True:
            self.deliver_due()
            due = self.next_due_utc_s()
            if due is None:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sleep(min(left, max(0.0, due - self.clock())))


class DeliveryThread:
    """Delivers an outbox in the background, for a long-running process.

    Tries every due message, then sleeps until the next one is due (retries
    follow the outbox's backoff) or at most ``poll_s``; ``wake()`` (after an
    enqueue) sends a new alert at once.  Messages left by an earlier run are
    delivered too: the outbox is in the store.  ``on_result(result)`` sees
    each attempt (see :meth:`WebhookOutbox.deliver_due`).
    """

    def __init__(self, outbox, *, poll_s=1.0, on_result=None):
        self.outbox, self.poll_s, self.on_result = outbox, float(poll_s), on_result
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def wake(self):
        self._wake.set()

    def _run(self):
        while not self._stop.is_set():
            self._wake.clear()
            try:
                for result in self.outbox.deliver_due():
                    if self.on_result is not None:
                        self.on_result(result)
                due = self.outbox.next_due_utc_s()
            except Exception as exc:  # e.g. the store is busy: try again later
                due = None
                if self.on_result is not None:
                    self.on_result({"outcome": "error", "error": repr(exc)})
            wait = self.poll_s if due is None else min(self.poll_s,
                                                       max(0.0, due - self.outbox.clock()))
            self._wake.wait(wait)

    def stop(self, drain_s=5.0):
        """Stop the loop, then keep delivering for up to ``drain_s`` seconds;
        True if nothing is left pending (what is left stays in the outbox)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.outbox.drain(drain_s) if drain_s > 0 else not self.outbox.pending()
