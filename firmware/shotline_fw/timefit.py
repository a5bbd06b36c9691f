"""Sample time: MCU ticks -> sample index, and sample index -> UTC from GPS PPS.

Valid MicroPython and CPython.  Integer arithmetic only (the RP2040 build has
single-precision floats, useless for POSIX microseconds); sample positions are
kept in Q8 (1/256 sample).

Two stages:

1. ``BlockClock``: each completed I2S block gives (sample index after the
   block, ``ticks_us`` when its IRQ ran).  The IRQ runs *after* the samples
   arrived, by a variable latency >= 0, so the best line is the lower
   envelope of these points.  I2S clock and ``ticks_us`` share one crystal,
   so the slope is constant: nominal at first, then measured over a long span.
   A PPS edge captured as ``ticks_us`` in a hard IRQ becomes a Q8 sample
   position.
2. ``ClockFit``: PPS edges, labelled with their UTC second by NMEA (the RMC/ZDA
   that follows an edge names it) or by counting seconds from a labelled edge,
   are fitted by least squares, UTC = u0 + (s - a) / slope, over the last
   ``points`` edges: the offset and the actual sample rate, so crystal drift is
   tracked.  Edges off by more than 500 ppm are rejected and counted.  Without
   PPS for ``timeout_s`` the fit is extrapolated (holdover) and the uncertainty
   grows by ``holdover_ppm`` microseconds per second.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from shotline_fw import wire

_Q = const(256)             # Q8 sample positions
_TOL_PPM = const(500)       # PPS interval tolerance
_US = const(1000000)


class BlockClock:
    """MCU ticks (µs, wrapping) -> Q8 sample index, from I2S block completions.

    The line t = (s * den + off) / num (t in unwrapped µs, s in samples) is
    the lower envelope of the block completions: ``num/den`` (samples per µs)
    starts nominal and is re-measured between the lowest point of the first
    four windows (of ``window`` blocks) and the lowest of the last four
    windows once they are ``span_s`` apart; ``off`` puts the line through
    the lowest point of the last ``windows`` windows (a block completion
    without latency sits on it).
    """

    def __init__(self, rate_hz, ticks, window=64, windows=16, span_s=4):
        self._ticks = ticks          # object with ticks_diff(a, b)
        self._window = window
        self._nwin = windows
        self._span_us = span_s * _US
        self._num = rate_hz          # samples ...
        self._den = _US              # ... per this many µs
        self._last_w = None          # last wrapped tick seen
        self._last_t = 0             # ... unwrapped
        self._mins = []              # (s, t) lowest point of each recent window
        self._cur = None             # lowest point of the current window
        self._wn = 0
        self._first = []             # lowest points of the first windows
        self._off = None

    @property
    def ready(self):
        return self._off is not None

    def _unwrap(self, t_us):
        if self._last_w is None:
            self._last_w, self._last_t = t_us, 0
        return self._last_t + self._ticks.ticks_diff(t_us, self._last_w)

    def _offset(self, p):
        return p[1] * self._num - p[0] * self._den

    def observe(self, end_sample, t_us):
        """A block ending before sample ``end_sample`` completed at ``t_us``."""
        t = self._unwrap(t_us)
        self._last_w, self._last_t = t_us, t
        p = (end_sample, t)
        if self._cur is None or self._offset(p) < self._offset(self._cur):
            self._cur = p
        if self._off is None or self._offset(p) < self._off:
            self._off = self._offset(p)
        self._wn += 1
        if self._wn < self._window:
            return
        self._mins.append(self._cur)
        if len(self._mins) > self._nwin:
            self._mins.pop(0)
        if len(self._first) < 4:
            self._first.append(self._cur)
        self._cur, self._wn = None, 0
        origin, end = self._lowest(self._first), self._lowest(self._mins[-4:])
        if end[1] - origin[1] >= self._span_us:
            self._num = end[0] - origin[0]
            self._den = end[1] - origin[1]
        self._off = self._offset(self._lowest(self._mins))

    def _lowest(self, points):
        best = None
        for q in points:
            if best is None or self._offset(q) < self._offset(best):
                best = q
        return best

    def uncertainty_us(self):
        """How far the envelope may sit above the latency-free line, µs: the mean
        height of the window minima over the lowest, divided by their number."""
        if not self._mins:
            return 0
        total = 0
        for q in self._mins:
            total += self._offset(q) - self._off
        return total // (self._num * len(self._mins) * len(self._mins))

    def sample_q8(self, t_us):
        """Q8 sample index at MCU time ``t_us`` (within minutes of the last block)."""
        t = self._unwrap(t_us)
        return ((t * self._num - self._off) * _Q) // self._den


class ClockFit:
    """Q8 sample index -> UTC (POSIX seconds, microseconds) from labelled PPS edges."""

    def __init__(self, rate_hz, points=16, timeout_s=1.5, holdover_ppm=2.0):
        self._nom = rate_hz * _Q                 # nominal Q8 samples per second
        self._npts = points
        self._timeout_q8 = int(timeout_s * 1000) * self._nom // 1000
        self._holdover_ppm_x100 = int(holdover_ppm * 100)
        self._u = []                             # labelled edges: UTC second
        self._s = []                             # ... and Q8 sample index
        self._last_edge = None                   # Q8 index of the latest accepted edge
        self._nmea = None                        # (utc_s, Q8 index at arrival) without PPS
        self._fit = None                         # (u0, s0, A, B, D, rms_us)
        self.pps_count = 0
        self.pps_rejected = 0
        self.jumps = 0                           # NMEA contradicted the counted label

    # -- inputs ------------------------------------------------------------
    def pps(self, s_q8):
        """A PPS edge at Q8 sample index ``s_q8``."""
        last = self._last_edge
        if last is not None:
            d = s_q8 - last
            k = (d + self._nom // 2) // self._nom
            if k < 1 or abs(d - k * self._nom) * _US > k * self._nom * _TOL_PPM:
                self.pps_rejected += 1
                return False
        self.pps_count += 1
        self._last_edge = s_q8
        if self._u:
            u = self._predict_second(s_q8)
            if u is None:            # too far from the fit to label by counting
                self._u, self._s, self._fit = [], [], None
            else:
                self._add(u, s_q8)
        return True

    def nmea(self, utc_s, s_now_q8):
        """An NMEA time message for second ``utc_s`` arrived at Q8 index ``s_now_q8``."""
        self._nmea = (utc_s, s_now_q8)
        edge = self._last_edge
        if edge is None or not 0 <= s_now_q8 - edge < self._nom:
            return
        if self._s and self._s[-1] == edge:
            if self._u[-1] != utc_s:
                self.jumps += 1
                self._u, self._s = [utc_s], [edge]
                self._refit()
            return
        self._add(utc_s, edge)

    def _add(self, u, s):
        if self._u and u <= self._u[-1]:
            self.jumps += 1
            self._u, self._s = [], []
        self._u.append(u)
        self._s.append(s)
        if len(self._u) > self._npts:
            self._u.pop(0)
            self._s.pop(0)
        self._refit()

    # -- the fit -------------------------------------------------------------
    def _refit(self):
        u0, s0 = self._u[-1], self._s[-1]
        n = len(self._u)
        if n == 1:
            self._fit = (u0, s0, 0, self._nom, 1, 0)
            return
        sx = sy = sxx = sxy = 0
        for i in range(n):
            x = self._u[i] - u0
            y = self._s[i] - s0
            sx += x
            sy += y
            sxx += x * x
            sxy += x * y
        d = n * sxx - sx * sx
        b = n * sxy - sx * sy
        a = sy * sxx - sx * sxy
        ss = 0
        for i in range(n):
            r = (self._s[i] - s0) * d - a - b * (self._u[i] - u0)   # residual x D, Q8
            r_us = r * _US // (b if b else 1)                        # seconds x 1e6
            ss += r_us * r_us
        rms_us = int((ss // n) ** 0.5) if n > 2 else 0
        self._fit = (u0, s0, a, b, d, rms_us)

    def _predict_second(self, s_q8):
        sec, us = self._utc(s_q8)
        if us > 500000:
            sec, us = sec + 1, _US - us
        return sec if us < 100000 else None

    def _utc(self, s_q8):
        u0, s0, a, b, d, _ = self._fit
        x_us = (((s_q8 - s0) * d - a) * _US * 2 + b) // (2 * b)    # rounded
        return divmod(u0 * _US + x_us, _US)

    # -- outputs -------------------------------------------------------------
    def state(self, s_now_q8):
        """(time_quality, holdover_s) at Q8 index ``s_now_q8``."""
        if self._fit is None:
            return (wire.TIME_NMEA if self._nmea else wire.TIME_NONE), 0
        since = s_now_q8 - self._last_edge
        if since <= self._timeout_q8:
            return wire.TIME_PPS, 0
        return wire.TIME_HOLDOVER, since // self._nom

    def utc(self, s_q8, s_now_q8=None):
        """(utc_s, utc_us, time_quality, holdover_s, unc_us) of Q8 sample index ``s_q8``."""
        if s_now_q8 is None:
            s_now_q8 = s_q8
        quality, holdover_s = self.state(s_now_q8)
        if quality == wire.TIME_NONE:
            return 0, 0, quality, 0, 0
        if quality == wire.TIME_NMEA:
            u, s = self._nmea
            sec, us = divmod(u * _US + (s_q8 - s) * _US // self._nom, _US)
            return sec, us, quality, 0, 500000
        sec, us = self._utc(s_q8)
        unc = max(1, self._fit[5])
        if len(self._u) < 3:
            unc += 50
        if quality == wire.TIME_HOLDOVER:
            away = abs(s_q8 - self._last_edge) * 100 // self._nom     # centiseconds
            unc += away * self._holdover_ppm_x100 // 10000
        return sec, us, quality, holdover_s, unc

    @property
    def rate_hz(self):
        """Fitted actual sample rate, Hz (float)."""
        if self._fit is None:
            return self._nom / _Q
        return self._fit[3] / self._fit[4] / _Q

    @property
    def points(self):
        return len(self._u)
