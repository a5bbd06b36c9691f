"""Association: group triggers from many sensors into located events.

Sensors report triggers independently.  :class:`Associator` takes them as a
stream (any order, duplicates allowed) and decides, with bounded latency,
which triggers share one source: at most one trigger per sensor per event,
each event located with :func:`shotline.locate.locate`.  Triggers that fit no
event (echoes, noise, a sensor whose clock is off) are kept as *unexplained*.

Algorithm (details in ``docs/association.md``):

1. Physics prunes: triggers ``i, j`` can share a source only if
   ``|t_i - t_j| <= d_ij / c + tolerance_s``.  Sensors are indexed with a
   :class:`scipy.spatial.cKDTree`; each sensor's neighbourhood is the sensors
   within ``2 * max_range_m`` (two sensors that hear one source are at most
   that far apart), so the work grows with local density, not city size.
2. Waiting: a trigger on sensor ``s`` at ``t`` becomes an *anchor* once the
   stream clock passes ``t + wait_s[s]``, ``wait_s = (farthest neighbour) / c
   + tolerance_s + max_delay_s``: by then every direct arrival that could
   share its source has been reported.  Anchors are taken in deadline order.
3. Echo masking: a trigger much weaker than one just before it on the same
   sensor neither anchors nor shapes a hypothesis (:meth:`Associator._masked`).
4. The anchor's candidates go to :func:`shotline.associate_search.best_sources`
   (consensus over minimal sets containing the anchor), which proposes the
   largest mutually consistent sets, one trigger per sensor.
5. Each proposed set is located; triggers are re-selected against the fix
   (residual within ``tolerance_s``) and relocated until stable, then checked
   for plausibility (the sensors nearest the fix took part; not an echo
   train of a stronger recent event).  The first set that holds becomes an
   event and its triggers leave the pool; an anchor with none is deferred
   (it may still join an event anchored elsewhere) and finally unexplained.
   Echoes arrive after their direct path, whose event has already taken the
   sensor's slot, so they end unexplained instead of making phantom events.
6. Triggers near an event that miss it by more than ``tolerance_s`` but less
   than ``outlier_window_s`` are listed as the event's ``outliers`` (an early
   one is physically impossible for a direct path: a clock fault);
   :meth:`Associator.clock_suspects` names sensors whose outlier residuals
   keep agreeing.
7. A trigger reported after its own decision time is *late*: it is added to
   a recent event it fits (the event is re-emitted with ``revision + 1``),
   otherwise it is decided on its own as usual.

>>> a = Associator(temperature_c=20.0)
>>> sensors = {"n": (0, 400, 0), "e": (400, 0, 0), "s": (0, -400, 0), "w": (-400, 0, 0)}
>>> for name, xyz in sensors.items():   # a shot at (100, 50) at t = 1000 s
...     d = ((xyz[0] - 100) ** 2 + (xyz[1] - 50) ** 2) ** 0.5
...     _ = a.push(Trigger(name, xyz, 1000.0 + d / a.speed_m_s))
>>> [e.n_sensors for e in a.flush()]
[4]
"""
import bisect
import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from shotline._assoc import ffi as _ffi, lib as _lib
from shotline.acoustics import DEFAULT_TEMPERATURE_C, speed_of_sound_m_s
from shotline.associate_fit import consistent_fix
from shotline.associate_search import best_sources
from shotline.locate import locate
from shotline.timeutil import format_utc

# Trigger states (as native/assoc/search.h's).  A failed anchor is *deferred*: it may still join an event
# anchored elsewhere until every window that holds it has been decided.
# A masked trigger (see Associator._masked) may only join an event found without it.
_PENDING, _IN_EVENT, _UNEXPLAINED, _DEFERRED, _MASKED = 0, 1, 2, 3, 4
_ANCHOR, _FINAL = 0, 1


def _row_norms(d):
    """Euclidean norm of each row (as ``np.linalg.norm(d, axis=1)``, without its overhead)."""
    return np.sqrt((d * d).sum(axis=1))


