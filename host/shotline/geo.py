"""WGS84 latitude/longitude/altitude <-> local east/north/up metres.

Shotline computes in a local tangent plane (ENU, metres) and speaks WGS84
(degrees, metres above the ellipsoid) at its edges.  The conversion is
pymap3d's (``geodetic2enu`` / ``enu2geodetic``), not hand-written geodesy.

>>> frame = LocalFrame(40.44, -79.99, 250.0)
>>> enu = frame.to_enu([40.44, -79.98, 250.0])
>>> enu.round(1).tolist()
[848.5, 0.0, -0.1]
>>> frame.to_llh(enu).round(6).tolist()
[40.44, -79.98, 250.0]
"""
from dataclasses import dataclass

import numpy as np
import pymap3d


def _as_points(values, name):
    a = np.asarray(values, dtype=float)
    if a.ndim == 0 or a.shape[-1] not in (2, 3):
        raise ValueError(f"{name} must have shape (3,) or (..., 3) (or 2 with altitude 0), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    if a.shape[-1] == 2:
        a = np.concatenate([a, np.zeros(a.shape[:-1] + (1,))], axis=-1)
    return a


@dataclass(frozen=True)
class LocalFrame:
    """A local ENU frame with its origin at ``(lat0_deg, lon0_deg, alt0_m)`` (WGS84)."""

    lat0_deg: float
    lon0_deg: float
    alt0_m: float = 0.0

    def __post_init__(self):
        if not -90.0 <= self.lat0_deg <= 90.0 or not -180.0 <= self.lon0_deg <= 360.0:
            raise ValueError(f"frame origin out of range: {self.lat0_deg}, {self.lon0_deg}")
        if not np.isfinite(self.alt0_m):
            raise ValueError("alt0_m must be finite")

    def to_enu(self, llh):
        """``(..., 3)`` latitude (deg), longitude (deg), altitude (m) -> ``(..., 3)`` east, north, up (m).

        A trailing dimension of 2 (lat, lon) means altitude 0 m.
        """
        a = _as_points(llh, "llh")
        lat = a[..., 0]
        if np.any(np.abs(lat) > 90.0):
            raise ValueError("latitude must be within ±90°")
        e, n, u = pymap3d.geodetic2enu(lat, a[..., 1], a[..., 2],
                                       self.lat0_deg, self.lon0_deg, self.alt0_m)
        return np.stack([np.asarray(e, float), np.asarray(n, float), np.asarray(u, float)], axis=-1)

    def to_llh(self, enu):
        """``(..., 3)`` east, north, up (m) -> ``(..., 3)`` latitude, longitude (deg), altitude (m)."""
        a = _as_points(enu, "enu")
        lat, lon, alt = pymap3d.enu2geodetic(a[..., 0], a[..., 1], a[..., 2],
                                             self.lat0_deg, self.lon0_deg, self.alt0_m)
        lon = (np.asarray(lon, float) + 180.0) % 360.0 - 180.0
        return np.stack([np.asarray(lat, float), lon, np.asarray(alt, float)], axis=-1)


def frame_for(llh):
    """A :class:`LocalFrame` centred on a set of points ``(N, 2|3)`` (lat, lon[, alt]).

    The origin is at the mean latitude, the circular mean longitude (safe
    across ±180°) and the mean altitude, so local coordinates stay small.
    """
    a = _as_points(llh, "llh").reshape(-1, 3)
    if len(a) == 0:
        raise ValueError("need at least one point to choose a frame")
    lon_rad = np.radians(a[:, 1])
    lon0 = float(np.degrees(np.arctan2(np.sin(lon_rad).mean(), np.cos(lon_rad).mean())))
    return LocalFrame(float(a[:, 0].mean()), lon0, float(a[:, 2].mean()))
