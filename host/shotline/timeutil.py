"""UTC time stamps as text and as numbers.

Inside Shotline an absolute time is POSIX seconds (float, UTC).  A float64
holds today's epoch seconds to about 0.24 µs, well below any arrival-time
error here.  At the edges times are ISO 8601 with a ``Z`` and microseconds,
e.g. ``2018-12-19T00:49:27.467123Z``.
"""
import datetime as _dt
import re

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def parse_utc(text):
    """ISO 8601 time stamp -> POSIX seconds (float).

    Accepts ``Z`` or a numeric offset and up to nanosecond digits; a time with
    no zone is refused, since Shotline never guesses a time zone.

    >>> parse_utc("1970-01-01T00:00:01.5Z")
    1.5
    """
    m = _ISO.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"not an ISO 8601 UTC time stamp: {text!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    if zone is None:
        raise ValueError(f"time stamp has no zone (append Z for UTC): {text!r}")
    whole = _dt.datetime(int(year), int(month), int(day), int(hour), int(minute),
                         int(second), tzinfo=_dt.timezone.utc)
    seconds = (whole - _EPOCH) // _dt.timedelta(seconds=1)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    fraction = int(frac) / 10 ** len(frac) if frac else 0.0
    return seconds + fraction


def format_utc(t_s, digits=6):
    """POSIX seconds -> ISO 8601 UTC text with ``digits`` decimals and ``Z``.

    >>> format_utc(1545180567.467123)
    '2018-12-19T00:49:27.467123Z'
    """
    scale = 10 ** digits
    ticks = round(t_s * scale)
    whole, frac = divmod(ticks, scale)
    stamp = (_EPOCH + _dt.timedelta(seconds=whole)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:0{digits}d}Z" if digits else stamp + "Z"