@dataclass(frozen=True)
class Trigger:
    """One sensor's report of an impulse, as association needs it.

    ``position_m`` is the sensor's local ENU position (metres; 2 values mean
    altitude 0), ``time_utc_s`` the arrival (onset) time in POSIX seconds.
    ``seq`` is the sensor's own trigger counter (for duplicate detection);
    ``features`` is passed through untouched.
    """

    sensor: str
    position_m: tuple
    time_utc_s: float
    snr_db: float = None
    level_db: float = None
    features: dict = field(default=None, compare=False, repr=False)
    seq: int = None

    def __post_init__(self):
        if not isinstance(self.sensor, str) or not self.sensor:
            raise ValueError(f"sensor must be a non-empty string, got {self.sensor!r}")
        pos = tuple(float(v) for v in self.position_m)
        if len(pos) == 2:
            pos += (0.0,)
        if len(pos) != 3 or not all(math.isfinite(v) for v in pos):
            raise ValueError(f"position_m must be 2 or 3 finite metres, got {self.position_m!r}")
        object.__setattr__(self, "position_m", pos)
        t = float(self.time_utc_s)
        if not math.isfinite(t):
            raise ValueError(f"time_utc_s must be finite, got {self.time_utc_s!r}")
        object.__setattr__(self, "time_utc_s", t)
        for name in ("snr_db", "level_db"):
            v = getattr(self, name)
            if v is not None:
                v = float(v)
                if not math.isfinite(v):
                    raise ValueError(f"{name} must be finite, got {v!r}")
                object.__setattr__(self, name, v)

    def to_dict(self):
        d = {"sensor": self.sensor, "position_m": list(self.position_m),
             "time_utc": format_utc(self.time_utc_s)}
        for name in ("snr_db", "level_db", "seq"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        if self.features:
            d["features"] = dict(self.features)
        return d


@dataclass(frozen=True)
class Event:
    """One located impulse: its triggers (one per sensor) and the fix.

    ``residuals_s[i]`` is ``triggers[i].time_utc_s`` minus the arrival the
    fix predicts; ``outliers`` are ``(trigger, residual_s)`` pairs near the
    event that it does not explain.  ``revision`` grows when a late trigger
    joins; a consumer keeps the highest revision per ``event_id``.
    ``decided_s`` is the stream clock when the event was decided and
    ``deadline_s`` the earliest moment physics allowed it.
    """

    event_id: int
    revision: int
    fix: object = field(repr=False)
    triggers: tuple = field(repr=False)
    residuals_s: tuple = field(repr=False)
    outliers: tuple = field(repr=False)
    decided_s: float = field(repr=False)
    deadline_s: float = field(repr=False)

    @property
    def t_emit_s(self):
        return float(self.fix.t_emit_s)

    @property
    def position_m(self):
        return tuple(float(v) for v in self.fix.position_m)

    @property
    def status(self):
        return self.fix.status

    @property
    def sensors(self):
        return tuple(t.sensor for t in self.triggers)

    @property
    def n_sensors(self):
        return len(self.triggers)

    def to_dict(self, frame=None):
        """JSON-ready dict; with a :class:`shotline.geo.LocalFrame`, adds ``position_llh``."""
        d = {"event_id": self.event_id, "revision": self.revision,
             "time_utc": format_utc(self.t_emit_s), "position_m": [round(v, 3) for v in self.position_m]}
        if frame is not None:
            lat, lon, alt = frame.to_llh(self.position_m).tolist()
            d["position_llh"] = [round(lat, 8), round(lon, 8), round(alt, 2)]
        d["ellipse95_m"] = self.fix.ellipse95_m.to_dict()
        d["status"] = self.status
        d["sensors"] = [{"sensor": t.sensor, "time_utc": format_utc(t.time_utc_s),
                         "residual_s": round(r, 6),
                         **({"snr_db": t.snr_db} if t.snr_db is not None else {})}
                        for t, r in zip(self.triggers, self.residuals_s)]
        d["outliers"] = [{"sensor": t.sensor, "time_utc": format_utc(t.time_utc_s),
                          "residual_s": round(r, 6)} for t, r in self.outliers]
        return d


class Associator:
    """Streaming association of triggers into located events.

    Feed triggers with :meth:`push` (or :meth:`push_many`) as they arrive;
    each call returns the events decided by then.  The stream clock is the
    latest trigger time seen; call :meth:`advance` with the current UTC time
    when the stream is quiet, and :meth:`flush` at the end.  Unexplained
    triggers accumulate in :attr:`unexplained` (:meth:`take_unexplained`
    empties it).

    Parameters (seconds, metres, °C): ``temperature_c`` sets the speed of
    sound; ``tolerance_s`` is the largest residual a member may have (timing
    error plus propagation effects); ``max_range_m`` the farthest a sensor
    hears a shot; ``min_sensors`` the fewest sensors for an event;
    ``max_delay_s`` how late a trigger may be reported after its onset;
    ``late_window_s`` how long decided events stay open to late triggers;
    ``outlier_window_s`` how far off a trigger may be to be flagged as an
    event's outlier; ``search_tolerance_s`` the looser window in which
    candidate sets are first gathered around a trial source from three
    arrivals (default 4 x ``tolerance_s``; three arrivals fix a source
    poorly); ``nearest_fraction`` the share of the ``min_sensors``
    known sensors nearest a fix that must take part in its event (a chance
    fit of unrelated triggers is heard by far sensors only); ``echo_ratio``,
    ``echo_drop_db`` and ``reverb_s`` reject sets made of the echo trains of
    a recent event (see :meth:`_echo_train`); ``max_ellipse_m`` refuses
    events whose 95 % error ellipse is larger (None: no limit); ``source_up_m``
    the height of the ground where shots are fired, in the sensors' frame
    (None: the median height of the sensors involved);
    ``locate_options`` go to :func:`shotline.locate.locate`.
    ``sensors`` optionally registers the network ``{id: position_m}`` up
    front: each sensor then waits only for its farthest neighbour; without
    it, sensors are learnt from the stream and every trigger waits the full
    ``2 * max_range_m / c``.
    """

    def __init__(self, *, temperature_c=DEFAULT_TEMPERATURE_C, tolerance_s=0.02, max_range_m=1000.0,
                 min_sensors=4, max_delay_s=0.0, late_window_s=30.0, outlier_window_s=0.25,
                 search_tolerance_s=None, nearest_fraction=0.5, echo_ratio=0.5, echo_drop_db=6.0,
                 max_ellipse_m=None, reverb_s=1.0, source_up_m=None,
                 locate_options=None, sensors=None):
        if not min_sensors >= 3:
            raise ValueError("min_sensors must be at least 3 (a 2-D fix has 3 unknowns)")
        for name, v in (("tolerance_s", tolerance_s), ("max_range_m", max_range_m)):
            if not v > 0:
                raise ValueError(f"{name} must be positive, got {v!r}")
        if not max_delay_s >= 0 or not late_window_s >= 0 or not outlier_window_s >= tolerance_s:
            raise ValueError("max_delay_s, late_window_s must be >= 0 and outlier_window_s >= tolerance_s")
        self.temperature_c = float(temperature_c)
        self.speed_m_s = float(speed_of_sound_m_s(temperature_c))
        self.tolerance_s = float(tolerance_s)
        self.max_range_m = float(max_range_m)
        self.min_sensors = int(min_sensors)
        self.max_delay_s = float(max_delay_s)
        self.late_window_s = float(late_window_s)
        self.outlier_window_s = float(outlier_window_s)
        self._span_s = 2.0 * self.max_range_m / self.speed_m_s + self.tolerance_s   # widest window
        self.search_tolerance_s = 2.0 * self.tolerance_s if search_tolerance_s is None else float(search_tolerance_s)
        self.nearest_fraction = float(nearest_fraction)
        self.source_up_m = None if source_up_m is None else float(source_up_m)
        self.echo_ratio = float(echo_ratio)
        self.max_ellipse_m = None if max_ellipse_m is None else float(max_ellipse_m)
        self.echo_drop_db = float(echo_drop_db)
        self.reverb_s = float(reverb_s)
        self.locate_options = dict(locate_options or {})
        self.now_s = -math.inf
        self.unexplained = []
        self.stats = {"triggers": 0, "events": 0, "unexplained": 0, "duplicates": 0,
                      "late": 0, "late_attached": 0, "masked": 0,
                      "anchors_waived": 0}
        # Sensors and their neighbourhoods.
        self._sensor_ids = {}
        self._sensor_pos = []
        self._tree = None
        self._neighbours = {}
        self._scratch = np.zeros(0)
        self._heard_s = np.zeros(0)    # per sensor: time of its latest trigger in an event
        self._late_heard_s = {}        # sensor -> time of its latest trigger that joined an event late
        self._late_max_s = -math.inf   # the latest of those
        # Trigger buffer (parallel arrays, index = buffer slot - self._base).
        self._cap = 1024
        self._t = np.zeros(self._cap)
        self._s = np.zeros(self._cap, dtype=np.int64)
        self._p = np.zeros((self._cap, 3))
        self._state = np.zeros(self._cap, dtype=np.int8)
        self._lvl = np.zeros(self._cap)
        self._tmax = np.zeros(self._cap)    # running maximum of _t: where a time window can start
        self._win = np.zeros(self._cap, dtype=np.int64)     # assoc_window's outputs
        self._oth = np.zeros(self._cap, dtype=np.int64)
        self._counts = np.zeros(5, dtype=np.intc)
        self._flag = np.zeros(0, dtype=bool)
        self._rank_of = np.zeros(0, dtype=np.int64)
        self._sensor_xyz = np.zeros((0, 3))
        self._work_d = np.zeros(0)
        self._best = np.zeros(0, dtype=np.int64)
        self._work_i = np.zeros(0, dtype=np.int64)
        self._c = {}
        self._bind()
        self._trig = []
        self._base = 0
        self._n = 0
        self._deadlines = []       # heap of (deadline_s, slot)
        self._seen = {}            # duplicate keys -> time_utc_s
        self._seen_order = deque()
        self._recent = deque()     # decided events open to late triggers
        self._next_id = 1
        self._outlier_log = {}     # sensor -> deque of outlier residuals
        self._levels = {}          # sensor -> list of recent (time_utc_s, level_db), time order
        self._network_known = bool(sensors)
        for sid, pos in (sensors or {}).items():
            self._sensor_index(sid, Trigger(sid, pos, 0.0).position_m)

    def _bind(self):
        """C views of the buffers the kernels use (after any is reallocated)."""
        self._c = {"t": _ffi.from_buffer("double[]", self._t), "tmax": _ffi.from_buffer("double[]", self._tmax),
                   "state": _ffi.from_buffer("int8_t[]", self._state), "s": _ffi.from_buffer("int64_t[]", self._s),
                   "lvl": _ffi.from_buffer("double[]", self._lvl), "heard": _ffi.from_buffer("double[]", self._heard_s),
                   "scratch": _ffi.from_buffer("double[]", self._scratch),
                   "flag": _ffi.from_buffer("uint8_t[]", self._flag), "win": _ffi.from_buffer("int64_t[]", self._win),
                   "oth": _ffi.from_buffer("int64_t[]", self._oth), "counts": _ffi.from_buffer("int[]", self._counts),
                   "xyz": _ffi.from_buffer("double[]", self._sensor_xyz),
                   "rank_of": _ffi.from_buffer("int64_t[]", self._rank_of),
                   "work_d": _ffi.from_buffer("double[]", self._work_d),
                   "best": _ffi.from_buffer("int64_t[]", self._best),
                   "work_i": _ffi.from_buffer("int64_t[]", self._work_i)}

    # ---- sensors -------------------------------------------------------

    def _sensor_index(self, sensor, pos):
        k = self._sensor_ids.get(sensor)
        if k is None:
            k = len(self._sensor_pos)
            self._sensor_ids[sensor] = k
            self._sensor_pos.append(pos)
            self._tree = None
        elif pos != self._sensor_pos[k] and math.dist(self._sensor_pos[k], pos) > 1.0:   # the sensor moved
            self._sensor_pos[k] = pos
            self._tree = None
        return k

    def _neighbourhood(self, k):
        """(sensor indices, distances_m, wait_s, and the first two as C arrays) for sensor ``k``."""
        if self._tree is None:
            self._sensor_xyz = np.asarray(self._sensor_pos, dtype=float)
            self._tree = cKDTree(self._sensor_xyz)
            self._neighbours = {}
            self._scratch = np.full(len(self._sensor_pos), -np.inf)   # -inf: not a neighbour
            self._flag = np.zeros(len(self._sensor_pos), dtype=bool)   # per sensor, left all False
            self._rank_of = np.zeros(len(self._sensor_pos), dtype=np.int64)   # per sensor, left all 0
            self._heard_s = np.r_[self._heard_s, np.full(len(self._sensor_pos) - len(self._heard_s), -np.inf)]
            self._best = np.full(len(self._sensor_pos), -1, dtype=np.int64)   # assoc_one_per_sensor's
            self._work_d = np.empty(len(self._sensor_pos))                    # assoc_heard_in_order's
            self._work_i = np.empty(2 * len(self._sensor_pos), dtype=np.int64)
            self._bind()
        hood = self._neighbours.get(k)
        if hood is None:     # a registered network: every sensor's at once (one tree query)
            todo = np.arange(len(self._sensor_pos)) if self._network_known else np.array([k])
            lists = self._tree.query_ball_point(self._sensor_xyz[todo], 2.0 * self.max_range_m)
            for kk, near in zip(todo.tolist(), lists):
                idx = np.asarray(near, dtype=np.int64)
                dist = _row_norms(self._sensor_xyz[idx] - self._sensor_xyz[kk])
                # A trigger sharing a source x with this one comes at most |x - p_j| / c
                # <= max_range_m / c later, and no later than the farthest neighbour allows.
                reach_m = min(float(dist.max()) if self._network_known else math.inf, self.max_range_m)
                wait = reach_m / self.speed_m_s + self.tolerance_s + self.max_delay_s
                self._neighbours[kk] = (idx, dist, wait, _ffi.from_buffer("int64_t[]", idx),
                                        _ffi.from_buffer("double[]", dist))
            hood = self._neighbours[k]
        return hood

    # ---- input ---------------------------------------------------------

    def push(self, trigger):
        """Add one trigger; return the events decided by now (list, maybe empty)."""
        out = []
        self._add(trigger, out)
        self._decide(out)
        return out

    def push_many(self, triggers):
        """Add several triggers, then decide once; return the events decided."""
        out = []
        for trigger in triggers:
            self._add(trigger, out)
        self._decide(out)
        return out

    def advance(self, now_utc_s):
        """Move the stream clock to ``now_utc_s`` (no trigger needed); return decided events."""
        self.now_s = max(self.now_s, float(now_utc_s))
        out = []
        self._decide(out)
        return out

    def flush(self):
        """Decide everything still pending (end of stream); return the events."""
        out = []
        self._decide(out, everything=True)
        return out

    def take_unexplained(self):
        """Return the unexplained triggers so far and forget them."""
        out, self.unexplained = self.unexplained, []
        return out

    def _add(self, trigger, out):
        if not isinstance(trigger, Trigger):
            raise TypeError(f"expected shotline.associate.Trigger, got {type(trigger).__name__}")
        if self._is_duplicate(trigger):
            self.stats["duplicates"] += 1
            return
        self.stats["triggers"] += 1
        k = self._sensor_index(trigger.sensor, trigger.position_m)
        t = trigger.time_utc_s
        wait_s = self._neighbourhood(k)[2]
        late = t + wait_s < self.now_s
        if late:
            self.stats["late"] += 1
            revised = self._attach_late(trigger)
            if revised is not None:
                out.append(revised)
                return
        slot = self._append(trigger, k)
        self.now_s = max(self.now_s, t)
        if trigger.level_db is not None:
            history = self._levels.setdefault(trigger.sensor, [])
            bisect.insort(history, (t, trigger.level_db))
            horizon = self.now_s - 2.0 * (self.reverb_s + self._span_s + self.max_delay_s)
            if history[0][0] < horizon:
                del history[:bisect.bisect_left(history, (horizon,))]
        heapq.heappush(self._deadlines, (t + wait_s, slot, _ANCHOR))

    def _masked(self, j):
        """Is trigger ``j`` in the reverberation of a louder one just before it on its sensor?

        Echoes follow their direct sound on the same sensor and are weaker.  A
        trigger at least ``echo_drop_db`` weaker than one of the same sensor
        in the ``reverb_s`` before it is *masked*: it neither anchors a search
        nor helps find a source, but may still join an event whose fix it
        fits (a second shooter heard during the first one's echoes).
        Triggers without a level are never masked.  Decided when needed, so
        the order in which triggers arrived does not matter.
        """
        level = self._lvl[j]
        if not math.isfinite(level):
            return False
        t = self._t[j]
        history = self._levels.get(self._trig[j].sensor, ())
        lo = bisect.bisect_left(history, (t - self.reverb_s,))
        hi = bisect.bisect_left(history, (t,))
        return any(lvl >= level + self.echo_drop_db for _, lvl in history[lo:hi])

    def _is_duplicate(self, trigger):
        seen, t = self._seen, trigger.time_utc_s
        key = (trigger.sensor, "t", round(t * 1e6))
        if key in seen:
            return True
        if trigger.seq is not None:
            key_seq = (trigger.sensor, "seq", trigger.seq)
            if key_seq in seen:
                return True
            seen[key_seq] = t
            self._seen_order.append(key_seq)
        seen[key] = t
        self._seen_order.append(key)
        horizon = self.now_s - self.late_window_s - 1.0
        while self._seen_order and self._seen.get(self._seen_order[0], horizon) < horizon:
            self._seen.pop(self._seen_order.popleft(), None)
        return False

    def _append(self, trigger, k):
        i = self._n - self._base
        if i == self._cap:
            self._compact()
            i = self._n - self._base
            if i == self._cap:
                self._cap *= 2
                self._t = np.resize(self._t, self._cap)
                self._s = np.resize(self._s, self._cap)
                self._p = np.resize(self._p, (self._cap, 3))
                self._state = np.resize(self._state, self._cap)
                self._lvl = np.resize(self._lvl, self._cap)
                self._tmax = np.resize(self._tmax, self._cap)
                self._win = np.resize(self._win, self._cap)
                self._oth = np.resize(self._oth, self._cap)
                self._bind()
        self._t[i] = trigger.time_utc_s
        self._tmax[i] = trigger.time_utc_s if i == 0 else max(self._tmax[i - 1], trigger.time_utc_s)
        self._s[i] = k
        self._p[i] = trigger.position_m
        self._state[i] = _PENDING
        self._lvl[i] = math.nan if trigger.level_db is None else trigger.level_db
        self._trig.append(trigger)
        self._n += 1
        return self._n - 1

    def _compact(self):
        """Drop decided triggers older than any window still open."""
        used = self._n - self._base
        keep_after = self.now_s - 2.0 * (4.0 * self.max_range_m / self.speed_m_s + self.outlier_window_s
                                         + self.max_delay_s)
        old = np.isin(self._state[:used], (_IN_EVENT, _UNEXPLAINED)) & (self._t[:used] < keep_after)
        drop = int(np.argmin(old)) if not old.all() else used
        if drop == 0:
            return
        keep = used - drop
        for a in (self._t, self._s, self._p, self._state, self._lvl, self._tmax):
            a[:keep] = a[drop:used]
        del self._trig[:drop]
        self._base += drop

    # ---- decisions -----------------------------------------------------

    def _decide(self, out, everything=False):
        while self._deadlines and (everything or self._deadlines[0][0] <= self.now_s):
            deadline, slot, kind = heapq.heappop(self._deadlines)
            i = slot - self._base
            if i < 0:          # compacted away: it was decided already
                continue
            state = int(self._state[i])
            if kind == _FINAL:
                if state == _DEFERRED or state == _MASKED:
                    self._state[i] = _UNEXPLAINED
                    self.unexplained.append(self._trig[i])
                    self.stats["unexplained"] += 1
                continue
            if state == _MASKED or (state == _PENDING and self._masked(i)):
                self._state[i] = _MASKED
                self.stats["masked"] += 1
                heapq.heappush(self._deadlines, (deadline + self._span_s, slot, _FINAL))
                continue
            if state != _PENDING:
                continue
            current = self._t[i] + self._neighbourhood(int(self._s[i]))[2]
            if current > deadline and not everything:   # a new sensor widened the neighbourhood
                heapq.heappush(self._deadlines, (current, slot, _ANCHOR))
                continue
            event = self._event_for(i, deadline)
            if event is None:
                self._state[i] = _DEFERRED
                heapq.heappush(self._deadlines, (deadline + self._span_s, slot, _FINAL))
            else:
                out.append(event)
        horizon = self.now_s - self.late_window_s
        while self._recent and self._recent[0].t_emit_s < horizon:
            self._recent.popleft()

    def _window(self, i):
        """The window of trigger ``i`` (``native/assoc/search.c``: ``assoc_window``).

        Returns ``(window, others, counts)``: the buffer indices that may share
        a source with it (its own included), those on other sensors that may
        join an event, and ``counts`` (search.h: how many others, their
        sensors, fresh pending others, others with a level, the anchor after
        an event).  The index arrays are views of reused buffers, valid until
        the next call.
        """
        idx, dist, wait, idx_c, dist_c = self._neighbourhood(int(self._s[i]))
        c = self._c
        nw = _lib.assoc_window(self._n - self._base, c["t"], c["tmax"], c["state"], c["s"], c["lvl"],
                               c["heard"], i, len(idx), idx_c, dist_c, self.speed_m_s, self.tolerance_s,
                               self.max_range_m, self.reverb_s, c["scratch"], c["flag"], c["win"],
                               c["oth"], c["counts"])
        counts = self._counts
        return self._win[:nw], self._oth[:counts[0]], counts

    def _event_for(self, i, deadline):
        """Try to build an event around anchor ``i``; None if too few sensors fit."""
        window, others, counts = self._window(i)
        n_others, n_sensors, n_fresh, n_maskable, anchor_after = counts.tolist()
        masked = others[:0]
        if n_maskable:         # triggers with a level: some may be masked (see _masked)
            is_masked = self._state[others] == _MASKED
            for n in np.flatnonzero(~is_masked & np.isfinite(self._lvl[others])):
                is_masked[n] = self._masked(others[n])
            if is_masked.any():
                settled = is_masked & (self._t[others] + self.max_delay_s <= self.now_s)
                self._state[others[settled & (self._state[others] == _PENDING)]] = _MASKED
                masked, others = others[is_masked], others[~is_masked]
                self._flag[self._s[others]] = True          # count the sensors with a candidate
                n_sensors = np.count_nonzero(self._flag)
                self._flag[self._s[others]] = False
                pending = others[self._state[others] == _PENDING]
                n_fresh = np.count_nonzero(~self._after_event(pending))
        if n_sensors + 1 < self.min_sensors:
            return None
        if anchor_after and n_fresh:
            self.stats["anchors_waived"] += 1
            return None
        hypotheses = best_sources(self._p[i], self._t[others] - self._t[i], self._p[others],
                                  self._s[others], self.speed_m_s, tolerance_s=self.search_tolerance_s,
                                  max_range_m=self.max_range_m, min_count=self.min_sensors - 1,
                                  source_up_m=self._source_up(i, others), level_db=self._lvl[others])
        candidates = np.concatenate([[i], others, masked])
        rest = candidates[1:]
        p_rest = self._p[rest]
        for source_m, t_emit_s, resid in hypotheses:
            if len(masked):    # masked triggers did not shape the hypothesis but may join it
                resid = np.concatenate([resid, self._t[masked] - self._t[i] - t_emit_s
                                        - _row_norms(self._p[masked] - source_m) / self.speed_m_s])
            in_range = _row_norms(p_rest - source_m) <= self.max_range_m
            members = np.concatenate([[i], self._one_per_sensor(rest[in_range], np.abs(resid[in_range]),
                                                                self.search_tolerance_s)])
            members = self._heard_in_order(source_m, members)   # cheap screen before locating
            if members is None or len(members) < self.min_sensors:
                continue
            fix, members = self._settle(members, candidates)
            if fix is not None and self._precise(fix) and not self._echo_train(members):
                self._state[members] = _IN_EVENT
                return self._make_event(fix, members, window, deadline)
        return None

    def _after_event(self, idx):
        """Which triggers come within ``reverb_s`` after their sensor's latest event?

        Such a trigger is most likely an echo.  It does not anchor a search
        while a trigger that is not (still pending, hence anchoring later)
        may share its source: it can still join that search's event, and the
        many echoes of a surge cost no search of their own.  When every
        candidate is one (a burst of shots on few sensors) it anchors as usual.
        Triggers with a level are judged by their level instead (:meth:`_masked`).
        """
        dt = self._t[idx] - self._heard_s[self._s[idx]]
        return (dt > 0.0) & (dt <= self.reverb_s) & ~np.isfinite(self._lvl[idx])

    def _precise(self, fix):
        """Is the fix good to ``max_ellipse_m`` (95 % major semi-axis)?  A chance fit
        of unrelated triggers leaves large residuals, hence a large ellipse."""
        major = fix.ellipse95_m.major_m
        return self.max_ellipse_m is None or (math.isfinite(major) and major <= self.max_ellipse_m)

    def _echo_train(self, members):
        """Is this set a weak copy, a little later, of a much stronger recent event?

        Reverberation after a shot leaves trains of late triggers on the
        sensors that heard it, and a few of them can fit a point by chance.
        A set with at most ``echo_ratio`` times a recent event's sensors,
        all of whose triggers but one come on that event's sensors within
        ``reverb_s`` after its triggers there, is refused.  (Echoes with a
        level are mostly masked already, see :meth:`_masked`.)
        """
        n = len(members)
        t_m = self._t[members]
        # _heard_s bounds every recent event's trigger times per sensor: a set
        # with too few members after an event on their sensor cannot be a train.
        # (_late_heard_s: the same for triggers that joined an event late.)
        heard = self._heard_s[self._s[members]]
        if self._late_heard_s:
            heard = np.maximum(heard, [self._late_heard_s.get(k, -math.inf) for k in self._s[members].tolist()])
        if np.count_nonzero(heard >= t_m - self.reverb_s) < max(n - 1, 1):
            return False
        times = dict(zip(self._s[members].tolist(), t_m.tolist()))
        first_s = float(t_m.min())
        # An event's triggers are no later than its decision (or than a late trigger
        # that joined it), and events are kept in decision order: the scan stops at
        # the first event decided more than reverb_s before the set.
        may_stop = self._late_max_s + self.reverb_s < first_s
        for event in reversed(self._recent):
            if may_stop and event.decided_s + self.reverb_s < first_s:
                break
            if event.triggers[-1].time_utc_s + self.reverb_s < first_s or n > self.echo_ratio * len(event.triggers):
                continue
            later = sum(0.0 < times.get(self._sensor_ids[trig.sensor], -math.inf) - trig.time_utc_s
                        <= self.reverb_s for trig in event.triggers)
            if later >= max(n - 1, 1):
                return True
        return False

    def _source_up(self, i, others):
        """Height of the source plane: given, or the median height of the sensors of ``i`` and ``others``."""
        if self.source_up_m is not None:
            return self.source_up_m
        return float(np.median(self._p[np.r_[i, others], 2]))

    def _one_per_sensor(self, idx, abs_resid, limit):
        """From ``idx``, one trigger per sensor within ``limit``: the loudest, then the best fit
        (by sensor; in C: ``native/assoc/search.c``, ``assoc_one_per_sensor``)."""
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        if len(idx) == 0:
            return idx
        out = np.empty_like(idx)
        c = self._c
        n = _lib.assoc_one_per_sensor(len(idx), _ffi.from_buffer("int64_t[]", idx),
                                      _ffi.from_buffer("double[]", np.ascontiguousarray(abs_resid, dtype=float)),
                                      limit, c["s"], c["lvl"], c["best"], _ffi.from_buffer("int64_t[]", out))
        return out[:n]

    def _locate(self, members):
        if not self.locate_options:     # locate()'s own answer for a consistent set, ~20x faster
            fix = consistent_fix(self._p[members], self._t[members], self.speed_m_s, self.tolerance_s,
                                 self.source_up_m)
            if fix is not None:
                return fix
        # sensor_ids: members are one per sensor, so rows need no grouping by position.
        return locate(self._p[members], self._t[members], sensor_ids=self._s[members].tolist(),
                      **self._locate_kwargs())

    def _locate_kwargs(self):
        kwargs = {"temperature_c": self.temperature_c, "gate_s": self.tolerance_s}
        if self.source_up_m is not None:
            kwargs["source_up_m"] = self.source_up_m
        return {**kwargs, **self.locate_options}

    def _predicted_residuals(self, fix, idx):
        pos = np.asarray(fix.position_m, dtype=float)
        return self._t[idx] - (fix.t_emit_s + _row_norms(self._p[idx] - pos) / self.speed_m_s)

    def _settle(self, members, candidates):
        """Locate, re-select members against the fix, repeat until stable."""
        for _ in range(4):
            fix = self._locate(members)
            if fix.status not in ("ok", "ambiguous"):
                return None, members
            dist_m = _row_norms(self._p[candidates] - np.asarray(fix.position_m, dtype=float))
            resid = self._t[candidates] - (fix.t_emit_s + dist_m / self.speed_m_s)   # as _predicted_residuals
            in_range = dist_m <= self.max_range_m
            chosen = self._one_per_sensor(candidates[in_range], np.abs(resid[in_range]), self.tolerance_s)
            chosen = self._heard_in_order(fix.position_m, chosen)
            if chosen is None or len(chosen) < self.min_sensors:
                return None, members
            if set(chosen.tolist()) == set(members.tolist()):
                return fix, members
            members = chosen
        return None, members

    def _heard_in_order(self, source_m, members):
        """Members a real source could have: the nearest sensors hear it best.

        Ranks the known sensors by distance from the source (in C:
        ``native/assoc/search.c``, ``assoc_heard_in_order``).  The event is
        refused unless ``nearest_fraction`` of the ``min_sensors`` nearest
        took part; a member is dropped when fewer than that share of the
        sensors nearer than it took part (a chance fit of an unrelated
        trigger on a far sensor).  Returns the kept members or None.
        """
        if len(members) == 0:
            return None
        here = np.ascontiguousarray(source_m, dtype=float)
        dist_m = _row_norms(self._p[members] - here)
        reach_m = float(dist_m.max()) + 1e-6
        m0 = int(np.argmin(dist_m))
        if reach_m + float(dist_m[m0]) + 2.0 <= 2.0 * self.max_range_m:
            # every sensor within reach of the source is a neighbour of the nearest
            # member's sensor (within 2 * max_range_m; 2 m: a trigger's position may
            # differ from its sensor's registered one by up to 1 m)
            near = self._neighbourhood(int(self._s[members[m0]]))[0]
        else:
            near = np.asarray(self._tree.query_ball_point(here, reach_m), dtype=np.int64)
        members = np.ascontiguousarray(members, dtype=np.int64)
        kept = np.empty_like(members)
        c = self._c
        n = _lib.assoc_heard_in_order(_ffi.from_buffer("double[]", here), len(members),
                                      _ffi.from_buffer("int64_t[]", members), c["s"], reach_m, len(near),
                                      _ffi.from_buffer("int64_t[]", near), c["xyz"], self.nearest_fraction,
                                      self.min_sensors, c["work_d"], c["work_i"], c["flag"], c["rank_of"],
                                      _ffi.from_buffer("int64_t[]", kept))
        return None if n < 0 else kept[:n]

    def _make_event(self, fix, members, window, deadline, event_id=None, revision=0):
        members = members[np.argsort(self._t[members], kind="stable")]
        sensors = self._s[members]      # one trigger per sensor
        self._heard_s[sensors] = np.maximum(self._heard_s[sensors], self._t[members])
        resid = self._predicted_residuals(fix, members)
        rest = window[self._state[window] != _IN_EVENT]
        self._flag[self._s[members]] = True         # sensors taken by the event
        rest = rest[~self._flag[self._s[rest]]]
        self._flag[self._s[members]] = False
        outliers = ()
        if len(rest):
            r = self._predicted_residuals(fix, rest)
            flagged = self._one_per_sensor(rest, np.abs(r), self.outlier_window_s)
            rmap = dict(zip(rest.tolist(), r.tolist()))
            outliers = tuple((self._trig[j], rmap[int(j)]) for j in flagged)
            for trig, r_s in outliers:
                self._outlier_log.setdefault(trig.sensor, deque(maxlen=16)).append(r_s)
        if event_id is None:
            event_id = self._next_id
            self._next_id += 1
            self.stats["events"] += 1
        trig = self._trig
        event = Event(event_id, revision, fix, tuple([trig[j] for j in members.tolist()]),
                      tuple(resid.tolist()), outliers, self.now_s, deadline)
        self._recent.append(event)
        return event

    def _attach_late(self, trigger):
        """Add a late trigger to a recent event it fits; return the revision or None."""
        for n, event in enumerate(reversed(self._recent)):
            if trigger.sensor in event.sensors:
                continue
            pos = np.asarray(event.fix.position_m, dtype=float)
            pred = event.t_emit_s + np.linalg.norm(np.asarray(trigger.position_m) - pos) / self.speed_m_s
            if abs(trigger.time_utc_s - pred) > self.tolerance_s:
                continue
            triggers = event.triggers + (trigger,)
            fix = locate(np.array([t.position_m for t in triggers]),
                         np.array([t.time_utc_s for t in triggers]), **self._locate_kwargs())
            if fix.status not in ("ok", "ambiguous"):
                continue
            order = sorted(range(len(triggers)), key=lambda j: triggers[j].time_utc_s)
            triggers = tuple(triggers[j] for j in order)
            pos = np.asarray(fix.position_m, dtype=float)
            resid = tuple(float(t.time_utc_s - fix.t_emit_s
                                - np.linalg.norm(np.asarray(t.position_m) - pos) / self.speed_m_s)
                          for t in triggers)
            revised = Event(event.event_id, event.revision + 1, fix, triggers, resid,
                            event.outliers, self.now_s, event.deadline_s)
            self._recent[len(self._recent) - 1 - n] = revised
            k = self._sensor_ids[trigger.sensor]
            self._late_heard_s[k] = max(self._late_heard_s.get(k, -math.inf), trigger.time_utc_s)
            self._late_max_s = max(self._late_max_s, trigger.time_utc_s)
            self.stats["late_attached"] += 1
            return revised
        return None

    def clock_suspects(self, min_count=3):
        """Sensors whose recent outlier residuals agree: ``{sensor: median offset_s}``.

        A clock fault shifts every trigger of a sensor by the same amount;
        echoes scatter.  A sensor is named when at least ``min_count`` of its
        recent outliers lie within ``tolerance_s`` of their median.
        """
        out = {}
        for sensor, log in self._outlier_log.items():
            r = np.asarray(log)
            if len(r) < min_count:
                continue
            med = float(np.median(r))
            if np.count_nonzero(np.abs(r - med) <= self.tolerance_s) >= min_count:
                out[sensor] = med
        return out


@dataclass(frozen=True)
class Association:
    """Result of :func:`associate`: final events (latest revisions) and unexplained triggers."""

    events: tuple
    unexplained: tuple
    stats: dict


def associate(triggers, **options):
    """Batch association of a list of :class:`Trigger` (any order).

    Options are those of :class:`Associator`.  Returns an :class:`Association`.
    """
    assoc = Associator(**options)
    latest = {}
    ordered = sorted(triggers, key=lambda t: t.time_utc_s)
    for start in range(0, len(ordered), 256):
        for event in assoc.push_many(ordered[start:start + 256]):
            latest[event.event_id] = event
    for event in assoc.flush():
        latest[event.event_id] = event
    events = tuple(sorted(latest.values(), key=lambda e: e.t_emit_s))
    return Association(events, tuple(assoc.take_unexplained()), dict(assoc.stats))
