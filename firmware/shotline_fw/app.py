"""The sensor application: capture -> detect -> time -> outbox -> serial.

Valid MicroPython and CPython.  All hardware arrives in ``hw`` (built by
``main.py`` on the board, by ``shotline.fakehw`` on the host), with:

- ``open_i2s(sample_rate_hz, block_samples)`` -> I2S in non-blocking mode
  (``irq(handler)``, ``readinto(buf)``), ``open_uart(baud)`` -> GPS UART
  (``read()`` -> bytes or None), ``attach_pps(handler)`` (a hard IRQ on the
  PPS rising edge), ``usb`` (``read() -> bytes or None`` non-blocking, ``write(bytes)``),
  ``led`` (``value(v)``), ``wdt`` (``feed()``) or None,
- ``unique_id`` (bytes), ``root`` (storage folder, "" for the flash root),
  ``clock`` (``ticks_us``, ``ticks_ms``, ``ticks_diff``, ``ticks_add``),
- ``mem_free()``, ``temp_c()``, ``reset()``, ``reset_cause`` (str),
- ``make_detector(config_tuple)`` -> detector engine (see ``detector.py``),
- optionally ``convert_i2s(raw, dst, shift)``: a fast I2S word -> int16 converter.

``App(hw)`` loads and validates ``config.json``; an invalid one puts the app
in safe mode (no capture; HELLO, HEARTBEAT and LOG carry the exact error; the
configuration can still be read and replaced).  ``poll()`` is one pass of
the main loop; ``main.py`` calls it forever, the fake board after each event.

Plug-in points (the privacy engineer's modules):

- ``app.audio_sink``: if set, ``write(block, first_sample_index)`` gets every
  captured int16 block (the ring array: copy what you keep),
  ``note_trigger(seq, onset_sample)`` every trigger recorded, ``health()``
  returns a dict sent as ``audio`` in heartbeats and STATUS, and ``close()``
  runs first when the app closes (reset, Ctrl-C).
- ``app.authorizer``: ``check(command, counter, key_id, signature, uid) -> (ok, reason)``;
  without one, signed commands are refused and counted (``signed_refused``).
- ``app.handlers[msg_type] = fn``: ``fn(app, seq, body) -> dict or None``;
  a dict is sent as the RESPONSE to command frame ``seq`` (``ok``/``status``
  default to true/"ok"); None means the handler answered itself with
  ``app.send(...)``/``app.respond(...)``.  ``app.signed_only`` (set of types)
  lists commands accepted only inside a SIGNED envelope.
"""
import json

from shotline_fw import config as config_mod
from shotline_fw import wire
from shotline_fw.capture import Capture
from shotline_fw.detector import Detection
from shotline_fw.outbox import Outbox
from shotline_fw.timefit import BlockClock, ClockFit
from shotline_fw import detconfig

FW_VERSION = "0.1.0"
STATE_FILE = "state.json"
_RESEND_BATCH = 16            # un-acked triggers re-sent per resend tick
_HOST_TIMEOUT_MS = 60000      # re-send only while a host spoke within this
_NOISE_EVERY = 32             # blocks between noise-floor samples


def _round(v):
    return round(v, 4) if isinstance(v, float) else v


