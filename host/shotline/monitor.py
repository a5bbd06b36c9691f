"""Live view of one board for a technician at the bench (``rich``).

``MonitorState`` folds the board's frames (HELLO, TRIGGER, HEARTBEAT and
STATUS answers) into what the screen shows; ``render(state)`` draws it:
health (mode, time quality, GPS, outbox, overruns, temperature), a level
meter (noise floor, last trigger's peak) and the latest triggers.  The
monitor only watches: it does not acknowledge triggers unless asked to
(``ack=True``), so they stay in the board's outbox for the collector.
"""
import collections
import time

from rich.console import Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table

from shotline_fw import wire
from shotline.link import LinkError
from shotline.timeutil import format_utc

_FLOOR_DBFS = -100.0  # left end of the level meters


class MonitorState:
    """What the monitor knows about the board (updated by ``feed``)."""

    def __init__(self, max_triggers=12):
        self.hello = {}
        self.status = {}
        self.triggers = collections.OrderedDict()  # seq -> record, newest last
        self.max_triggers = max_triggers
        self.trigger_count = 0
        self.logs = collections.deque(maxlen=3)
        self.updated_s = None

    def feed(self, frame):
        """Fold one frame in; returns the new trigger record (dict) if it is one not seen yet."""
        self.updated_s = time.time()
        try:
            body = frame.json() if frame.type != wire.SNIPPET_CHUNK else {}
        except wire.WireError:
            return None
        if frame.type == wire.HELLO:
            self.hello = body
        elif frame.type in (wire.HEARTBEAT, wire.RESPONSE) and "uptime_s" in body:
            self.status = body
        elif frame.type == wire.LOG:
            self.logs.append(f"{body.get('level')}: {body.get('msg')}")
        elif frame.type == wire.TRIGGER and "seq" in body and body["seq"] not in self.triggers:
            record = wire.trigger_record(body)
            self.triggers[body["seq"]] = record
            self.trigger_count += 1
            while len(self.triggers) > self.max_triggers:
                self.triggers.popitem(last=False)
            return record
        return None


def _meter(value_dbfs):
    if value_dbfs is None:
        return "-"
    return ProgressBar(total=-_FLOOR_DBFS, completed=max(0.0, value_dbfs - _FLOOR_DBFS), width=40)


def render(state):
    """The whole screen for ``state`` (a rich renderable)."""
    h, s = state.hello, state.status
    health = Table.grid(padding=(0, 2))
    health.add_column(style="bold")
    health.add_column()
    health.add_column(style="bold")
    health.add_column()
    mode = s.get("mode") or h.get("mode") or "?"
    health.add_row("sensor", str(h.get("sensor_id", "?")), "firmware", str(h.get("fw", "?")))
    health.add_row("mode", mode if mode == "run" else f"[red]{mode}: {s.get('error') or h.get('error')}[/]",
                   "uptime", f"{s.get('uptime_s', '?')} s")
    tq = s.get("time_quality", "?")
    health.add_row("time", tq if tq == "pps" else f"[yellow]{tq}[/]",
                   "uncertainty", f"{s.get('time_unc_us', '?')} us")
    health.add_row("gps", f"fix {s.get('gps_fix', '?')}, {s.get('gps_sats', '?')} sats",
                   "pps edges", str(s.get("pps_count", "?")))
    health.add_row("outbox", f"{s.get('outbox_pending', '?')} pending, {s.get('outbox_dropped', '?')} dropped",
                   "I2S overruns", str(s.get("i2s_overruns", "?")))
    health.add_row("storage", "ok" if s.get("storage_ok") else f"[red]{s.get('storage_error')}[/]",
                   "temperature", f"{s.get('temp_c', '?')} C")
    levels = Table.grid(padding=(0, 2))
    last = next(reversed(state.triggers.values()), None)
    noise = s.get("noise_dbfs")
    levels.add_row("noise floor", _meter(noise), "-" if noise is None else f"{noise:.1f} dBFS")
    peak = None if last is None else last.get("peak_dbfs")
    levels.add_row("last peak", _meter(peak), "-" if peak is None else f"{peak:.1f} dBFS")
    trig = Table(title=f"triggers ({state.trigger_count} seen)", expand=True)
    for col in ("seq", "onset UTC", "time", "SNR dB", "peak dBFS", "rise ms"):
        trig.add_column(col)
    for rec in reversed(state.triggers.values()):
        when = "-" if rec.get("time_quality") == wire.TIME_NONE else format_utc(rec["onset_utc_s"])
        trig.add_row(str(rec["seq"]), when, str(rec.get("time_quality")),
                     f"{rec.get('snr_db', 0):.1f}", f"{rec.get('peak_dbfs', 0):.1f}",
                     f"{1e3 * (rec.get('rise_time_s') or 0):.2f}")
    parts = [Panel(health, title="health"), Panel(levels, title="levels"), trig]
    if state.logs:
        parts.append(Panel("\n".join(state.logs), title="board log", style="red"))
    return Group(*parts)


def watch(link, state, *, on_trigger=None, status_every_s=1.0, duration_s=None, ack=False,
          on_update=None, stop=None):
    """Read ``link`` into ``state`` until ``duration_s`` passes or ``stop()`` is true.

    Asks for STATUS every ``status_every_s`` so the levels move between
    heartbeats.  ``on_trigger(record)`` gets each new trigger; ``on_update()``
    is called after each read.
    """
    state.hello = link.hello(5.0)
    end = None if duration_s is None else time.monotonic() + duration_s
    next_status = 0.0
    while (end is None or time.monotonic() < end) and not (stop and stop()):
        now = time.monotonic()
        if now >= next_status:
            next_status = now + status_every_s
            try:
                state.status = link.request(wire.STATUS_GET, {}, timeout_s=2.0)
            except LinkError as exc:
                if not link.is_open:
                    raise
                state.logs.append(f"status: {exc}")
        for frame in link.read_frames():
            record = state.feed(frame)
            if record is not None:
                if ack:
                    link.ack([record["seq"]])
                if on_trigger is not None:
                    on_trigger(record)
        if on_update is not None:
            on_update()
