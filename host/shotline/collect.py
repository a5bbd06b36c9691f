"""The collector: triggers from many boards into the store, never losing one.

One reader thread per port and ONE writer thread:

- A reader opens its port (``shotline.link.Link``), asks the board for its
  HELLO, then turns frames into work items for the writer.  When the port
  goes away (cable pulled, board reset, virtual sensor stopped) it closes it
  and reopens it with exponential backoff and jitter (``backoff_s``).
- The writer takes whatever is queued (up to ``batch_max`` triggers), stores
  the triggers in one durable transaction (group commit), and only THEN
  acknowledges them to their boards.  A trigger the board sends again
  (no ACK received, reboot, reconnect) is deduplicated by ``(sensor_id, seq)``
  and acknowledged again.  A collector killed at any instant therefore loses
  nothing (unacked triggers are still in the board's outbox) and duplicates
  nothing (the store refuses the replay).
- Newly stored triggers are pushed to the associator, if one is given; the
  events it decides are stored (with links to their triggers) and handed to
  ``on_event`` and to the ``events`` queue.  What a killed collector had
  stored but not yet associated is not lost either: at start the stored
  triggers in no event within the associator's ``late_window_s`` of the
  newest onset are pushed first, and a replayed trigger stored in no event
  (killed between commit and ACK) is pushed once.

Use as a library::

    with Collector(Store("shotline.sqlite"), ["/dev/ttyACM0", "/dev/ttyACM1"]) as c:
        event = c.events.get()

Incidents, classification and alerts on top (what ``shotline collect`` does;
``shotline.incident_pipeline``)::

    pipeline = IncidentPipeline(store, alerter=Alerter(cap_dir="cap"), threshold=0.5)
    live = LiveAssociation()
    with Collector(store, ports, associator=ClockedAssociation(live, pipeline),
                   on_event=pipeline.push):
        ...
    pipeline.flush()

Log records go to the ``shotline.collect`` logger; each carries a ``fields``
dict (``extra={"fields": ...}``) for structured (JSON-lines) output.
"""
import collections
import dataclasses
import logging
import queue
import random
import threading
import time

from shotline_fw import wire
from shotline.link import Link, LinkError, LinkTimeout
from shotline.store import StoreError

log = logging.getLogger("shotline.collect")


def _log(level, msg, **fields):
    log.log(level, msg, extra={"fields": fields})


@dataclasses.dataclass
class BoardStatus:
    """What the collector knows about one port (read it, do not write it)."""

    port: str
    sensor_id: str | None = None
    hello: dict | None = None
    connected: bool = False
    connects: int = 0
    triggers_new: int = 0
    triggers_replayed: int = 0
    triggers_rejected: int = 0
    heartbeats: int = 0
    last_heartbeat: dict | None = None
    last_frame_monotonic_s: float | None = None
    last_error: str | None = None