class App:
    def __init__(self, hw):
        self.hw = hw
        self.clock = hw.clock
        self.audio_sink = None
        self.authorizer = None
        self.signed_only = set(t for t in wire.COMMANDS if wire.COMMANDS[t][1])
        self.handlers = {
            wire.HELLO: App._cmd_hello,
            wire.ACK: App._cmd_ack,
            wire.STATUS_GET: App._cmd_status,
            wire.CONFIG_GET: App._cmd_config_get,
            wire.CONFIG_SET: App._cmd_config_set,
            wire.TIME_GET: App._cmd_time,
            wire.SELF_TEST: App._cmd_self_test,
            wire.REBOOT: App._cmd_reboot,
        }
        self.decoder = wire.StreamDecoder()
        self._tx_seq = 0
        self.error = None
        self.signed_refused = 0
        self.triggers = 0
        self.storage_error = None
        self._noise_min = None
        self._blocks_seen = 0
        t0_ms = self.clock.ticks_ms()
        self._uptime_ms = 0           # accumulated: ticks_ms wraps after 12 days
        self._uptime_at = t0_ms
        self._last_hb_ms = t0_ms
        self._last_resend_ms = t0_ms
        self._host_ms = None          # when the host last sent a valid frame
        self._last_led_ms = t0_ms
        self._led = 0
        self._reboot_at_ms = None
        self._last_samples = 0
        self.uid_hex = "".join("%02x" % b for b in hw.unique_id)
        self.cfg = None
        self.raw_cfg = {}
        self.capture = None
        self.outbox = None
        self._load_state()
        try:
            self.cfg = config_mod.load(self._path(config_mod.CONFIG_FILE))
        except config_mod.ConfigError as exc:
            self.error = str(exc)
            self.raw_cfg = self._read_raw_config()
        if self.error is None:
            self._start()
        self.send_hello()
        if self.error:
            self.log("error", "safe mode: " + self.error)

    # -- start-up ------------------------------------------------------------
    def _path(self, name):
        root = self.hw.root
        return root + "/" + name if root else name

    def _read_raw_config(self):
        try:
            with open(self._path(config_mod.CONFIG_FILE)) as f:
                raw = json.loads(f.read())
            return raw if isinstance(raw, dict) else {}
        except (OSError, ValueError):
            return {}

    def _load_state(self):
        """Counters kept across boots in state.json (missing at first boot)."""
        boot = wdt = dropped = 0
        seq = 1
        try:
            with open(self._path(STATE_FILE)) as f:
                st = json.loads(f.read())
            boot, wdt = int(st["boot"]), int(st["wdt_resets"])
            seq, dropped = int(st["next_seq"]), int(st["outbox_dropped"])
        except OSError:
            pass
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self.storage_error = "state.json unreadable (counters restart): %r" % (exc,)
        self.boot = boot + 1
        self.wdt_resets = wdt + (1 if self.hw.reset_cause == "wdt" else 0)
        self._seq_floor = seq
        self._dropped_before = dropped
        self._save_state()

    def _save_state(self):
        st = {"boot": self.boot, "wdt_resets": self.wdt_resets,
              "next_seq": self.outbox.next_seq if self.outbox else self._seq_floor,
              "outbox_dropped": self.outbox_dropped}
        try:
            tmp = self._path(STATE_FILE + ".tmp")
            with open(tmp, "w") as f:
                f.write(json.dumps(st))
            import os
            os.rename(tmp, self._path(STATE_FILE))
        except OSError as exc:
            self.storage_error = "state: %s" % exc

    def _start(self):
        cfg = self.cfg
        self.sensor_id = cfg["sensor_id"] or ("pico-" + self.uid_hex)
        self.rate_hz = cfg["sample_rate_hz"]
        try:
            engine = self.hw.make_detector(detconfig.config(self.rate_hz, **cfg["detector"]))
        except Exception as exc:  # noqa: BLE001 -- any failure here means no detector
            self.error = "detector: %s" % exc
            return
        storage = self.hw.root if cfg["storage"] == "flash" else getattr(self.hw, "sd_root", None)
        if storage is None:
            self.error = "storage: no SD card mounted"
            return
        try:
            self.outbox = Outbox((storage + "/" if storage else "") + "outbox.bin",
                                 cfg["outbox_slots"], self._seq_floor)
        except OSError as exc:
            self.error = "storage: cannot open the outbox: %s" % exc
            return
        self._save_state()
        self.detection = Detection(engine, self.rate_hz)
        self.block_clock = BlockClock(self.rate_hz, self.clock)
        self.time = ClockFit(self.rate_hz, cfg["time_fit_points"], cfg["pps_timeout_s"],
                             cfg["holdover_ppm"])
        from shotline_fw.nmea import NMEA
        self.nmea = NMEA()
        self.uart = self.hw.open_uart(cfg["gps_baud"])
        i2s = self.hw.open_i2s(self.rate_hz, cfg["block_samples"])
        self.capture = Capture(i2s, cfg["block_samples"], cfg["ring_blocks"],
                               cfg["i2s_shift"], self.clock.ticks_us,
                               getattr(self.hw, "convert_i2s", None))
        self.hw.attach_pps(self.capture.pps_irq)
        self.capture.start()

    @property
    def mode(self):
        return "safe" if self.error else "run"

    @property
    def outbox_dropped(self):
        return self._dropped_before + (self.outbox.dropped if self.outbox else 0)

    # -- sending -------------------------------------------------------------
    def send(self, msg_type, body, ref=0):
        """Send one frame (``body``: dict -> JSON, or bytes)."""
        self._tx_seq = (self._tx_seq + 1) & 0xFFFFFFFF
        if isinstance(body, dict):
            line = wire.encode_json(msg_type, self._tx_seq, body, ref)
        else:
            line = wire.encode_frame(msg_type, self._tx_seq, body, ref)
        self.hw.usb.write(line)

    def respond(self, ref, body):
        if "ok" not in body:
            body["ok"] = True
        if "status" not in body:
            body["status"] = "ok" if body["ok"] else "error"
        self.send(wire.RESPONSE, body, ref)

    def log(self, level, msg):
        self.send(wire.LOG, {"level": level, "msg": msg})

    def hello(self):
        cfg = self.cfg or {}
        return {
            "sensor_id": self.sensor_id if self.cfg else (self.raw_cfg.get("sensor_id") or "pico-" + self.uid_hex),
            "uid": self.uid_hex, "fw": FW_VERSION, "proto": wire.PROTOCOL_VERSION,
            "config_digest": config_mod.digest(self.cfg) if self.cfg else None,
            "boot": self.boot, "reset_cause": self.hw.reset_cause, "mode": self.mode,
            "error": self.error, "sample_rate_hz": cfg.get("sample_rate_hz"),
            "lat_e7": cfg.get("lat_e7"), "lon_e7": cfg.get("lon_e7"), "alt_m": cfg.get("alt_m"),
        }

    def send_hello(self):
        self.send(wire.HELLO, self.hello())

    # -- main loop -----------------------------------------------------------
    def poll(self):
        """One pass of the main loop."""
        if self.capture is not None:
            self._time_inputs()
            self._blocks()
        data = self.hw.usb.read()
        if data:
            for frame in self.decoder.feed(data):
                self._host_ms = self.clock.ticks_ms()
                self._dispatch(frame)
        self._periodic()
        if self.hw.wdt is not None:
            self.hw.wdt.feed()

    def now_q8(self):
        """Q8 sample index of this moment."""
        return self.block_clock.sample_q8(self.clock.ticks_us())

    def _time_inputs(self):
        # A receiver that reports no fix may still pulse PPS from its own
        # free-running clock: such edges are not UTC and are ignored (holdover).
        stamps = self.capture.pps_stamps()
        if stamps and self.block_clock.ready and self.nmea.fix:
            for t in stamps:
                self.time.pps(self.block_clock.sample_q8(t))
        data = self.uart.read()
        if data:
            for utc_s in self.nmea.feed(data):
                if self.block_clock.ready:
                    self.time.nmea(utc_s, self.now_q8())

    def _blocks(self):
        cap = self.capture
        while True:
            item = cap.take()
            if item is None:
                return
            block, first, stamp = item
            self.block_clock.observe(first + len(block), stamp)
            if self.audio_sink is not None:
                self.audio_sink.write(block, first)
            self._blocks_seen += 1
            if self._blocks_seen % _NOISE_EVERY == 0:
                self._noise_sample(block)
            found = self.detection.process(block, first)
            cap.release()
            for feats in found:
                self._record(feats)

    def _noise_sample(self, block):
        ss = 0
        for v in block:
            ss += v * v
        if ss:
            import math
            db = 10 * math.log10(ss / len(block)) - 90.309  # re 32768^2
            if self._noise_min is None or db < self._noise_min:
                self._noise_min = db

    def _record(self, feats):
        s_q8 = feats["onset_sample"] * 256 + int(feats["onset_frac"] * 256)
        utc_s, utc_us, quality, holdover_s, unc_us = self.time.utc(s_q8, self.now_q8())
        if quality == wire.TIME_PPS or quality == wire.TIME_HOLDOVER:
            unc_us += self.block_clock.uncertainty_us()
        cfg = self.cfg
        rec = {
            "sensor_id": self.sensor_id, "seq": self.outbox.next_seq, "boot": self.boot,
            "utc_s": utc_s, "utc_us": utc_us, "time_quality": quality,
            "holdover": quality == wire.TIME_HOLDOVER, "holdover_s": holdover_s,
            "time_unc_us": unc_us, "sample_index": feats["onset_sample"],
            "rate_hz": _round(self.time.rate_hz),
            "lat_e7": cfg["lat_e7"], "lon_e7": cfg["lon_e7"], "alt_m": cfg["alt_m"],
        }
        for k in feats:
            if k not in rec:
                rec[k] = _round(feats[k])
        try:
            self.outbox.put(wire.dumps(rec))
            self.storage_error = None
        except (OSError, ValueError) as exc:     # outbox.OutboxError is a ValueError
            self.storage_error = "outbox: %s" % exc
            self.log("error", "trigger %d not stored: %s" % (rec["seq"], exc))
        self.triggers += 1
        self.send(wire.TRIGGER, rec)
        if self.audio_sink is not None:
            self.audio_sink.note_trigger(rec["seq"], feats["onset_sample"])

    def _periodic(self):
        now = self.clock.ticks_ms()
        self._uptime_ms += self.clock.ticks_diff(now, self._uptime_at)
        self._uptime_at = now
        cfg = self.cfg or config_mod.DEFAULTS
        if self.clock.ticks_diff(now, self._last_led_ms) >= (100 if self.error else 500):
            self._last_led_ms = now
            self._led ^= 1
            self.hw.led.value(self._led)
        if self.clock.ticks_diff(now, self._last_hb_ms) >= int(cfg["heartbeat_s"] * 1000):
            self._last_hb_ms = now
            self.send(wire.HEARTBEAT, self.health())
            if self.error:
                self.log("error", "safe mode: " + self.error)
            self._noise_min = None
            self._save_state()
        # Re-send only to a host that is there: nobody reading a USB port can
        # stall the board's writes.  A host's HELLO re-sends the backlog at once.
        if self.outbox is not None and len(self.outbox) and self._host_ms is not None and \
                self.clock.ticks_diff(now, self._host_ms) < _HOST_TIMEOUT_MS and \
                self.clock.ticks_diff(now, self._last_resend_ms) >= int(cfg["resend_s"] * 1000):
            self.resend()
        if self._reboot_at_ms is not None and self.clock.ticks_diff(now, self._reboot_at_ms) >= 0:
            self.close()
            self.hw.reset()

    def resend(self, limit=_RESEND_BATCH):
        """Re-send the oldest un-acked triggers (at most ``limit``)."""
        self._last_resend_ms = self.clock.ticks_ms()
        for seq in self.outbox.pending()[:limit]:
            payload = self.outbox.get(seq)
            if payload is not None:
                self.send(wire.TRIGGER, payload)

    def close(self):
        """Flush and close storage (before a reset or on Ctrl-C)."""
        try:
            if self.audio_sink is not None:
                self.audio_sink.close()
        finally:
            self._save_state()
            if self.outbox is not None:
                self.outbox.close()

    # -- health --------------------------------------------------------------
    def time_status(self):
        if self.capture is None or not self.block_clock.ready:
            return {"time_quality": wire.TIME_NONE, "utc_s": 0, "utc_us": 0, "time_unc_us": 0,
                    "holdover_s": 0, "rate_hz": None, "pps_count": 0}
        now = self.now_q8()
        utc_s, utc_us, quality, holdover_s, unc = self.time.utc(now, now)
        if quality == wire.TIME_PPS or quality == wire.TIME_HOLDOVER:
            unc += self.block_clock.uncertainty_us()
        return {"time_quality": quality, "utc_s": utc_s, "utc_us": utc_us, "time_unc_us": unc,
                "holdover_s": holdover_s, "rate_hz": _round(self.time.rate_hz),
                "pps_count": self.time.pps_count}

    def health(self):
        t = self.time_status()
        running = self.capture is not None
        mem = self.hw.mem_free() if self.hw.mem_free else None
        temp = self.hw.temp_c() if self.hw.temp_c else None
        noise = self._noise_min
        d = {
            "sensor_id": self.hello()["sensor_id"], "fw": FW_VERSION, "mode": self.mode,
            "error": self.error, "boot": self.boot,
            "uptime_s": self._uptime_ms // 1000,
            "time_quality": t["time_quality"], "time_unc_us": t["time_unc_us"],
            "holdover_s": t["holdover_s"], "pps_count": t["pps_count"],
            "pps_rejected": self.time.pps_rejected if running else 0,
            "gps_fix": self.nmea.fix if running else False,
            "gps_sats": self.nmea.sats if running else 0,
            "rate_hz": t["rate_hz"],
            "noise_dbfs": None if noise is None else _round(noise),
            "samples": self.capture.samples if running else 0,
            "i2s_overruns": self.capture.overruns if running else 0,
            "triggers": self.triggers,
            "detector_drops": self.detection.dropped() if running else 0,
            "outbox_pending": len(self.outbox) if self.outbox else 0,
            "outbox_dropped": self.outbox_dropped,
            "storage_ok": self.outbox is not None and self.storage_error is None,
            "storage_error": self.storage_error,
            "signed_refused": self.signed_refused,
            "mem_free": mem, "temp_c": None if temp is None else _round(temp),
            "wdt_resets": self.wdt_resets,
        }
        if self.audio_sink is not None:
            d["audio"] = self.audio_sink.health()
        return d

    # -- commands --------------------------------------------------------------
    def _dispatch(self, frame):
        signed = False
        msg_type, body = frame.type, frame.body
        if msg_type == wire.SIGNED:
            try:
                command, counter, key_id, signature = wire.decode_signed(body)
            except wire.WireError as exc:
                self.respond(frame.seq, {"ok": False, "status": "bad_request", "error": str(exc)})
                return
            if self.authorizer is None:
                self.signed_refused += 1
                self.respond(frame.seq, {"ok": False, "status": "unauthorized",
                                         "error": "no authorizer installed: signed commands refused"})
                return
            ok, reason = self.authorizer.check(command, counter, key_id, signature,
                                               self.hw.unique_id)
            if not ok:
                self.signed_refused += 1
                self.respond(frame.seq, {"ok": False, "status": "unauthorized", "error": reason})
                return
            msg_type, body = wire.split_command(command)
            signed = True
        handler = self.handlers.get(msg_type)
        if handler is None:
            self.respond(frame.seq, {"ok": False, "status": "unknown_command",
                                     "error": "unknown command type 0x%02x" % msg_type})
            return
        if msg_type in self.signed_only and not signed:
            self.signed_refused += 1
            self.respond(frame.seq, {"ok": False, "status": "unauthorized",
                                     "error": "%s must be signed" % wire.NAMES.get(msg_type, msg_type)})
            return
        try:
            result = handler(self, frame.seq, body)
        except wire.WireError as exc:
            result = {"ok": False, "status": "bad_request", "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 -- a command must never stop the sensor
            result = {"ok": False, "status": "error", "error": "%s: %s" % (type(exc).__name__, exc)}
        if result is not None:
            self.respond(frame.seq, result)

    def _cmd_hello(self, seq, body):
        self.send(wire.HELLO, self.hello(), seq)
        if self.outbox is not None:
            self.resend()
        return None

    def _cmd_ack(self, seq, body):
        seqs = wire.Frame(1, wire.ACK, seq, 0, body).json().get("seqs", [])
        for s in seqs:
            if isinstance(s, int) and self.outbox is not None:
                self.outbox.ack(s)
        return None

    def _cmd_status(self, seq, body):
        return self.health()

    def _cmd_config_get(self, seq, body):
        if self.cfg is None:
            return {"config": self.raw_cfg, "digest": None, "error": self.error}
        return {"config": self.cfg, "digest": config_mod.digest(self.cfg)}

    def _cmd_config_set(self, seq, body):
        changes = wire.Frame(1, wire.CONFIG_SET, seq, 0, body).json().get("config")
        try:
            new = config_mod.merge(self.cfg or self.raw_cfg, changes, bytes(body).decode())
        except config_mod.ConfigError as exc:
            return {"ok": False, "status": "bad_request", "error": str(exc)}
        tmp = self._path(config_mod.CONFIG_FILE + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(new))
        import os
        os.rename(tmp, self._path(config_mod.CONFIG_FILE))
        return {"digest": config_mod.digest(new), "applied": "at next boot"}

    def _cmd_time(self, seq, body):
        return self.time_status()

    def _cmd_self_test(self, seq, body):
        checks = {"config": self.error or "ok"}
        running = self.capture is not None
        checks["i2s"] = ("ok" if running and self.capture.samples > self._last_samples
                         else "no samples captured")
        if running:
            self._last_samples = self.capture.samples
            checks["gps"] = "ok" if self.nmea.sentences else "no NMEA received"
            checks["pps"] = "ok" if self.time.pps_count else "no PPS edge seen"
        try:
            probe = self._path("selftest.tmp")
            with open(probe, "wb") as f:
                f.write(b"shotline")
            with open(probe, "rb") as f:
                ok = f.read() == b"shotline"
            import os
            os.remove(probe)
            checks["storage"] = "ok" if ok else "read back differs"
        except OSError as exc:
            checks["storage"] = "error: %s" % exc
        checks["outbox"] = "ok" if self.outbox is not None else "not open"
        all_ok = True
        for v in checks.values():
            if v != "ok":
                all_ok = False
        return {"ok": all_ok, "status": "ok" if all_ok else "error", "checks": checks}

    def _cmd_reboot(self, seq, body):
        self._reboot_at_ms = self.clock.ticks_add(self.clock.ticks_ms(), 200)
        return {"reboot_in_ms": 200}
