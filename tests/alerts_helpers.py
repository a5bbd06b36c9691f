"""Test helpers for alerts: a CAP 1.2 structure checker and a local webhook receiver.

``check_cap12`` encodes the published OASIS CAP 1.2 structure (CAP-v1.2,
section 3.2 and its XML schema): element order and cardinality of
``alert``, ``info``, ``area``, the value lists, the dateTime pattern, and the
polygon/circle syntax.  It is written from the standard, independently of
``shotline.alerts.cap``.
"""
import http.server
import re
import threading
import xml.etree.ElementTree as ET

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"

# (element, min, max) in schema order; None = unbounded.
ALERT = [("identifier", 1, 1), ("sender", 1, 1), ("sent", 1, 1), ("status", 1, 1),
         ("msgType", 1, 1), ("source", 0, 1), ("scope", 1, 1), ("restriction", 0, 1),
         ("addresses", 0, 1), ("code", 0, None), ("note", 0, 1), ("references", 0, 1),
         ("incidents", 0, 1), ("info", 0, None)]
INFO = [("language", 0, 1), ("category", 1, None), ("event", 1, 1), ("responseType", 0, None),
        ("urgency", 1, 1), ("severity", 1, 1), ("certainty", 1, 1), ("audience", 0, 1),
        ("eventCode", 0, None), ("effective", 0, 1), ("onset", 0, 1), ("expires", 0, 1),
        ("senderName", 0, 1), ("headline", 0, 1), ("description", 0, 1),
        ("instruction", 0, 1), ("web", 0, 1), ("contact", 0, 1), ("parameter", 0, None),
        ("resource", 0, None), ("area", 0, None)]
AREA = [("areaDesc", 1, 1), ("polygon", 0, None), ("circle", 0, None), ("geocode", 0, None),
        ("altitude", 0, 1), ("ceiling", 0, 1)]
PAIR = [("valueName", 1, 1), ("value", 1, 1)]
VALUES = {
    "status": {"Actual", "Exercise", "System", "Test", "Draft"},
    "msgType": {"Alert", "Update", "Cancel", "Ack", "Error"},
    "scope": {"Public", "Restricted", "Private"},
    "category": {"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env",
                 "Transport", "Infra", "CBRNE", "Other"},
    "responseType": {"Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess",
                     "AllClear", "None"},
    "urgency": {"Immediate", "Expected", "Future", "Past", "Unknown"},
    "severity": {"Extreme", "Severe", "Moderate", "Minor", "Unknown"},
    "certainty": {"Observed", "Likely", "Possible", "Unlikely", "Unknown"},
}
DATETIME = re.compile(r"^\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")
_NUM = r"-?\d+(\.\d+)?"
POINT = re.compile(rf"^{_NUM},{_NUM}$")
CIRCLE = re.compile(rf"^{_NUM},{_NUM} \d+(\.\d+)?$")


class CapError(AssertionError):
    pass


def _local(el):
    if not el.tag.startswith("{" + CAP_NS + "}"):
        raise CapError(f"element {el.tag} is not in the CAP 1.2 namespace")
    return el.tag.split("}", 1)[1]


def _sequence(parent, spec, where):
    children = list(parent)
    i = 0
    for name, low, high in spec:
        n = 0
        while i < len(children) and _local(children[i]) == name:
            n += 1
            i += 1
        if n < low or (high is not None and n > high):
            raise CapError(f"{where}: {name} occurs {n} times, allowed {low}..{high or 'n'}")
    if i != len(children):
        raise CapError(f"{where}: unexpected or out-of-order <{_local(children[i])}>")


def _text(parent, name):
    el = parent.find(f"{{{CAP_NS}}}{name}")
    return None if el is None else (el.text or "")


def check_cap12(xml_text):
    """Parse CAP 1.2 XML and check its structure; returns the root element or raises CapError."""
    root = ET.fromstring(xml_text.encode() if isinstance(xml_text, str) else xml_text)
    if root.tag != f"{{{CAP_NS}}}alert":
        raise CapError(f"root is {root.tag}, not the CAP 1.2 alert")
    _sequence(root, ALERT, "alert")
    for name in ("identifier", "sender"):
        if re.search(r"[ ,<&]", _text(root, name)) or not _text(root, name):
            raise CapError(f"{name} must be non-empty with no spaces, commas, < or &")
    for el in root.iter():
        name = _local(el)
        if name in VALUES and (el.text or "") not in VALUES[name]:
            raise CapError(f"{name}={el.text!r} is not a CAP 1.2 value")
        if name in ("sent", "effective", "onset", "expires") and not DATETIME.match(el.text or ""):
            raise CapError(f"{name}={el.text!r} is not a CAP dateTime")
        if name == "polygon":
            points = (el.text or "").split()
            if len(points) < 4 or points[0] != points[-1] or not all(POINT.match(p) for p in points):
                raise CapError(f"polygon must be >= 4 lat,lon pairs, first = last: {el.text!r}")
        if name == "circle" and not CIRCLE.match(el.text or ""):
            raise CapError(f"circle must be 'lat,lon radius_km': {el.text!r}")
    if _text(root, "scope") == "Restricted" and not _text(root, "restriction"):
        raise CapError("scope Restricted needs a restriction")
    if _text(root, "msgType") in ("Update", "Cancel", "Ack", "Error") and \
            not _text(root, "references"):
        raise CapError("Update/Cancel/Ack/Error need references")
    for info in root.findall(f"{{{CAP_NS}}}info"):
        _sequence(info, INFO, "info")
        for pair in ("parameter", "eventCode"):
            for p in info.findall(f"{{{CAP_NS}}}{pair}"):
                _sequence(p, PAIR, pair)
        for area in info.findall(f"{{{CAP_NS}}}area"):
            _sequence(area, AREA, "area")
    return root


class Receiver:
    """A webhook receiver on 127.0.0.1 (ephemeral port) that records each key once.

    ``fail_next`` responses are 503 after recording (a lost acknowledgement);
    ``records`` maps Idempotency-Key -> body; ``requests`` counts every POST.
    """

    def __init__(self, port=0):
        self.records, self.requests, self.fail_next = {}, 0, 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Idempotency-Key")
                with receiver.lock:
                    receiver.requests += 1
                    if not key:
                        status = 400
                    else:
                        receiver.records.setdefault(key, body)
                        status = 200
                        if receiver.fail_next:
                            receiver.fail_next -= 1
                            status = 503
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
