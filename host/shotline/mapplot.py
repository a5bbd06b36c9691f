"""A map to PNG: sensors, incidents with their 95 % ellipses, and (for simulations) the truth.

Drawn in local east/north metres around the sensors' centre (a plain
equal-aspect plot; no background tiles, so it works offline), with the
origin's WGS84 position in the caption.

>>> # draw_map("map.png", sensors=[("S1", 40.45, -79.98)], incidents=[...], truth=[...])
"""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from shotline.geo import frame_for  # noqa: E402

_TRUTH_STYLE = {True: ("x", "#d62728", "true gunshot"), False: ("+", "#7f7f7f", "true confuser")}


def draw_map(path, *, sensors, incidents=(), truth=(), title=None):
    """Write a PNG map; returns the path.

    ``sensors``: ``(id, lat_deg, lon_deg)`` tuples.  ``incidents``: incident
    dicts (:mod:`shotline.incidents`); an ``extra["truth_id"]`` draws a line to
    that truth source.  ``truth``: dicts with ``id``, ``position_llh`` and
    ``is_gunshot`` (the sources of a simulation's ``truth.json``).
    """
    sensors = list(sensors)
    if not sensors:
        raise ValueError("a map needs at least one sensor")
    frame = frame_for([(lat, lon) for _, lat, lon in sensors])

    def en(lat, lon):
        e, n, _ = frame.to_enu([lat, lon, 0.0])
        return float(e), float(n)

    fig, ax = plt.subplots(figsize=(11, 9), dpi=100)
    xy = [en(lat, lon) for _, lat, lon in sensors]
    ax.scatter([p[0] for p in xy], [p[1] for p in xy], marker="^", s=70, c="#1f77b4",
               label="sensor", zorder=3)
    for (name, _, _), (x, y) in zip(sensors, xy):
        ax.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7,
                    color="#1f77b4")
    truth_xy = {}
    for kind in (True, False):
        pts = [t for t in truth if bool(t.get("is_gunshot")) == kind]
        if not pts:
            continue
        marker, colour, label = _TRUTH_STYLE[kind]
        coords = [en(*t["position_llh"][:2]) for t in pts]
        truth_xy.update({t["id"]: c for t, c in zip(pts, coords)})
        ax.scatter([c[0] for c in coords], [c[1] for c in coords], marker=marker, s=80,
                   c=colour, label=label, zorder=4, linewidths=2)
        for t, (x, y) in zip(pts, coords):
            ax.annotate(t["id"], (x, y), xytext=(5, -10), textcoords="offset points",
                        fontsize=7, color=colour)
    labelled = set()
    for inc in incidents:
        x, y = en(inc["lat_deg"], inc["lon_deg"])
        alert = inc.get("alert", True) and inc.get("status") != "dismissed"
        colour = "#ff7f0e" if alert else "#9467bd"
        label = "incident (alert)" if alert else "incident (recorded only)"
        ax.scatter([x], [y], marker="o", s=30, c=colour, zorder=5,
                   label=None if label in labelled else label)
        labelled.add(label)
        major = inc.get("ellipse_major_m")
        if major is not None and math.isfinite(major):
            ax.add_patch(Ellipse((x, y), 2 * major, 2 * inc["ellipse_minor_m"],
                                 angle=90.0 - inc["ellipse_azimuth_deg"], fill=False,
                                 ec=colour, lw=1.2, zorder=5))
        truth_id = (inc.get("extra") or {}).get("truth_id")
        if truth_id in truth_xy:
            tx, ty = truth_xy[truth_id]
            ax.plot([x, tx], [y, ty], "-", c="#2ca02c", lw=1, zorder=4)
        ax.annotate(str(inc.get("id", "")), (x, y), xytext=(-10, 5), textcoords="offset points",
                    fontsize=7, color=colour)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    ax.set_title(title or "Shotline")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.text(0.01, 0.01, f"origin {frame.lat0_deg:.5f}, {frame.lon0_deg:.5f} (WGS84); "
             "ellipses: 95 %", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
