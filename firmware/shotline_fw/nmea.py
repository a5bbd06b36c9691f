"""NMEA 0183 from the GPS UART: RMC, GGA and ZDA (any talker: GP, GN, GL, GA, BD).

Valid MicroPython and CPython; integers only (no float time on the board).

``NMEA.feed(data) -> [utc_s, ...]`` takes raw UART bytes and returns the UTC
second (POSIX, int) of every complete, valid time message in them: an RMC
with status A, or a ZDA (GGA has no date, so it only updates the fix state).  A u-blox
receiver sends these just after the PPS edge that starts that second.
Checksums are verified; bad sentences are counted in ``bad``.  Fix state is
kept in ``fix``, ``sats``, ``hdop_x10``, ``lat_e7``, ``lon_e7``, ``alt_dm``.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_MAX_LINE = const(100)   # NMEA limits a sentence to 82 characters


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def checksum_ok(line):
    """True if ``line`` (bytes, ``$...*hh``) carries a valid XOR checksum."""
    star = line.rfind(b"*")
    if not line.startswith(b"$") or star < 0 or star + 3 > len(line):
        return False
    c = 0
    for b in line[1:star]:
        c ^= b
    try:
        return c == int(line[star + 1:star + 3], 16)
    except ValueError:
        return False


def _hms(field):
    """Seconds of day from 'hhmmss[.ss]' (fraction dropped), or None."""
    if len(field) < 6:
        return None
    try:
        h, m, s = int(field[0:2]), int(field[2:4]), int(field[4:6])
    except ValueError:
        return None
    if h > 23 or m > 59 or s > 60:
        return None
    return h * 3600 + m * 60 + s


def _coord_e7(value, hemi):
    """Degrees x 1e7 from NMEA 'dddmm.mmmm' and hemisphere, or None."""
    if not value or b"." not in value:
        return None
    dot = value.find(b".")
    try:
        deg = int(value[:dot - 2])
        minutes_1e5 = int(value[dot - 2:dot]) * 100000 + int((value[dot + 1:] + b"00000")[:5])
    except ValueError:
        return None
    v = deg * 10000000 + (minutes_1e5 * 10 + 3) // 6  # minutes / 60, in 1e-7 deg
    return -v if hemi in (b"S", b"W") else v


class NMEA:
    """Incremental NMEA parser (one instance per GPS UART)."""

    def __init__(self):
        self._buf = bytearray(_MAX_LINE)
        self._n = 0
        self._skip = False
        self.date_days = None   # days since epoch of the last RMC/ZDA date
        self.fix = False
        self.sats = 0
        self.hdop_x10 = 0
        self.lat_e7 = None
        self.lon_e7 = None
        self.alt_dm = None
        self.sentences = 0
        self.bad = 0

    def feed(self, data):
        """UTC seconds of the complete time messages in ``data`` (bytes)."""
        out = []
        if not data:
            return out
        for b in data:
            if b == 10 or b == 13:
                if self._n and not self._skip:
                    t = self.parse(bytes(self._buf[:self._n]))
                    if t is not None:
                        out.append(t)
                self._n = 0
                self._skip = False
            elif self._n < _MAX_LINE:
                self._buf[self._n] = b
                self._n += 1
            else:
                self._skip = True
                self.bad += 1
        return out

    def parse(self, line):
        """Parse one sentence (bytes, no line ending); returns its UTC second or None."""
        if not checksum_ok(line):
            if line.startswith(b"$"):
                self.bad += 1
            return None
        self.sentences += 1
        f = line[1:line.rfind(b"*")].split(b",")
        kind = f[0][2:]
        if kind == b"RMC" and len(f) >= 10:
            sod = _hms(f[1])
            if f[2] != b"A" or sod is None or len(f[9]) != 6:
                self.fix = False
                return None
            try:
                d, m, y = int(f[9][0:2]), int(f[9][2:4]), 2000 + int(f[9][4:6])
            except ValueError:
                return None
            self.date_days = days_from_civil(y, m, d)
            self.fix = True
            self.lat_e7 = _coord_e7(f[3], f[4])
            self.lon_e7 = _coord_e7(f[5], f[6])
            return self.date_days * 86400 + sod
        if kind == b"ZDA" and len(f) >= 5:
            sod = _hms(f[1])
            try:
                d, m, y = int(f[2]), int(f[3]), int(f[4])
            except ValueError:
                return None
            if sod is None or not (1 <= m <= 12 and 1 <= d <= 31 and y >= 2000):
                return None
            self.date_days = days_from_civil(y, m, d)
            return self.date_days * 86400 + sod
        if kind == b"GGA" and len(f) >= 10:
            try:
                quality = int(f[6] or b"0")
                self.sats = int(f[7] or b"0")
            except ValueError:
                return None
            self.fix = quality > 0
            if f[8]:
                try:
                    whole, _, frac = f[8].partition(b".")
                    self.hdop_x10 = int(whole) * 10 + int((frac + b"0")[:1])
                except ValueError:
                    pass
            if self.fix:
                self.lat_e7 = _coord_e7(f[2], f[3])
                self.lon_e7 = _coord_e7(f[4], f[5])
                if f[9]:
                    try:
                        whole, _, frac = f[9].partition(b".")
                        neg = whole.startswith(b"-")
                        dm = abs(int(whole)) * 10 + int((frac + b"0")[:1])
                        self.alt_dm = -dm if neg else dm
                    except ValueError:
                        pass
        return None
