"""The Shotline store: one SQLite file holding sensors, triggers, heartbeats,
events and snippets.

- WAL journal, ``synchronous=FULL``: a committed transaction is on disk, so the
  collector acknowledges a trigger to its board only after the commit returns.
- One writer.  ``Store`` serialises its own writes with a lock; other
  processes may read at any time (WAL readers never block the writer).
- Triggers are unique by ``(sensor_id, seq)``: a board replaying a trigger it
  was never acknowledged for does not create a second row.
- The schema is the ordered list ``MIGRATIONS``; ``PRAGMA user_version`` holds
  how many have been applied.  To extend the schema, APPEND a ``(title, sql)``
  entry; never edit or reorder an entry that has shipped.  See docs/store.md.

Times are POSIX seconds (UTC, float64); positions WGS84 degrees and metres.

>>> s = Store(":memory:")
>>> s.insert_trigger({"sensor_id": "A", "seq": 1, "onset_utc_s": 1.5})[1]
True
>>> s.insert_trigger({"sensor_id": "A", "seq": 1, "onset_utc_s": 1.5})[1]
False
"""
import json
import math
import sqlite3
import threading
import time
from urllib.parse import quote

from shotline.incidents import MIGRATION as _INCIDENTS_MIGRATION

# (title, SQL).  Append only: entry i brings the schema to version i + 1.
MIGRATIONS = [
    ("sensors, triggers, heartbeats, events, snippets", """
CREATE TABLE sensors (
    sensor_id      TEXT PRIMARY KEY,
    serial_number  TEXT,
    firmware       TEXT,
    protocol       INTEGER,
    config_digest  TEXT,
    lat_deg        REAL,
    lon_deg        REAL,
    alt_m          REAL,
    port           TEXT,
    first_seen_utc_s REAL NOT NULL,
    last_seen_utc_s  REAL NOT NULL
);
CREATE TABLE triggers (
    id             INTEGER PRIMARY KEY,
    sensor_id      TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    onset_utc_s    REAL NOT NULL,
    time_quality   TEXT,
    holdover       INTEGER,
    lat_deg        REAL,
    lon_deg        REAL,
    alt_m          REAL,
    snr_db         REAL,
    peak_dbfs      REAL,
    features       TEXT NOT NULL DEFAULT '{}',
    received_utc_s REAL NOT NULL,
    stored_utc_s   REAL NOT NULL,
    event_id       INTEGER REFERENCES events(id),
    UNIQUE (sensor_id, seq)
);
CREATE INDEX triggers_onset ON triggers (onset_utc_s);
CREATE TABLE heartbeats (
    id             INTEGER PRIMARY KEY,
    sensor_id      TEXT NOT NULL,
    received_utc_s REAL NOT NULL,
    payload        TEXT NOT NULL
);
CREATE INDEX heartbeats_sensor ON heartbeats (sensor_id, received_utc_s);
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    key            TEXT UNIQUE,
    revision       INTEGER NOT NULL DEFAULT 0,
    t_emit_utc_s   REAL NOT NULL,
    lat_deg        REAL,
    lon_deg        REAL,
    alt_m          REAL,
    status         TEXT,
    n_sensors      INTEGER NOT NULL,
    payload        TEXT NOT NULL,
    created_utc_s  REAL NOT NULL
);
CREATE INDEX events_time ON events (t_emit_utc_s);
CREATE TABLE snippets (
    id             INTEGER PRIMARY KEY,
    sensor_id      TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    start_utc_s    REAL NOT NULL,
    sample_rate_hz INTEGER NOT NULL,
    n_samples      INTEGER NOT NULL,
    path           TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    requested_by   TEXT,
    fetched_utc_s  REAL NOT NULL,
    UNIQUE (sensor_id, seq)
);
"""),
    _INCIDENTS_MIGRATION,
]

# Two records of one (sensor_id, seq) are the same trigger if their onsets agree this well.
SAME_ONSET_S = 1e-3

# Trigger keys with their own column; every other key goes to ``features``.
_TRIGGER_COLUMNS = ("time_quality", "holdover", "lat_deg", "lon_deg", "alt_m",
                    "snr_db", "peak_dbfs")


class StoreError(Exception):
    """The store cannot be opened or a record is malformed."""


def _json(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False,
                      default=_json_default)


