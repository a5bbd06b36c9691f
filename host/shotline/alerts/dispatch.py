"""Raise the alerts of a recorded incident: a CAP 1.2 file and a webhook message.

>>> # alerter = Alerter(cap_dir="alerts/cap", outbox=WebhookOutbox(store, url))
>>> # alerter.alert(incident)   # -> {"cap": "alerts/cap/<uid>.xml", "webhook": 3}
"""
import time
from pathlib import Path

from .cap import cap_alert
from .geojson import incident_feature
from .webhook import alert_key


class Alerter:
    """Writes ``<cap_dir>/<uid>.xml`` and enqueues the GeoJSON Feature to ``outbox``
    (a :class:`.webhook.WebhookOutbox`; delivery is the outbox's job).

    ``cap_status``: ``Actual`` for real sensors, ``Exercise`` for simulations
    (with a ``note``).  Either output may be None.
    """

    def __init__(self, *, cap_dir=None, outbox=None, sender="shotline@localhost",
                 cap_status="Actual", note=None, clock=time.time):
        self.cap_dir = None if cap_dir is None else Path(cap_dir)
        self.outbox, self.sender, self.cap_status, self.note = outbox, sender, cap_status, note
        self.clock = clock
        if self.cap_dir is not None:
            self.cap_dir.mkdir(parents=True, exist_ok=True)

    def alert(self, incident):
        """Alert one incident (a dict from ``shotline.incidents``); returns what was made."""
        out = {"cap": None, "webhook": None}
        if self.cap_dir is not None:
            path = self.cap_dir / f"{incident['uid']}.xml"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(cap_alert(incident, sender=self.sender, sent_utc_s=self.clock(),
                                     status=self.cap_status, note=self.note))
            tmp.replace(path)
            out["cap"] = str(path)
        if self.outbox is not None:
            out["webhook"] = self.outbox.enqueue(incident_feature(incident),
                                                 alert_key(incident))[0]
        return out
