"""Firmware pure logic under CPython: config, NMEA, time fit, outbox, capture, detection."""
import array
import json
import struct

import numpy as np
import pytest

from shotline_fw import config, nmea, timefit, wire
from shotline_fw.capture import Capture
from shotline_fw.outbox import SLOT_BYTES, Outbox, OutboxError
from shotline.fakehw import SimClock, nmea_sentences, numpy_convert

GOOD = {"sensor_id": "FP1-S3", "lat_deg": 40.4406248, "lon_deg": -79.995886, "alt_m": 300.0}


# ---- config --------------------------------------------------------------------
def test_config_defaults_and_exact_position():
    cfg = config.load_text(json.dumps(GOOD))
    assert cfg["sample_rate_hz"] == 16000 and cfg["block_samples"] == 256
    assert (cfg["lat_e7"], cfg["lon_e7"]) == (404406248, -799958860)
    assert config.digest(cfg) == config.digest(config.load_text(json.dumps(GOOD)))
    assert config.digest(cfg) != config.digest(config.merge(cfg, {"heartbeat_s": 5}))


@pytest.mark.parametrize("change, message", [
    ({"lat_deg": None}, "lat_deg: missing"),
    ({"lat_deg": 91}, "lat_deg: 91 is outside"),
    ({"sensor_id": "a b"}, "sensor_id: character ' '"),
    ({"sample_rate_hz": 7000}, "sample_rate_hz: 7000 is outside"),
    ({"sample_rate_hz": 16000.5}, "sample_rate_hz: expected an integer"),
    ({"block_samples": 300}, "block_samples: 300 is not a power of two"),
    ({"detector": {"ratio_db": "x"}}, "detector:"),
    ({"detector": {"nonsense": 1}}, "detector: unknown detector parameter"),
    ({"storage": "usb"}, "storage: expected"),
    ({"bogus": 1}, "bogus: unknown setting"),
    ({"heartbeat_s": True}, "heartbeat_s: expected a number"),
])
def test_config_errors_name_the_field(change, message):
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        config.validate({**GOOD, **change})


def test_config_merge_keeps_positions_exact():
    cfg = config.load_text(json.dumps(GOOD))
    kept = config.merge(cfg, {"heartbeat_s": 5})
    assert (kept["lat_e7"], kept["lon_e7"]) == (404406248, -799958860)
    text = '{"config": {"lat_deg": 40.44062489, "lon_deg": -79.9958861}}'
    moved = config.merge(cfg, json.loads(text)["config"], text)
    assert (moved["lat_e7"], moved["lon_e7"]) == (404406249, -799958861)
    # what the board writes back reads back the same
    assert config.load_text(json.dumps(moved))["lat_e7"] == 404406249