def _json_default(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if hasattr(obj, "tolist"):
        return _finite_tree(obj.tolist())
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite_tree(obj):
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None (JSON null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_tree(v) for v in obj]
    return obj


def _finite(value, name):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise StoreError(f"{name} is not a number: {value!r}") from None
    if not math.isfinite(value):
        raise StoreError(f"{name} is not finite: {value!r}")
    return value


def _finite_or_none(value):
    """A detector measurement as a float, None if absent or not finite (NaN, inf)."""
    try:
        return _finite(value, "")
    except StoreError:
        return None


def _row(cursor, row):
    return {d[0]: v for d, v in zip(cursor.description, row)}


class Store:
    """A Shotline SQLite file (``path``, or ``":memory:"``), migrated on open.

    ``readonly=True`` opens an existing file without migrating or writing.
    """

    def __init__(self, path, *, readonly=False, timeout_s=30.0):
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True, timeout=timeout_s,
                                           isolation_level=None, check_same_thread=False)
            else:
                self._db = sqlite3.connect(self.path, timeout=timeout_s,
                                           isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the store ({exc})") from exc
        self._db.row_factory = _row
        try:
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if not readonly:
                self.migrate()
            version = self.schema_version
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a usable Shotline store ({exc})") from exc
        if readonly and version < len(MIGRATIONS):
            self._db.close()
            raise StoreError(f"{self.path}: schema version {version}, expected {len(MIGRATIONS)}: "
                             "open it once read-write to migrate")
        if version > len(MIGRATIONS):
            self._db.close()
            raise StoreError(f"{self.path}: schema version {version} is newer than this "
                             f"shotline ({len(MIGRATIONS)}); upgrade shotline")

    # -- schema -----------------------------------------------------------
    @property
    def schema_version(self):
        return self._db.execute("PRAGMA user_version").fetchone()["user_version"]

    def migrate(self):
        """Apply every migration not yet applied, each in its own transaction."""
        with self._lock:
            for version, (title, sql) in enumerate(MIGRATIONS, start=1):
                if self.schema_version >= version:
                    continue
                # One script: BEGIN .. COMMIT makes the step and its version atomic.
                try:
                    self._db.executescript(
                        f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={version};\nCOMMIT;")
                except sqlite3.DatabaseError as exc:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise StoreError(f"migration {version} ({title}) failed: {exc}") from exc

    def close(self):
        with self._lock:
            self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def transaction(self):
        """Context manager: one durable transaction (commits on exit)."""
        return _Transaction(self)

    # -- writes -----------------------------------------------------------
    def upsert_sensor(self, sensor_id, *, seen_utc_s=None, serial_number=None, firmware=None,
                      protocol=None, config_digest=None, position_llh=None, port=None):
        """Record a sensor (from its hello); fields left ``None`` keep their stored value."""
        seen = time.time() if seen_utc_s is None else float(seen_utc_s)
        lat, lon, alt = position_llh if position_llh is not None else (None, None, None)
        with self._lock:
            self._db.execute(
                """INSERT INTO sensors (sensor_id, serial_number, firmware, protocol,
                       config_digest, lat_deg, lon_deg, alt_m, port,
                       first_seen_utc_s, last_seen_utc_s)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (sensor_id) DO UPDATE SET
                     serial_number=coalesce(excluded.serial_number, serial_number),
                     firmware=coalesce(excluded.firmware, firmware),
                     protocol=coalesce(excluded.protocol, protocol),
                     config_digest=coalesce(excluded.config_digest, config_digest),
                     lat_deg=coalesce(excluded.lat_deg, lat_deg),
                     lon_deg=coalesce(excluded.lon_deg, lon_deg),
                     alt_m=coalesce(excluded.alt_m, alt_m),
                     port=coalesce(excluded.port, port),
                     last_seen_utc_s=max(excluded.last_seen_utc_s, last_seen_utc_s)""",
                (str(sensor_id), serial_number, firmware, protocol, config_digest,
                 _finite(lat, "lat_deg"), _finite(lon, "lon_deg"), _finite(alt, "alt_m"),
                 port, seen, seen))

    def insert_trigger(self, trigger, *, received_utc_s=None):
        """Store one trigger dict; returns ``(row_id, inserted)``.

        ``trigger`` needs ``sensor_id``, ``seq`` and ``onset_utc_s``; the keys in
        ``_TRIGGER_COLUMNS`` get their own columns, any other key (the detector
        features) is kept in the ``features`` JSON.  A ``received_utc_s`` key
        (when the host read it) overrides the ``received_utc_s`` argument.  A trigger already stored
        for ``(sensor_id, seq)`` is not stored again: ``inserted`` is False and
        ``row_id`` is the existing row.
        """
        return self.insert_triggers([trigger], received_utc_s=received_utc_s)[0]

    def insert_triggers(self, triggers, *, received_utc_s=None):
        """Store many triggers in ONE durable transaction (group commit).

        Returns ``[(row_id, inserted), ...]`` in input order.  A replay of a
        stored trigger gives ``(existing_row_id, False)``; a DIFFERENT trigger
        under a stored ``(sensor_id, seq)`` (onsets more than ``SAME_ONSET_S``
        apart: the board's sequence was reset, e.g. its flash wiped) is not
        stored and gives ``(None, False)``, so the caller can keep it on the
        board and raise the alarm instead of losing it as a "duplicate".  Raises
        ``StoreError`` (storing none of them) if any trigger is malformed.
        """
        now = time.time()
        rows = [self._trigger_row(t, now if received_utc_s is None else received_utc_s, now)
                for t in triggers]
        out = []
        with self.transaction() as db:
            for row in rows:
                cur = db.execute(
                    """INSERT INTO triggers (sensor_id, seq, onset_utc_s, time_quality,
                           holdover, lat_deg, lon_deg, alt_m, snr_db, peak_dbfs, features,
                           received_utc_s, stored_utc_s)
                       VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                       ON CONFLICT (sensor_id, seq) DO NOTHING""", row)
                if cur.rowcount == 1:
                    out.append((cur.lastrowid, True))
                else:
                    existing = db.execute(
                        "SELECT id, onset_utc_s FROM triggers WHERE sensor_id=? AND seq=?",
                        (row[0], row[1])).fetchone()
                    same = abs(existing["onset_utc_s"] - row[2]) <= SAME_ONSET_S
                    out.append((existing["id"] if same else None, False))
        return out

    @staticmethod
    def _trigger_row(trigger, received_utc_s, stored_utc_s):
        try:
            sensor_id = str(trigger["sensor_id"])
            seq = int(trigger["seq"])
            onset = _finite(trigger["onset_utc_s"], "onset_utc_s")
        except KeyError as exc:
            raise StoreError(f"trigger lacks {exc.args[0]!r}: {trigger!r}") from None
        except (TypeError, ValueError) as exc:
            raise StoreError(f"malformed trigger {trigger!r}: {exc}") from None
        if onset is None:
            raise StoreError(f"trigger has no onset time: {trigger!r}")
        received_utc_s = trigger.get("received_utc_s", received_utc_s)
        # A feature the detector could not compute (NaN, inf; also snr_db, peak_dbfs)
        # is stored as null: a trigger is never refused for a feature value.
        features = {k: v for k, v in trigger.items() if k not in _TRIGGER_COLUMNS
                    and k not in ("sensor_id", "seq", "onset_utc_s", "received_utc_s")}
        try:
            features_json = _json(_finite_tree(features))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"trigger features not storable {trigger!r}: {exc}") from None
        quality = trigger.get("time_quality")
        holdover = trigger.get("holdover")
        return (sensor_id, seq, onset,
                None if quality is None else str(quality),
                None if holdover is None else int(bool(holdover)),
                _finite(trigger.get("lat_deg"), "lat_deg"),
                _finite(trigger.get("lon_deg"), "lon_deg"),
                _finite(trigger.get("alt_m"), "alt_m"),
                _finite_or_none(trigger.get("snr_db")),
                _finite_or_none(trigger.get("peak_dbfs")),
                features_json, float(received_utc_s), float(stored_utc_s))

    def insert_heartbeat(self, sensor_id, payload, *, received_utc_s=None):
        """Store one heartbeat (its full payload as JSON); returns the row id."""
        t = time.time() if received_utc_s is None else float(received_utc_s)
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO heartbeats (sensor_id, received_utc_s, payload) VALUES (?,?,?)",
                (str(sensor_id), t, _json(payload)))
            return cur.lastrowid

    def insert_event(self, event, trigger_ids=(), *, key=None, created_utc_s=None):
        """Store a located event (a dict, e.g. ``Event.to_dict()``) and link its triggers.

        ``event`` needs ``t_emit_utc_s``; ``position_llh`` ``[lat, lon, alt]``,
        ``status``, ``revision`` and ``sensors`` are used when present.  An
        event with the ``key`` of a stored one replaces it (a revision after a
        late trigger): same id, new fields, its triggers linked afresh.
        Returns the event id.
        """
        t_emit = event.get("t_emit_utc_s")
        if t_emit is None:
            raise StoreError(f"event has no emission time (t_emit_utc_s): {event!r}")
        lat, lon, alt = event.get("position_llh") or (None, None, None)
        n_sensors = event.get("n_sensors")
        if n_sensors is None:
            n_sensors = len(event.get("sensors") or trigger_ids)
        created = time.time() if created_utc_s is None else float(created_utc_s)
        values = (_finite(t_emit, "t_emit_utc_s"), _finite(lat, "lat_deg"),
                  _finite(lon, "lon_deg"), _finite(alt, "alt_m"), event.get("status"),
                  int(n_sensors), int(event.get("revision") or 0), _json(event))
        with self.transaction() as db:
            row = None if key is None else db.execute(
                "SELECT id FROM events WHERE key=?", (str(key),)).fetchone()
            if row is None:
                cur = db.execute(
                    """INSERT INTO events (t_emit_utc_s, lat_deg, lon_deg, alt_m, status,
                           n_sensors, revision, payload, key, created_utc_s)
                       VALUES (?,?,?,?,?,?,?,?,?,?)""",
                    values + (None if key is None else str(key), created))
                event_id = cur.lastrowid
            else:
                event_id = row["id"]
                db.execute("""UPDATE events SET t_emit_utc_s=?, lat_deg=?, lon_deg=?, alt_m=?,
                                  status=?, n_sensors=?, revision=?, payload=? WHERE id=?""",
                           values + (event_id,))
                db.execute("UPDATE triggers SET event_id=NULL WHERE event_id=?", (event_id,))
            db.executemany("UPDATE triggers SET event_id=? WHERE id=?",
                           [(event_id, int(i)) for i in trigger_ids])
        return event_id

    def insert_snippet(self, sensor_id, seq, *, start_utc_s, sample_rate_hz, n_samples, path,
                       sha256, requested_by=None, fetched_utc_s=None):
        """Record an audio snippet fetched for trigger ``(sensor_id, seq)``; returns its id."""
        t = time.time() if fetched_utc_s is None else float(fetched_utc_s)
        with self._lock:
            cur = self._db.execute(
                """INSERT INTO snippets (sensor_id, seq, start_utc_s, sample_rate_hz, n_samples,
                       path, sha256, requested_by, fetched_utc_s) VALUES (?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (sensor_id, seq) DO UPDATE SET start_utc_s=excluded.start_utc_s,
                     sample_rate_hz=excluded.sample_rate_hz, n_samples=excluded.n_samples,
                     path=excluded.path, sha256=excluded.sha256,
                     requested_by=excluded.requested_by, fetched_utc_s=excluded.fetched_utc_s""",
                (str(sensor_id), int(seq), float(start_utc_s), int(sample_rate_hz),
                 int(n_samples), str(path), str(sha256), requested_by, t))
            return cur.lastrowid

    # -- reads ------------------------------------------------------------
    def query(self, sql, params=()):
        """Rows of a read-only query as dicts."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def sensors(self):
        return self.query("SELECT * FROM sensors ORDER BY sensor_id")

    def triggers(self, *, sensor_id=None, since_utc_s=None):
        """Stored triggers (oldest onset first), ``features`` decoded and merged in."""
        sql, params = "SELECT * FROM triggers WHERE 1", []
        if sensor_id is not None:
            sql += " AND sensor_id=?"
            params.append(str(sensor_id))
        if since_utc_s is not None:
            sql += " AND onset_utc_s>=?"
            params.append(float(since_utc_s))
        rows = self.query(sql + " ORDER BY onset_utc_s, sensor_id, seq", params)
        for row in rows:
            row.update(json.loads(row.pop("features")))
        return rows

    def unassociated_triggers(self, window_s):
        """Stored triggers in no event whose onset is within ``window_s`` of the newest
        stored onset (oldest first, as ``triggers()``): what an associator still had
        pending when the collector stopped."""
        rows = self.query(
            """SELECT * FROM triggers WHERE event_id IS NULL
                 AND onset_utc_s >= (SELECT MAX(onset_utc_s) FROM triggers) - ?
               ORDER BY onset_utc_s, sensor_id, seq""", (float(window_s),))
        for row in rows:
            row.update(json.loads(row.pop("features")))
        return rows

    def heartbeats(self, *, sensor_id=None):
        sql, params = "SELECT * FROM heartbeats", ()
        if sensor_id is not None:
            sql, params = sql + " WHERE sensor_id=?", (str(sensor_id),)
        rows = self.query(sql + " ORDER BY id", params)
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def events(self):
        rows = self.query("SELECT * FROM events ORDER BY t_emit_utc_s, id")
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def counts(self):
        """Rows per table: ``{"sensors": n, "triggers": n, ...}``."""
        return {t: self.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
                for t in ("sensors", "triggers", "heartbeats", "events", "snippets")}


class _Transaction:
    def __init__(self, store):
        self.store = store

    def __enter__(self):
        self.store._lock.acquire()
        try:
            self.store._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.store._lock.release()
            raise
        return self.store._db

    def __exit__(self, exc_type, exc, tb):
        try:
            self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()
