"""The technician's bench test of one board, over the wire protocol.

Each check gives PASS or FAIL with the value it measured:

1. ``firmware``: the board answers HELLO and runs (not in safe mode).
2. ``storage``: the board's self-test writes, reads back and removes a file;
   its trigger outbox is open.
3. ``microphone``: samples are captured at the configured rate (measured
   from two STATUS readings), with no I2S overruns.
4. ``noise floor``: the quietest 16 ms block in the last heartbeat period
   lies in ``noise_dbfs`` (default -100..-30 dBFS; an INMP441 in a quiet room
   reads about -85..-75; all-zero samples mean a dead microphone).
5. ``detector``: a trigger from an impulse made during the test (a clap, or
   a test impulse) within ``impulse_timeout_s``; its SNR is the value.
   Triggers recorded before the test started are left for the collector;
   the test's own triggers are acknowledged so they never reach the store.
6. ``gps/pps``: a GPS fix and PPS lock (``time_quality == "pps"``, at least
   ``min_pps_edges`` edges in the time fit) within ``gps_timeout_s``; the
   value is the time to lock and the timing uncertainty.
7. ``clock drift``: the sample clock's fitted rate against nominal, in ppm
   (limit ``max_drift_ppm``), and the board's UTC against the host's clock
   (limit ``max_offset_s``; the host clock is only NTP-good).

``run_bench(link, ...) -> Report``; ``Report.to_text()`` is the readable report.
"""
import dataclasses
import time

from shotline_fw import wire
from shotline_fw.config import DEFAULTS as _FW_DEFAULTS
from shotline.link import LinkError
from shotline.timeutil import format_utc


@dataclasses.dataclass(frozen=True)
class Limits:
    noise_dbfs: tuple = (-100.0, -30.0)
    rate_tolerance: float = 0.01        # captured samples/s within 1 % of nominal
    min_snr_db: float = 10.0
    impulse_timeout_s: float = 30.0
    gps_timeout_s: float = 90.0
    max_drift_ppm: float = 100.0
    max_offset_s: float = 1.0
    min_pps_edges: int = 4            # before the drift figure is trusted


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: str
    detail: str = ""

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Report:
    port: str
    started_utc_s: float
    hello: dict = dataclasses.field(default_factory=dict)
    checks: list = dataclasses.field(default_factory=list)

    @property
    def passed(self):
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self):
        return {"port": self.port, "started_utc": format_utc(self.started_utc_s),
                "sensor_id": self.hello.get("sensor_id"), "uid": self.hello.get("uid"),
                "firmware": self.hello.get("fw"), "passed": self.passed,
                "checks": [c.to_dict() for c in self.checks]}

    def to_text(self):
        lines = [f"Shotline bench test  {format_utc(self.started_utc_s, 0)}",
                 f"board   {self.hello.get('sensor_id', '?')}  uid {self.hello.get('uid', '?')}  "
                 f"firmware {self.hello.get('fw', '?')}  port {self.port}", ""]
        for c in self.checks:
            lines.append(f"{'PASS' if c.passed else 'FAIL'}  {c.name:14} {c.value}"
                         + (f"  ({c.detail})" if c.detail else ""))
        lines += ["", "RESULT: " + ("PASS" if self.passed else "FAIL")]
        return "\n".join(lines) + "\n"


class _Session:
    """Requests over a link, keeping every trigger seen on the way."""

    def __init__(self, link):
        self.link = link
        self.triggers = []

    def _sort(self, frames):
        for f in frames:
            if f.type == wire.TRIGGER:
                try:
                    self.triggers.append(f.json())
                except wire.WireError:
                    pass

    def request(self, msg_type, timeout_s=3.0):
        answer = self.link.request(msg_type, {}, timeout_s)
        self._sort(self.link.read_frames() if self.link.backlog else [])
        return answer

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._sort(self.link.read_frames())


