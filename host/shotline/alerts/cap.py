"""Incidents as OASIS Common Alerting Protocol 1.2 (CAP) XML messages.

One ``<alert>`` per incident in namespace ``urn:oasis:names:tc:emergency:cap:1.2``
with the elements in the order of the CAP 1.2 schema:

- ``identifier`` (``<sender-prefix>-<incident uid>``, stable), ``sender``,
  ``sent`` (``YYYY-MM-DDThh:mm:ss+00:00``: CAP forbids ``Z`` and fractions),
  ``status`` (``Actual``, or ``Exercise`` for simulations), ``msgType``
  (``Alert``; ``Cancel`` with ``references`` when an incident is dismissed),
  ``scope`` (``Restricted`` with a ``restriction``: these go to dispatch, not
  the public), ``note`` for simulations;
- ``info``: ``category`` Security, ``event`` "Gunfire" (class gunshot),
  "Possible gunfire" (not classified) or "Impulsive sound" (another class),
  ``urgency`` Immediate, ``severity`` Severe (gunfire, possible gunfire) or
  Moderate, ``certainty`` Observed once a person reviewed
  or dispatched it, Likely at probability >= 0.5, else Possible; ``onset``
  (the shot's time), ``expires`` (+1 h), ``senderName``, ``headline``,
  ``description``, ``parameter`` s (sensors, shots, ellipse, class, probability);
- ``area``: ``areaDesc``, the 95 % ellipse as a ``polygon`` and the
  ``circle`` "lat,lon radius_km" that holds it (radius = semi-major axis).

Reference: OASIS, *Common Alerting Protocol Version 1.2*, 1 July 2010.
"""
import datetime as _dt
import xml.etree.ElementTree as ET

from .geojson import ellipse_ring_llh

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
EXPIRES_S = 3600


