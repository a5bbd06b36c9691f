"""A scripted board for collector tests: speaks the wire protocol on a real pty.

It follows docs/protocol.md the way the firmware does: HELLO at start-up and
when asked, every trigger kept in an outbox until ACKed, unacked triggers
re-sent on HELLO and every ``resend_s``.  It lets the collector tests control
timing exactly (garbage, a reboot in the middle of a frame); the end-to-end
tests with the real firmware are in test_virtual*.py.
"""
import threading
import time

from shotline_fw import wire
from shotline.virtual import PtyPort

T0_S = 1545180567


class ScriptedBoard:
    def __init__(self, name, folder, *, resend_s=0.3, heartbeat_s=0.5,
                 position_llh=(40.44, -79.99, 250.0)):
        self.sensor_id = name
        self.lat_e7 = int(round(position_llh[0] * 1e7))
        self.lon_e7 = int(round(position_llh[1] * 1e7))
        self.alt_m = float(position_llh[2])
        self.port = PtyPort(name, folder)
        self.resend_s = resend_s
        self.heartbeat_s = heartbeat_s
        self.outbox = {}          # seq -> frame body (persistent "flash")
        self.acked = set()
        self.ack_frames = 0
        self.next_trigger_seq = 1
        self.frame_seq = 0
        self.boot = 1
        self.decoder = wire.StreamDecoder()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = None

    @property
    def path(self):
        return self.port.path

    def start(self):
        self.port.plug()
        self._send(wire.HELLO, self.hello_body())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.hang()
        self.port.unplug()

    def hang(self):
        """Stop answering (firmware stuck) with the port still there."""
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def resume(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def hello_body(self):
        return {"sensor_id": self.sensor_id, "uid": "E66" + self.sensor_id, "fw": "test",
                "proto": 1, "config_digest": "00000000", "boot": self.boot, "mode": "run",
                "error": None, "sample_rate_hz": 16000, "lat_e7": self.lat_e7,
                "lon_e7": self.lon_e7, "alt_m": self.alt_m}

    def trigger(self, onset_utc_s=None, **features):
        """Record a trigger (outbox first, then send), like the firmware."""
        with self._lock:
            seq = self.next_trigger_seq
            self.next_trigger_seq += 1
            t = T0_S + seq * 0.25 if onset_utc_s is None else onset_utc_s
            body = {"sensor_id": self.sensor_id, "seq": seq, "boot": self.boot,
                    "utc_s": int(t), "utc_us": int(round((t - int(t)) * 1e6)),
                    "time_quality": "pps", "holdover": False, "time_unc_us": 2,
                    "lat_e7": self.lat_e7, "lon_e7": self.lon_e7, "alt_m": self.alt_m,
                    "snr_db": 20.0, "peak_dbfs": -6.0, **features}
            self.outbox[seq] = body
            self._send(wire.TRIGGER, body)
            return seq

    def unacked(self):
        with self._lock:
            return sorted(set(self.outbox) - self.acked)

    def send_raw(self, data):
        self.port.write(data)

    def reboot_mid_frame(self):
        """Send the first half of a trigger frame, then 'reboot': REPL banner, HELLO, resend."""
        with self._lock:
            seq = self.next_trigger_seq
            self.next_trigger_seq += 1
            body = {"sensor_id": self.sensor_id, "seq": seq, "boot": self.boot, "utc_s": T0_S,
                    "utc_us": 0, "time_quality": "pps", "lat_e7": 0, "lon_e7": 0, "alt_m": 0.0}
            self.outbox[seq] = body
            line = wire.encode_json(wire.TRIGGER, self._next(), body)
            self.port.write(line[: len(line) // 2])
            self.boot += 1
            self.port.write(b"MicroPython v1.24.0 on 2024-10-25; Raspberry Pi Pico with RP2040\r\n")
            self._send(wire.HELLO, self.hello_body())
            self._resend()
            return seq

    def _next(self):
        self.frame_seq += 1
        return self.frame_seq

    def _send(self, msg_type, body, ref=0):
        with self._lock:
            self.port.write(wire.encode_json(msg_type, self._next(), body, ref))

    def _resend(self):
        with self._lock:
            for seq in self.unacked():
                self._send(wire.TRIGGER, self.outbox[seq])

    def _run(self):
        last_resend = last_hb = time.monotonic()
        while not self._stop.is_set():
            if self.port.plugged and self.port.wait_readable(0.02):
                for frame in self.decoder.feed(self.port.read()):
                    self._on_frame(frame)
            elif not self.port.plugged:
                time.sleep(0.02)
            self.port.flush()
            now = time.monotonic()
            if now - last_resend > self.resend_s:
                last_resend = now
                self._resend()
            if now - last_hb > self.heartbeat_s:
                last_hb = now
                self._send(wire.HEARTBEAT, {"sensor_id": self.sensor_id, "uptime_s": 1,
                                            "noise_dbfs": -62.0, "outbox_pending": len(self.unacked())})

    def _on_frame(self, frame):
        with self._lock:
            if frame.type == wire.HELLO:
                self._send(wire.HELLO, self.hello_body())
                self._resend()
            elif frame.type == wire.ACK:
                self.ack_frames += 1
                self.acked.update(frame.json()["seqs"])
            elif frame.type == wire.STATUS_GET:
                self._send(wire.RESPONSE, {"ok": True, "status": "ok", "fw": "test"}, ref=frame.seq)