class Collector:
    """Collect from ``ports`` (device paths or pyserial URLs) into ``store``.

    ``associator``: a ``LiveAssociation`` (or any object with its
    ``push(record)``, ``advance(idle_s)`` and ``flush()``, each returning
    ``[(event_record, [(sensor_id, seq), ...]), ...]``).
    A board silent for ``idle_timeout_s`` (heartbeats are every 10 s) is
    asked for a HELLO; silent for twice that, its port is closed and reopened.
    ``on_trigger(record)`` and ``on_event(record)`` are called from the
    writer thread for every newly stored trigger and event (an event record
    is stored again, same ``id``, with ``revision + 1`` when a late trigger
    joins it).
    """

    def __init__(self, store, ports, *, associator=None, on_trigger=None, on_event=None,
                 hello_timeout_s=3.0, backoff_s=(0.1, 5.0), batch_max=512, read_timeout_s=0.05,
                 idle_timeout_s=30.0):
        self.store = store
        self.ports = [str(p) for p in ports]
        self.associator = associator
        self.on_trigger = on_trigger
        self.on_event = on_event
        self.hello_timeout_s = hello_timeout_s
        self.backoff_s = backoff_s
        self.batch_max = batch_max
        self.read_timeout_s = read_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.events = queue.Queue()
        self.boards = {p: BoardStatus(port=p) for p in self.ports}
        self._links = {}
        self._work = queue.Queue()
        self._stop = threading.Event()
        self._readers_done = threading.Event()
        self._drained = threading.Event()
        self._holding = set()  # ports whose reader stopped reading, link still open
        self._readers = {}
        self._writer_thread = None
        self._trigger_rows = collections.OrderedDict()  # (sensor_id, seq) -> row id, recent
        self._run_key = f"{time.time():.6f}"
        self._last_new_trigger_mono = time.monotonic()
        self.stats = {"triggers_new": 0, "triggers_replayed": 0, "commits": 0, "events": 0,
                      "heartbeats": 0, "acks": 0}

    # -- lifecycle --------------------------------------------------------
    def start(self):
        if self._writer_thread is not None:
            raise RuntimeError("collector already started")
        self._stop.clear()
        self._readers_done.clear()
        self._drained.clear()
        self._holding.clear()
        self._writer_thread = threading.Thread(target=self._writer, name="writer", daemon=True)
        self._writer_thread.start()
        for port in self.ports:
            self._start_reader(port)
        _log(logging.INFO, "collector started", ports=self.ports, store=self.store.path)
        return self

    def _start_reader(self, port):
        t = threading.Thread(target=self._reader, args=(port,), name=f"read {port}", daemon=True)
        self._readers[port] = t
        t.start()

    def add_port(self, port):
        """Start collecting from another port (e.g. a board plugged in later); no-op if known."""
        port = str(port)
        if port in self.boards:
            return False
        self.ports.append(port)
        self.boards[port] = BoardStatus(port=port)
        if self._writer_thread is not None and not self._stop.is_set():
            self._start_reader(port)
            _log(logging.INFO, "port added", port=port)
        return True

    def stop(self, timeout_s=10.0):
        """Stop reading, store and acknowledge what was received, flush the associator."""
        if self._writer_thread is None:
            return
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        # Readers stop reading but keep their ports open until the writer has
        # stored and acknowledged everything they queued.
        while time.monotonic() < deadline and any(
                t.is_alive() and p not in self._holding for p, t in self._readers.items()):
            time.sleep(0.01)
        self._readers_done.set()
        self._writer_thread.join(max(0.0, deadline - time.monotonic()))
        self._drained.set()
        for t in self._readers.values():
            t.join(max(0.0, deadline - time.monotonic()))
        self._readers.clear()
        self._writer_thread = None
        _log(logging.INFO, "collector stopped", **self.stats)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_for_connections(self, n=None, timeout_s=10.0):
        """Block until ``n`` (default: all) ports have said hello; returns True if they did."""
        n = len(self.ports) if n is None else n
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(b.connected for b in self.boards.values()) >= n:
                return True
            time.sleep(0.02)
        return False

    # -- readers ------------------------------------------------------------
    def _reader(self, port):
        status = self.boards[port]
        delay_s = self.backoff_s[0]
        while not self._stop.is_set():
            link = Link(port, read_timeout_s=self.read_timeout_s)
            try:
                link.open()
                hello = link.hello(self.hello_timeout_s)
                self._refuse_duplicate_id(port, hello)
                self._links[port] = link
                status.connected, status.connects = True, status.connects + 1
                self._on_hello(status, hello)
                delay_s = self.backoff_s[0]
                last_frame = pinged = time.monotonic()
                while not self._stop.is_set():
                    frames = link.read_frames()
                    for frame in frames:
                        self._on_frame(status, link, frame)
                    now = time.monotonic()
                    if frames:
                        last_frame = now
                    elif now - last_frame > 2 * self.idle_timeout_s:
                        raise LinkTimeout(f"{port}: silent for {now - last_frame:.0f} s")
                    elif now - last_frame > self.idle_timeout_s and now - pinged > self.idle_timeout_s:
                        pinged = now  # a heartbeat is overdue: is anyone there?
                        link.send(wire.HELLO, {})
            except LinkError as exc:
                status.last_error = str(exc)
                level = logging.INFO if isinstance(exc, LinkTimeout) else logging.WARNING
                _log(level, "board disconnected" if status.connected else "board not answering",
                     port=port, sensor_id=status.sensor_id, error=str(exc), retry_s=round(delay_s, 3))
            finally:
                if self._stop.is_set() and port in self._links:
                    self._holding.add(port)
                    self._drained.wait(30.0)  # the writer's last ACKs still use this link
                status.connected = False
                self._links.pop(port, None)
                link.close()
            if self._stop.wait(delay_s * random.uniform(0.8, 1.2)):
                break
            delay_s = min(delay_s * 2, self.backoff_s[1])

    def _refuse_duplicate_id(self, port, hello):
        """Two boards with one sensor id would collide on (sensor_id, seq): refuse the second
        (its triggers stay in its outbox until someone fixes its configuration)."""
        sid, uid = hello.get("sensor_id"), hello.get("uid")
        for other in self.boards.values():
            if other.port != port and other.connected and other.sensor_id == sid \
                    and (other.hello or {}).get("uid") != uid:
                _log(logging.ERROR, "sensor id already in use by another board", port=port,
                     sensor_id=sid, uid=uid, other_port=other.port,
                     other_uid=(other.hello or {}).get("uid"))
                raise LinkError(f"{port}: sensor id {sid!r} is already used by {other.port}")

    def _on_hello(self, status, hello):
        status.hello = hello
        status.sensor_id = str(hello.get("sensor_id") or hello.get("uid") or status.port)
        self._work.put(("hello", status, hello))
        _log(logging.INFO, "board connected", port=status.port, sensor_id=status.sensor_id,
             fw=hello.get("fw"), mode=hello.get("mode"), error=hello.get("error"))
        if hello.get("mode") == "safe":
            _log(logging.ERROR, "board is in safe mode", port=status.port,
                 sensor_id=status.sensor_id, error=hello.get("error"))

    def _on_frame(self, status, link, frame):
        status.last_frame_monotonic_s = time.monotonic()
        try:
            if frame.type == wire.TRIGGER:
                body = frame.json()
                body.setdefault("sensor_id", status.sensor_id)
                record = wire.trigger_record(body)
                int(record["seq"])
                record["received_utc_s"] = time.time()
                self._work.put(("trigger", status, record))
            elif frame.type == wire.HEARTBEAT:
                body = frame.json()
                _health_changes(status, status.last_heartbeat, body)
                status.heartbeats += 1
                status.last_heartbeat = body
                self._work.put(("heartbeat", status, body))
            elif frame.type == wire.HELLO:  # the board rebooted or someone else asked
                self._on_hello(status, frame.json())
            elif frame.type == wire.LOG:
                body = frame.json()
                _log(logging.WARNING, "board log", port=status.port, sensor_id=status.sensor_id,
                     level=body.get("level"), board_msg=body.get("msg"))
        except (wire.WireError, KeyError, TypeError, ValueError) as exc:
            # Malformed but CRC-valid: a firmware bug.  Not acked, so the board keeps it.
            status.triggers_rejected += frame.type == wire.TRIGGER
            _log(logging.ERROR, "malformed message", port=status.port, sensor_id=status.sensor_id,
                 type=frame.name, error=str(exc))

    # -- writer ---------------------------------------------------------------
    def _writer(self):
        if self.associator is not None:
            self._recover_pending()
        last_advance = 0.0
        while True:
            now = time.monotonic()
            quiet_s = now - self._last_new_trigger_mono
            if self.associator is not None and quiet_s > 0.2 and now - last_advance > 0.1:
                last_advance = now  # no new trigger for a while: move the stream clock on
                self._run_associator(self.associator.advance, quiet_s)
            try:
                first = self._work.get(timeout=0.05)
            except queue.Empty:
                if self._readers_done.is_set():
                    break
                continue
            items = [first]
            while len(items) < self.batch_max:
                try:
                    items.append(self._work.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(items)
            except Exception as exc:  # keep collecting: unacked triggers will be resent
                _log(logging.ERROR, "write failed", error=repr(exc), items=len(items))
        self._drained.set()
        self._flush_associator()

    def _write(self, items):
        triggers = [(status, rec) for kind, status, rec in items if kind == "trigger"]
        for kind, status, body in items:
            try:
                if kind == "hello":
                    self.store.upsert_sensor(
                        status.sensor_id, serial_number=body.get("uid"), firmware=body.get("fw"),
                        protocol=body.get("proto"), config_digest=body.get("config_digest"),
                        position_llh=_llh(body), port=status.port)
                elif kind == "heartbeat":
                    self.store.insert_heartbeat(status.sensor_id, body)
                    self.stats["heartbeats"] += 1
            except (StoreError, TypeError, ValueError) as exc:  # never at the triggers' expense
                _log(logging.ERROR, f"{kind} not stored", port=status.port,
                     sensor_id=status.sensor_id, error=str(exc))
        if not triggers:
            return
        received = time.time()
        try:
            results = self.store.insert_triggers([r for _, r in triggers], received_utc_s=received)
        except StoreError:
            results = []  # one bad record: store the others one by one
            for status, rec in triggers:
                try:
                    results.append(self.store.insert_trigger(rec, received_utc_s=received))
                except StoreError as exc:
                    results.append((None, False))
                    status.triggers_rejected += 1
                    _log(logging.ERROR, "trigger refused by the store", port=status.port,
                         sensor_id=status.sensor_id, error=str(exc))
        self.stats["commits"] += 1
        acks = {}
        new = []
        rescued = []  # stored by a run that died before associating them
        for (status, rec), (row_id, inserted) in zip(triggers, results):
            if row_id is None:
                if status.last_error != "sequence reused":
                    _log(logging.ERROR, "trigger sequence number reused (board's outbox reset?): "
                         "kept on the board, not stored", port=status.port,
                         sensor_id=rec.get("sensor_id"), seq=rec.get("seq"))
                status.last_error = "sequence reused"
                status.triggers_rejected += 1
                continue
            acks.setdefault(status.port, []).append(rec["seq"])
            if inserted:
                status.triggers_new += 1
                self.stats["triggers_new"] += 1
                rec = dict(rec, id=row_id)
                self._remember_row((rec["sensor_id"], rec["seq"]), row_id)
                new.append(rec)
            else:
                status.triggers_replayed += 1
                self.stats["triggers_replayed"] += 1
                if self._unassociated_replay(rec, row_id):
                    rescued.append(dict(rec, id=row_id))
        for port, seqs in acks.items():  # only now: the triggers are on disk
            link = self._links.get(port)
            if link is not None:
                try:
                    link.ack(seqs)
                    self.stats["acks"] += len(seqs)
                except LinkError:
                    pass  # the board will resend; the store deduplicates
        if new:
            self._last_new_trigger_mono = time.monotonic()
        for rec in new:
            if self.on_trigger is not None:
                self._callback(self.on_trigger, rec)
            if self.associator is not None:
                self._associate(rec)
        for rec in rescued:
            self._associate(rec)

    # -- association ----------------------------------------------------------
    def _associate(self, rec):
        self._run_associator(self.associator.push, rec)

    def _remember_row(self, key, row_id):
        self._trigger_rows[key] = row_id
        if len(self._trigger_rows) > 200_000:
            self._trigger_rows.popitem(last=False)

    def _unassociated_replay(self, rec, row_id):
        """True (and remembered) if a replayed trigger was stored but never reached
        the associator: the collector died after its commit, before its ACK."""
        key = (rec["sensor_id"], rec["seq"])
        if self.associator is None or key in self._trigger_rows:
            return False
        linked = self.store.query("SELECT event_id FROM triggers WHERE id=?", (row_id,))
        if linked and linked[0]["event_id"] is not None:
            return False
        self._remember_row(key, row_id)
        return True

    def _recover_pending(self):
        """Push the stored triggers a previous run had not yet associated (within the
        associator's late window of the newest onset) before any new one."""
        live = getattr(self.associator, "associator", self.associator)
        window_s = getattr(live, "late_window_s", 30.0)
        try:
            rows = self.store.unassociated_triggers(window_s)
        except StoreError as exc:
            _log(logging.ERROR, "pending triggers not recovered", error=str(exc))
            return
        for row in rows:
            self._remember_row((row["sensor_id"], row["seq"]), row["id"])
        if rows:
            _log(logging.INFO, "re-associating stored triggers", count=len(rows),
                 window_s=window_s)
        for row in rows:
            self._associate(row)

    def _flush_associator(self):
        if self.associator is not None:
            self._run_associator(self.associator.flush)

    def _run_associator(self, method, *args):
        try:
            decided = method(*args)
        except Exception as exc:  # a bug there must not stop collection
            _log(logging.ERROR, "association failed", error=repr(exc))
            return
        for record, members in decided or ():
            rows = [self._trigger_rows[m] for m in members if m in self._trigger_rows]
            key = f"{self._run_key}:{record.get('event_id')}"
            record = dict(record, id=self.store.insert_event(record, rows, key=key))
            self.stats["events"] += 1
            _log(logging.INFO, "event", id=record["id"], revision=record.get("revision"),
                 n_sensors=len(rows), time_utc=record.get("time_utc"),
                 position_llh=record.get("position_llh"), status=record.get("status"))
            self.events.put(record)
            if self.on_event is not None:
                self._callback(self.on_event, record)

    @staticmethod
    def _callback(fn, record):
        try:
            fn(record)
        except Exception as exc:  # the caller's bug must not stop collection
            _log(logging.ERROR, "callback failed", callback=getattr(fn, "__name__", repr(fn)),
                 error=repr(exc))


class LiveAssociation:
    """Stored trigger records in, located event records out, as triggers arrive.

    Wraps ``shotline.associate.Associator`` (``options`` go to it, e.g.
    ``temperature_c``, ``min_sensors``).  Sensor positions come from the
    triggers (WGS84) and are turned into local ENU metres in a frame centred
    on ``origin_llh`` (default: the first sensor heard).  The stream clock
    follows the newest onset; while no trigger arrives it moves on with the
    wall clock (``advance(idle_s)``), so an event is decided even when the
    night goes quiet, yet a faster-than-real-time replay is never cut short.
    Triggers without UTC (``time_quality == "none"``) are not associated.

    Boards report in parallel, so triggers reach the associator a little out
    of time order; ``max_delay_s`` (default 1 s) is how late one may come and
    still be waited for.  Later ones (a board that reconnects after minutes)
    are handled by the associator as late triggers: joined to a recent event
    (stored again as a new revision) or kept unexplained.
    """

    def __init__(self, origin_llh=None, **options):
        from shotline.associate import Associator
        from shotline.geo import LocalFrame

        options.setdefault("max_delay_s", 1.0)
        self.associator = Associator(**options)
        self.frame = None if origin_llh is None else LocalFrame(*origin_llh)
        self._latest_onset_s = None

    def _frame_for(self, rec):
        if self.frame is None:
            from shotline.geo import LocalFrame
            self.frame = LocalFrame(rec["lat_deg"], rec["lon_deg"], float(rec.get("alt_m") or 0.0))
        return self.frame

    def push(self, rec):
        if rec.get("time_quality") == wire.TIME_NONE or rec.get("lat_deg") is None:
            return []
        from shotline.associate import Trigger

        frame = self._frame_for(rec)
        llh = (rec["lat_deg"], rec["lon_deg"], float(rec.get("alt_m") or 0.0))
        features = {k: rec[k] for k in wire.FEATURES if rec.get(k) is not None}
        features["time_quality"] = rec.get("time_quality")
        trigger = Trigger(rec["sensor_id"], tuple(frame.to_enu(llh).tolist()),
                          rec["onset_utc_s"], snr_db=rec.get("snr_db"),
                          level_db=rec.get("peak_dbfs"), features=features, seq=rec["seq"])
        t = rec["onset_utc_s"]
        self._latest_onset_s = t if self._latest_onset_s is None else max(t, self._latest_onset_s)
        return self._records(self.associator.push(trigger))

    def advance(self, idle_s):
        if self._latest_onset_s is None:
            return []
        return self._records(self.associator.advance(self._latest_onset_s + idle_s))

    def flush(self):
        return self._records(self.associator.flush())

    def _records(self, events):
        out = []
        for event in events:
            record = event.to_dict(self.frame)
            record["t_emit_utc_s"] = event.t_emit_s
            record["n_sensors"] = event.n_sensors
            out.append((record, [(t.sensor, t.seq) for t in event.triggers]))
        return out


# Heartbeat counters whose increase a technician must hear about.
_COUNTERS = ("outbox_dropped", "i2s_overruns", "detector_drops", "pps_rejected", "wdt_resets")


def _health_changes(status, old, new):
    """Log what changed for the worse (or recovered) between two heartbeats."""
    where = {"port": status.port, "sensor_id": status.sensor_id}
    old = old or {}
    tq_old, tq_new = old.get("time_quality"), new.get("time_quality")
    if tq_new != tq_old and (tq_old is not None or tq_new != wire.TIME_PPS):
        level = logging.INFO if tq_new == wire.TIME_PPS else logging.WARNING
        _log(level, "board time quality changed", **where, time_quality=tq_new,
             was=tq_old, holdover_s=new.get("holdover_s"))
    if new.get("storage_ok") is False and old.get("storage_ok") is not False:
        _log(logging.ERROR, "board storage failing", **where, error=new.get("storage_error"))
    for name in _COUNTERS:
        if old and isinstance(new.get(name), int) and new[name] > (old.get(name) or 0):
            _log(logging.WARNING, f"board {name.replace('_', ' ')}", **where,
                 count=new[name], increase=new[name] - (old.get(name) or 0))


def _llh(body):
    """``(lat_deg, lon_deg, alt_m)`` from a HELLO, or None (safe mode: no position)."""
    lat, lon = body.get("lat_e7"), body.get("lon_e7")
    if isinstance(lat, int) and isinstance(lon, int):
        return (lat / 1e7, lon / 1e7, float(body.get("alt_m") or 0.0))
    return None