def test_config_load_errors(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(str(tmp_path / "config.json"))
    with pytest.raises(config.ConfigError, match="not valid JSON"):
        config.load_text("{")


@pytest.mark.parametrize("text, e7", [("40.4406248", 404406248), ("-79.99588604", -799958860),
                                      ("-79.99588605", -799958861), ("0.5", 5000000), ("-.5", -5000000)])
def test_decimal_e7(text, e7):
    assert config.decimal_e7(text) == e7


# ---- NMEA ------------------------------------------------------------------------
def test_nmea_rmc_zda_gga_and_checksums():
    p = nmea.NMEA()
    t = 1545094167
    data = nmea_sentences(t, lat_deg=40.4406248, lon_deg=-79.995886, alt_m=312.4, sats=11)
    assert p.feed(data[:17]) == []
    assert p.feed(data[17:]) == [t, t]  # RMC and ZDA name the second; GGA has no date
    assert p.fix and p.sats == 11 and p.hdop_x10 == 9 and p.alt_dm == 3124
    assert abs(p.lat_e7 - 404406248) <= 2 and abs(p.lon_e7 + 799958860) <= 2
    bad = bytearray(nmea_sentences(t + 1)[:60])
    bad[20] ^= 1
    assert p.feed(bytes(bad) + b"\r\n") == [] and p.bad == 1
    assert p.feed(nmea_sentences(t + 2, fix=False)) == [] and not p.fix


def test_days_from_civil_matches_python():
    import datetime
    for d in (datetime.date(1970, 1, 1), datetime.date(2000, 2, 29), datetime.date(2018, 12, 19),
              datetime.date(2099, 12, 31)):
        assert nmea.days_from_civil(d.year, d.month, d.day) == (d - datetime.date(1970, 1, 1)).days


# ---- time fit ------------------------------------------------------------------
def _edges(rate_hz, ppm, n, u0=1545094000, s0_q8=12345, jitter_q8=0, seed=0):
    rng = np.random.default_rng(seed)
    true_rate = rate_hz * (1 + ppm * 1e-6)
    return [(u0 + k, s0_q8 + int(round(k * true_rate * 256 + rng.normal(0, jitter_q8 or 1e-9))))
            for k in range(n)]


def test_clockfit_tracks_offset_and_drift():
    fit = timefit.ClockFit(16000, points=16)
    edges = _edges(16000, 37.0, 20, jitter_q8=2)
    for u, s in edges:
        fit.pps(s)
        fit.nmea(u, s + 16000 * 256 // 5)  # sentence ~0.2 s after the edge
    assert fit.rate_hz == pytest.approx(16000 * (1 + 37e-6), abs=0.01)
    u_last, s_last = edges[-1]
    s = s_last + int(0.5 * 16000 * (1 + 37e-6) * 256)
    sec, us, quality, holdover_s, unc = fit.utc(s, s)
    assert (sec, quality, holdover_s) == (u_last, "pps", 0)
    assert abs(us - 500000) <= 2 and 1 <= unc < 10


def test_clockfit_labels_by_counting_and_rejects_glitches():
    fit = timefit.ClockFit(16000)
    edges = _edges(16000, -10.0, 6)
    fit.pps(edges[0][1])
    fit.nmea(edges[0][0], edges[0][1] + 1000)
    fit.pps(edges[0][1] + 5000 * 256)          # a glitch 0.3 s after an edge
    for u, s in edges[1:]:
        fit.pps(s)                             # no NMEA: labelled by counting
    assert fit.pps_rejected == 1 and fit.points == 6
    assert fit.utc(edges[-1][1])[:2] == (edges[-1][0], 0)
    fit.nmea(edges[-1][0] + 7, edges[-1][1] + 1000)   # NMEA contradicts: the fit restarts
    assert fit.jumps == 1 and fit.points == 1


def test_clockfit_holdover_and_recovery():
    fit = timefit.ClockFit(16000, timeout_s=1.5, holdover_ppm=2.0)
    edges = _edges(16000, 20.0, 30)
    for u, s in edges[:10]:
        fit.pps(s)
        fit.nmea(u, s + 1000)
    now = edges[19][1] + 100
    sec, us, quality, holdover_s, unc = fit.utc(now, now)
    assert quality == "holdover" and holdover_s == 10
    assert sec == edges[19][0] and abs(us - 24) <= 2 and unc >= 20   # 2 ppm x 10 s
    assert fit.state(edges[10][1] + 256)[0] == "pps"
    for u, s in edges[20:]:                      # PPS back: labelled by counting across the gap
        fit.pps(s)
    assert fit.state(edges[-1][1])[0] == "pps" and fit.utc(edges[-1][1])[:2] == (edges[-1][0], 0)


def test_clockfit_without_pps_uses_nmea_coarsely():
    fit = timefit.ClockFit(16000)
    assert fit.utc(0)[2] == "none"
    fit.nmea(1545094000, 16000 * 256)
    sec, us, quality, _, unc = fit.utc(16000 * 256 * 3 // 2)
    assert (sec, us, quality, unc) == (1545094000, 500000, "nmea", 500000)


def test_blockclock_finds_the_latency_floor():
    clock = SimClock()
    rng = np.random.default_rng(3)
    rate, block = 16000, 256
    bc = timefit.BlockClock(rate, clock)
    ratio = 1 + 31e-6      # sample clock vs ticks: measured, not assumed
    for k in range(1, 3000):
        t_true = k * block / (rate * ratio)
        t_obs = t_true + rng.uniform(0, 0.003)
        bc.observe(k * block, (int(t_obs * 1e6) + 2**30 - 5_000_000) % 2**30)  # ticks wrap
    t = 2999 * block / (rate * ratio) + 0.0004
    s_q8 = bc.sample_q8((int(t * 1e6) + 2**30 - 5_000_000) % 2**30)
    assert abs(s_q8 / 256 - t * rate * ratio) * 1e6 / rate < 10   # within 10 µs


# ---- outbox -----------------------------------------------------------------------
def test_outbox_persists_until_acked(tmp_path):
    path = str(tmp_path / "outbox.bin")
    ob = Outbox(path, 8)
    seqs = [ob.put(b'{"n":%d}' % i) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert ob.ack(2) and not ob.ack(2) and not ob.ack(99)   # twice, unknown: no change
    ob.close()
    ob = Outbox(path, 8)                                     # reboot
    assert ob.pending() == [1, 3, 4, 5] and ob.get(3) == b'{"n":2}'
    assert ob.put(b"x") == 6                                 # seq never reused
    ob.ack(6)
    ob.close()
    assert Outbox(path, 8).next_seq == 7                     # even when the newest was acked


def test_outbox_full_drops_oldest_and_counts(tmp_path):
    ob = Outbox(str(tmp_path / "o.bin"), 4)
    for i in range(7):
        ob.put(b"r%d" % i)
    assert ob.pending() == [4, 5, 6, 7] and ob.dropped == 3
    assert ob.get(1) is None and ob.get(4) == b"r3"
    with pytest.raises(OutboxError):
        ob.put(b"x" * SLOT_BYTES)


def test_a_failed_put_still_uses_up_its_seq(tmp_path):
    """The app sends (and the snippet service notes) a trigger under ``next_seq`` even
    when storing it fails, so that seq must never be handed out again."""
    ob = Outbox(str(tmp_path / "o.bin"), 8)
    assert ob.put(b"a") == 1
    good = ob._f

    class Failing:
        def __getattr__(self, name):
            return getattr(good, name)

        def write(self, data):
            raise OSError(5)

    ob._f = Failing()
    with pytest.raises(OSError):
        ob.put(b"b")
    ob._f = good
    with pytest.raises(OutboxError):
        ob.put(b"x" * SLOT_BYTES)
    assert ob.put(b"c") == 4 and ob.pending() == [1, 4]
    assert issubclass(OutboxError, ValueError)            # the app's handler catches it


def test_outbox_torn_record_is_ignored_and_capacity_change_keeps_records(tmp_path):
    path = tmp_path / "o.bin"
    ob = Outbox(str(path), 8)
    for i in range(3):
        ob.put(b"record-%d" % i)
    ob.close()
    data = bytearray(path.read_bytes())
    data[2 * SLOT_BYTES + 14] ^= 0xFF      # corrupt record 2 (power lost mid-write)
    path.write_bytes(bytes(data))
    ob = Outbox(str(path), 8)
    assert ob.pending() == [1, 3]
    ob.close()
    ob = Outbox(str(path), 16, seq_floor=2)
    assert ob.pending() == [1, 3] and ob.get(3) == b"record-2" and ob.next_seq == 4
    assert path.stat().st_size == 16 * SLOT_BYTES


# ---- capture -------------------------------------------------------------------
class _I2S:
    def __init__(self):
        self.handler = self.buf = None

    def irq(self, h):
        self.handler = h

    def readinto(self, buf):
        self.buf = buf


def _words(samples, low):
    return ((samples.astype(np.int32) << 16) | (low.astype(np.int32) << 8)).astype("<i4").tobytes()


@pytest.mark.parametrize("shift", [16, 14, 8])
def test_capture_conversion_matches_numpy_twin(shift):
    rng = np.random.default_rng(shift)
    x = rng.integers(-32768, 32768, 64).astype(np.int16)
    x[:2] = (32767, -32768)
    raw = bytearray(_words(x, rng.integers(0, 256, 64)))
    a, b = array.array("h", bytes(128)), array.array("h", bytes(128))
    cap = Capture(_I2S(), 64, 2, shift, lambda: 0)
    cap._convert(raw, a)
    numpy_convert(raw, b, shift)
    assert list(a) == list(b)
    if shift == 16:
        assert list(a) == x.tolist()


def test_capture_counts_overruns_without_losing_sample_indices():
    i2s = _I2S()
    t = [0]
    cap = Capture(i2s, 64, 4, 16, lambda: t[0])
    cap.start()
    for k in range(10):                      # main loop stalled: 10 blocks, ring of 4
        i2s.buf[:] = _words(np.full(64, k, np.int16), np.zeros(64))
        t[0] += 4000
        i2s.handler(i2s)
    assert cap.overruns == 6 and cap.available() == 4 and cap.samples == 640
    firsts = []
    while (item := cap.take()) is not None:
        firsts.append((item[1], item[0][0]))
        cap.release()
    assert firsts == [(0, 0), (64, 1), (128, 2), (192, 3)]
    i2s.buf[:] = _words(np.full(64, 10, np.int16), np.zeros(64))
    i2s.handler(i2s)
    block, first, _ = cap.take()
    assert first == 640 and block[0] == 10   # indices keep counting through the overrun
    for _ in range(3):
        cap.pps_irq()
    assert len(cap.pps_stamps()) == 3 and cap.pps_stamps() == []


def test_detection_unpacks_raw_triggers_and_shifts_by_gaps():
    from shotline_fw.detector import RAW_N, Detection

    class Engine:
        def process(self, block, out):
            if len(block) and block[0] == 1:
                out[0:RAW_N] = array.array("q", [74, 72, 76, 1 << 40, 1 << 30, 5, 32768, 1000, 65536 * 20,
                                                 65536 * 400, 65536 * 100, 30, 60, 640, 0])
                return 1
            return 0

        def dropped(self):
            return 0

    d = Detection(Engine(), 16000)
    assert d.process(array.array("h", [0] * 64), 0) == []
    (f,) = d.process(array.array("h", [1] * 64), 128)          # 64 samples lost before
    assert d.gap_samples == 64 and f["onset_sample"] == 138 and f["onset_frac"] == 0.5
    assert set(wire.FEATURES) <= set(f)


def test_detection_maps_indices_from_before_a_gap_with_the_old_offset():
    from shotline_fw.detector import MAX_GAPS, RAW_N, Detection

    class Engine:
        """Emits, in the block after the gap, a trigger with onset 100 and peak 120 (before
        the gap at engine index 128) and trigger sample 130 (after it)."""
        n = 0

        def process(self, block, out):
            self.n += len(block)
            if self.n == 192:
                out[0:RAW_N] = array.array("q", [100, 130, 120, 1 << 40, 1 << 30, 5, 0, 1000,
                                                 65536 * 20, 65536 * 400, 65536 * 100, 30, 60,
                                                 640, 0])
                return 1
            return 0

        def dropped(self):
            return 0

    d = Detection(Engine(), 16000)
    d.process(array.array("h", [0] * 64), 0)
    d.process(array.array("h", [0] * 64), 64)
    (f,) = d.process(array.array("h", [1] * 64), 128 + 1000)      # 1000 samples lost
    assert f["onset_sample"] == 100 and f["trigger_s"] == 1130 / 16000
    assert abs(f["rise_time_s"] - 20 / 16000) < 1e-9
    assert d.board_index(127) == 127 and d.board_index(128) == 1128
    for k in range(MAX_GAPS + 3):                  # more gaps: the ring keeps the newest
        d.process(array.array("h", [0] * 64), d._fed + d._offset + 10)
    assert d.board_index(d._fed - 1) == d._fed - 1 + d._offset
    assert d.board_index(d._fed - 64 - 1) == d._fed - 64 - 1 + d._offset - 10


class F32(float):
    """A float whose arithmetic rounds to single precision, as on the RP2040 port."""

    def __new__(cls, x):
        return float.__new__(cls, struct.unpack("<f", struct.pack("<f", float(x)))[0])


for _name in ("add", "sub", "mul", "truediv"):
    for _op in ("__%s__" % _name, "__r%s__" % _name):
        setattr(F32, _op, (lambda op: lambda a, b: F32(getattr(float, op)(float(a), float(b))))(_op))


class Q16(int):
    """An int whose division yields an F32 (``onset_frac_q16 / 65536`` on the board)."""

    def __truediv__(self, other):
        return F32(int(self) / other)


def test_features_keep_their_precision_at_large_sample_indices_in_single_precision():
    from shotline_fw import detconfig

    def raw_at(onset):
        return {"onset_sample": onset, "trigger_sample": onset + 9, "peak_sample": onset + 23,
                "band_energy": (1 << 40, 1 << 30, 5), "onset_frac_q16": Q16(40000),
                "peak_abs": 9000, "noise_q16": 65536 * 20, "sta_peak_q16": 65536 * 400,
                "sta_trigger_q16": 65536 * 100, "width_n": 30, "decay_n": 60, "measure_n": 640,
                "clipped": 0}

    small = detconfig.features(raw_at(1000), 16000)
    for onset in (2**24 + 3, 2**31 - 101, 2**31 + 7):
        big = detconfig.features(raw_at(onset), 16000)
        assert big["onset_sample"] == onset and big["onset_frac"] == small["onset_frac"]
        for key in ("rise_time_s", "width_s", "decay_s", "snr_db", "sta_lta", "band_mid_db"):
            assert abs(big[key] - small[key]) <= 1e-6 * abs(small[key]) + 1e-9, (onset, key)
    assert abs(small["rise_time_s"] - (23 - 40000 / 65536) / 16000) < 1e-8


def test_docstring_examples_run():
    import doctest

    from shotline import fakehw

    for module in (wire, fakehw):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