def run_bench(link, limits=Limits(), progress=None):
    """Run every check on the open ``link``; returns the ``Report``.

    ``progress(text)`` is told what the test is waiting for (e.g. "clap now").
    """
    say = progress or (lambda text: None)
    report = Report(port=link.url, started_utc_s=time.time())
    add = report.checks.append
    s = _Session(link)
    try:
        hello = link.hello(5.0)
    except LinkError as exc:
        add(Check("firmware", False, "no answer", str(exc)))
        return report
    report.hello = hello
    running = hello.get("mode") == "run"
    add(Check("firmware", running, f"{hello.get('fw')} mode {hello.get('mode')}",
              "" if running else f"safe mode: {hello.get('error')}"))
    if not running:
        return report
    nominal_hz = float(hello.get("sample_rate_hz") or _FW_DEFAULTS["sample_rate_hz"])

    tests = s.request(wire.SELF_TEST).get("checks", {})
    storage_ok = tests.get("storage") == "ok" and tests.get("outbox") == "ok"
    add(Check("storage", storage_ok, "write/read ok" if storage_ok else "error",
              "" if storage_ok else f"storage: {tests.get('storage')}, outbox: {tests.get('outbox')}"))

    say("measuring the microphone")
    st0, t0 = s.request(wire.STATUS_GET), time.monotonic()
    s.pump(2.0)
    st1, t1 = s.request(wire.STATUS_GET), time.monotonic()
    rate = (st1.get("samples", 0) - st0.get("samples", 0)) / (t1 - t0)
    overruns = st1.get("i2s_overruns", 0) - st0.get("i2s_overruns", 0)
    alive = abs(rate / nominal_hz - 1) <= limits.rate_tolerance if rate > 0 else False
    add(Check("microphone", alive and overruns == 0, f"{rate:.0f} samples/s",
              f"nominal {nominal_hz:.0f}, {overruns} I2S overruns" if not (alive and overruns == 0) else ""))
    noise = st1.get("noise_dbfs")
    if noise is None:
        noise = st0.get("noise_dbfs")
    lo, hi = limits.noise_dbfs
    if noise is None:
        add(Check("noise floor", False, "no signal", "all-zero samples: microphone dead or unwired"))
    else:
        ok = lo <= noise <= hi
        add(Check("noise floor", ok, f"{noise:.1f} dBFS",
                  "" if ok else f"outside {lo:.0f}..{hi:.0f} dBFS"))

    say(f"clap or fire the test impulse now (waiting up to {limits.impulse_timeout_s:.0f} s)")
    samples_at_start = st0.get("samples", 0)
    boot = hello.get("boot")
    deadline = time.monotonic() + limits.impulse_timeout_s
    fresh = []
    while time.monotonic() < deadline and not fresh:
        s.pump(0.1)
        fresh = [t for t in s.triggers
                 if t.get("boot") == boot and t.get("sample_index", -1) >= samples_at_start]
    if fresh:
        best = max(fresh, key=lambda t: t.get("snr_db") or 0.0)
        ok = (best.get("snr_db") or 0.0) >= limits.min_snr_db
        add(Check("detector", ok, f"SNR {best.get('snr_db', 0):.1f} dB, peak {best.get('peak_dbfs', 0):.1f} dBFS",
                  "" if ok else f"weaker than {limits.min_snr_db:.0f} dB"))
        try:
            link.ack(sorted({t["seq"] for t in fresh}))  # bench claps are not events
        except LinkError:
            pass
    else:
        add(Check("detector", False, "no trigger", f"none within {limits.impulse_timeout_s:.0f} s"))

    say("waiting for GPS fix and PPS lock")
    t_start = time.monotonic()
    deadline = t_start + limits.gps_timeout_s
    status = s.request(wire.STATUS_GET)

    def is_locked(st):  # a fix, PPS lock, and enough edges for the rate fit to mean something
        return bool(st.get("gps_fix")) and st.get("time_quality") == wire.TIME_PPS \
            and (st.get("pps_count") or 0) >= limits.min_pps_edges

    while not is_locked(status) and time.monotonic() < deadline:
        s.pump(0.5)
        status = s.request(wire.STATUS_GET)
    locked = is_locked(status)
    add(Check("gps/pps", locked,
              f"locked after {time.monotonic() - t_start:.1f} s, +-{status.get('time_unc_us')} us, "
              f"{status.get('gps_sats')} satellites" if locked else
              f"time {status.get('time_quality')}, fix {status.get('gps_fix')}",
              "" if locked else f"no PPS lock within {limits.gps_timeout_s:.0f} s"))

    sent = time.time()
    tq = s.request(wire.TIME_GET)
    host_s = (sent + time.time()) / 2
    rate_hz = tq.get("rate_hz")
    if rate_hz and tq.get("time_quality") in (wire.TIME_PPS, wire.TIME_HOLDOVER):
        ppm = (rate_hz / nominal_hz - 1) * 1e6
        offset_s = tq["utc_s"] + tq["utc_us"] / 1e6 - host_s
        ok = abs(ppm) <= limits.max_drift_ppm and abs(offset_s) <= limits.max_offset_s
        add(Check("clock drift", ok, f"{ppm:+.1f} ppm, board - host {offset_s * 1e3:+.1f} ms",
                  "" if ok else f"limits {limits.max_drift_ppm:.0f} ppm, {limits.max_offset_s} s"))
    else:
        add(Check("clock drift", False, "not measured", "needs PPS lock"))
    return report