def cap_time(t_s):
    """POSIX seconds -> CAP dateTime ``2026-07-04T22:00:05+00:00`` (whole seconds)."""
    t = _dt.datetime.fromtimestamp(int(t_s // 1), tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _sub(parent, tag, text=None):
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = str(text)
    return el


def _certainty(inc):
    if inc.get("status") in ("reviewed", "dispatched"):
        return "Observed"
    if inc.get("probability") is not None:
        return "Likely" if float(inc["probability"]) >= 0.5 else "Possible"
    return "Possible"


def read_message(xml_text):
    """The header of a CAP 1.2 message: ``sender``, ``identifier``, ``sent_utc_s``,
    ``status``, ``msg_type``, ``note`` (None if absent); ValueError if it is not one."""
    from shotline.timeutil import parse_utc

    root = ET.fromstring(xml_text.encode() if isinstance(xml_text, str) else xml_text)
    if root.tag != f"{{{CAP_NS}}}alert":
        raise ValueError("not a CAP 1.2 alert")
    get = {name: root.findtext(f"{{{CAP_NS}}}{name}")
           for name in ("sender", "identifier", "sent", "status", "msgType", "note")}
    if None in (get["sender"], get["identifier"], get["sent"], get["status"]):
        raise ValueError("CAP alert lacks sender, identifier, sent or status")
    return {"sender": get["sender"], "identifier": get["identifier"],
            "sent_utc_s": parse_utc(get["sent"]), "status": get["status"],
            "msg_type": get["msgType"], "note": get["note"]}


def identifier(incident, prefix="shotline"):
    return f"{prefix}-{incident['uid']}"


def cap_alert(incident, *, sender="shotline@localhost", sent_utc_s, status="Actual",
              msg_type="Alert", references=None, note=None, prefix="shotline"):
    """One incident -> CAP 1.2 XML text (UTF-8 declaration included).

    ``references``: for ``Update``/``Cancel``, the ``(sender, identifier,
    sent_utc_s)`` of the messages it refers to.  ``identifier`` is
    ``<prefix>-<uid>`` for an Alert and gets ``-<msgType>`` appended
    otherwise, so each message has its own identifier.
    """
    if any(c in sender for c in " ,<&"):
        raise ValueError(f"CAP sender must not contain spaces, commas, < or &: {sender!r}")
    cls_name = incident.get("class")
    gunfire = cls_name in (None, "gunshot")
    event = "Gunfire" if cls_name == "gunshot" else "Possible gunfire" if gunfire \
        else "Impulsive sound"
    ET.register_namespace("", CAP_NS)
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    ident = identifier(incident, prefix)
    if msg_type != "Alert":
        ident += f"-{msg_type.lower()}"
    _sub(alert, "identifier", ident)
    _sub(alert, "sender", sender)
    _sub(alert, "sent", cap_time(sent_utc_s))
    _sub(alert, "status", status)
    _sub(alert, "msgType", msg_type)
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", "For public-safety dispatch; not for public release")
    if note:
        _sub(alert, "note", note)
    if references:
        _sub(alert, "references", " ".join(f"{s},{i},{cap_time(t)}" for s, i, t in references))
    _sub(alert, "incidents", incident["uid"])

    info = _sub(alert, "info")
    _sub(info, "language", "en-US")
    _sub(info, "category", "Security")
    _sub(info, "event", event)
    _sub(info, "responseType", "Monitor" if msg_type == "Alert" else "AllClear")
    _sub(info, "urgency", "Immediate")
    _sub(info, "severity", "Severe" if gunfire else "Moderate")
    _sub(info, "certainty", _certainty(incident))
    _sub(info, "onset", cap_time(incident["time_utc_s"]))
    _sub(info, "expires", cap_time(sent_utc_s + EXPIRES_S))
    _sub(info, "senderName", "Shotline acoustic gunshot location")
    shots = int(incident.get("n_shots") or 1)
    sensors = list(incident.get("sensors") or ())
    lat, lon = float(incident["lat_deg"]), float(incident["lon_deg"])
    major = incident.get("ellipse_major_m")
    what = f"{shots} shot{'s' if shots != 1 else ''}" if gunfire else \
        f"{shots} impulse{'s' if shots != 1 else ''}"
    _sub(info, "headline", f"{event}: {what} at {lat:.5f},{lon:.5f}")
    where = f" within {major:.0f} m (95 %)" if major is not None else ""
    cls = ""
    if incident.get("class") is not None:
        cls = f" Classified {incident['class']}"
        if incident.get("probability") is not None:
            cls += f" (p = {float(incident['probability']):.2f})"
        cls += "."
    _sub(info, "description",
         f"Acoustic sensors located {what} at {lat:.5f}, {lon:.5f}{where} at "
         f"{cap_time(incident['time_utc_s'])}, heard by {len(sensors)} sensors "
         f"({', '.join(sensors)}).{cls} Incident {incident['uid']} status "
         f"{incident.get('status', 'new')}.")
    params = [("shotline:incident", incident["uid"]), ("shotline:n_shots", shots),
              ("shotline:sensors", " ".join(sensors))]
    if major is not None:
        params += [("shotline:ellipse95_major_m", f"{major:.1f}"),
                   ("shotline:ellipse95_minor_m", f"{float(incident['ellipse_minor_m']):.1f}"),
                   ("shotline:ellipse95_azimuth_deg",
                    f"{float(incident['ellipse_azimuth_deg']):.1f}")]
    for key in ("class", "probability"):
        if incident.get(key) is not None:
            params.append((f"shotline:{key}", incident[key]))
    for name, value in params:
        p = _sub(info, "parameter")
        _sub(p, "valueName", name)
        _sub(p, "value", value)

    area = _sub(info, "area")
    _sub(area, "areaDesc", f"Within {major:.0f} m of {lat:.5f},{lon:.5f}" if major is not None
         else f"Near {lat:.5f},{lon:.5f}")
    radius_km = max(float(major), 1.0) / 1000.0 if major is not None else 0.05
    if major is not None:
        ring = ellipse_ring_llh(lat, lon, float(major), float(incident["ellipse_minor_m"]),
                                float(incident["ellipse_azimuth_deg"]), n_points=24)
        _sub(area, "polygon", " ".join(f"{la:.6f},{lo:.6f}" for lo, la in ring))
    _sub(area, "circle", f"{lat:.6f},{lon:.6f} {radius_km:.3f}")
    ET.indent(alert)
    return "<?xml version='1.0' encoding='UTF-8'?>\n" + ET.tostring(alert, encoding="unicode") \
        + "\n"
