"""Incidents as GeoJSON (RFC 7946): a Point per incident and its 95 % ellipse.

Coordinates are WGS84 ``[longitude, latitude]`` (RFC 7946 order) rounded to 7
decimals (~1 cm); polygons are closed and counter-clockwise (right-hand
rule).  Times in properties are ISO 8601 UTC with ``Z``.

>>> f = incident_feature({"id": 1, "uid": "a", "time_utc_s": 0.0, "lat_deg": 40.0,
...                       "lon_deg": -80.0, "sensors": ["S1"], "n_shots": 1, "status": "new"})
>>> f["geometry"]
{'type': 'Point', 'coordinates': [-80.0, 40.0]}
"""
import math

import numpy as np

from shotline.geo import LocalFrame
from shotline.timeutil import format_utc

_OPTIONAL = ("class", "probability", "reasons", "event_id", "error_m")


def ellipse_ring_llh(lat_deg, lon_deg, major_m, minor_m, azimuth_deg, n_points=36):
    """The ellipse around a point as a closed ring of ``(lon, lat)`` pairs, counter-clockwise."""
    frame = LocalFrame(lat_deg, lon_deg, 0.0)
    theta = np.linspace(0.0, 2 * np.pi, n_points, endpoint=False)
    az = math.radians(azimuth_deg)
    # Major axis along azimuth (clockwise from north): unit vector (sin az, cos az) in (E, N).
    a = major_m * np.cos(theta)
    b = minor_m * np.sin(theta)
    east = a * math.sin(az) - b * math.cos(az)
    north = a * math.cos(az) + b * math.sin(az)
    llh = frame.to_llh(np.stack([east, north, np.zeros_like(east)], axis=-1))
    ring = [[round(float(lon), 7), round(float(lat), 7)] for lat, lon, _ in llh]
    if _signed_area(ring) < 0:
        ring.reverse()
    return ring + [ring[0]]


def _signed_area(ring):
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]))


def _properties(inc):
    props = {
        "id": inc.get("id"), "uid": inc.get("uid"),
        "time_utc": format_utc(inc["time_utc_s"]),
        "status": inc.get("status", "new"),
        "alert": bool(inc.get("alert", True)),
        "sensors": list(inc.get("sensors") or ()),
        "n_sensors": len(inc.get("sensors") or ()),
        "n_shots": int(inc.get("n_shots") or 1),
    }
    if inc.get("ellipse_major_m") is not None:
        props["ellipse95_m"] = {"major": round(float(inc["ellipse_major_m"]), 2),
                                "minor": round(float(inc["ellipse_minor_m"]), 2),
                                "azimuth_deg": round(float(inc["ellipse_azimuth_deg"]), 1)}
    extra = inc.get("extra") or {}
    for key in _OPTIONAL:   # top level, or in the incident's extra (e.g. a simulation's error)
        value = inc[key] if inc.get(key) is not None else extra.get(key)
        if value is not None:
            props[key] = value
    return props


def incident_feature(incident):
    """One incident -> a GeoJSON Feature with a Point (and altitude if known)."""
    coords = [round(float(incident["lon_deg"]), 7), round(float(incident["lat_deg"]), 7)]
    if incident.get("alt_m") is not None:
        coords.append(round(float(incident["alt_m"]), 2))
    return {"type": "Feature", "id": incident.get("uid") or incident.get("id"),
            "geometry": {"type": "Point", "coordinates": coords},
            "properties": _properties(incident)}


def ellipse_feature(incident, n_points=36):
    """The incident's 95 % error ellipse as a Polygon Feature, or None if it has none."""
    major = incident.get("ellipse_major_m")
    if major is None or not math.isfinite(major):
        return None
    ring = ellipse_ring_llh(incident["lat_deg"], incident["lon_deg"], major,
                            incident["ellipse_minor_m"], incident["ellipse_azimuth_deg"], n_points)
    return {"type": "Feature", "id": f"{incident.get('uid') or incident.get('id')}/ellipse95",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"incident": incident.get("uid") or incident.get("id"),
                           "kind": "ellipse95"}}


def feature_collection(incidents, with_ellipses=True):
    """Incidents -> a FeatureCollection: each Point, then (optionally) each ellipse."""
    features = [incident_feature(i) for i in incidents]
    if with_ellipses:
        features += [f for f in (ellipse_feature(i) for i in incidents) if f is not None]
    return {"type": "FeatureCollection", "features": features}
