"""The 72-hour audio ring buffer on the raw SD card (firmware/shotline_fw/audiobuf.py)."""
import random
import struct
from pathlib import Path

import pytest

from audiobuf_helpers import MissingCard, RamBlockDev, mic_samples
from shotline_fw import audiobuf
from shotline_fw.audiobuf import AudioGone, AudioRing

HERE = Path(__file__).resolve().parent
RATE_HZ = 1000
SEG_BLOCKS = 8                      # 2048 samples per segment
SEG_SAMPLES = SEG_BLOCKS * 256
SLOT_BLOCKS = SEG_BLOCKS + 1
T0_US = 1_545_180_567 * 1_000_000   # 2018-12-19T00:49:27Z
H_US = 3600 * 1_000_000


def utc_clock(t0_us=T0_US, rate_hz=RATE_HZ):
    return lambda s: t0_us + s * 1_000_000 // rate_hz


def make_ring(dev, clock=None, **kw):
    kw.setdefault("seg_data_blocks", SEG_BLOCKS)
    kw.setdefault("stage_blocks", 2)
    return AudioRing(dev, RATE_HZ, clock if clock is not None else utc_clock(), **kw)


def feed(ring, first, n, rng, max_block=700):
    """Write mic samples [first, first+n) in random-sized blocks (odd sizes included)."""
    s = first
    while s < first + n:
        k = min(rng.randint(1, max_block), first + n - s)
        ring.write(mic_samples(s, k), s)
        s += k
    return s


def slot_ranges(ring):
    size = SLOT_BLOCKS * 512
    return [(ring.first_block * 512 + i * size, ring.first_block * 512 + (i + 1) * size)
            for i in range(ring.n_slots)]


def assert_only_zero_or_fill(image, start=0, end=None, fill=0xA5):
    """Every 512-byte block is all zeros or the untouched fill: no audio byte left."""
    end = len(image) if end is None else end
    for off in range(start, end, 512):
        blk = bytes(image[off:off + 512])
        assert blk in (bytes(512), bytes([fill]) * 512), f"audio left in block {off // 512}"


def test_gap_free_writing_across_segment_boundaries_and_wrap_around():
    dev = RamBlockDev(5 * SLOT_BLOCKS + 3)
    ring = make_ring(dev)
    assert ring.mount()["slots"] == 5
    rng = random.Random(7)
    end = feed(ring, 0, int(3.5 * 5 * SEG_SAMPLES), rng)
    ring.flush()
    # Headers: consecutive segments, each starting where the previous ended.
    heads = [ring.header(q) for q in range(ring._next_seq - 5, ring._next_seq)]
    assert all(h is not None for h in heads)
    for a, b in zip(heads, heads[1:]):
        assert b.first_sample == a.first_sample + a.n_samples
        assert a.n_samples == SEG_SAMPLES and a.utc_us == T0_US + a.first_sample * 1000
    assert heads[-1].first_sample + heads[-1].n_samples == end
    # Everything still held reads back exactly, across every segment boundary.
    oldest = heads[0].first_sample
    out = bytearray(2 * (end - oldest))
    ring.read(oldest, out)
    assert out == mic_samples(oldest, end - oldest)
    # Overwritten audio is refused, not returned.
    with pytest.raises(AudioGone):
        ring.read(oldest - 10, bytearray(40))
    assert ring.health()["gaps"] == 0 and ring.health()["dropped_samples"] == 0


def test_gap_in_capture_closes_the_segment_and_is_counted():
    dev = RamBlockDev(6 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    rng = random.Random(1)
    feed(ring, 0, 3000, rng)
    feed(ring, 3500, 1000, rng)            # 500 samples never arrived
    ring.flush()
    h = ring.health()
    assert h["gaps"] == 1 and h["dropped_samples"] == 500
    out = bytearray(2 * 1000)
    ring.read(3500, out)
    assert out == mic_samples(3500, 1000)
    with pytest.raises(AudioGone):
        ring.read(3200, bytearray(20))      # inside the gap
    # The closed segment's unused blocks hold zeros, not older card content.
    first_slot = ring._slot_block(ring._session_seq + 1) * 512
    used = (3000 - SEG_SAMPLES) * 2
    tail = dev.image[first_slot + 512 + used:first_slot + SLOT_BLOCKS * 512]
    assert bytes(tail) == bytes(len(tail))


def test_power_cut_mid_segment_keeps_committed_audio_and_zeroes_the_rest():
    dev = RamBlockDev(4 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    rng = random.Random(3)
    feed(ring, 0, SEG_SAMPLES + 1200, rng)
    ring.flush()                            # 1200 samples committed in segment 2
    committed = ring.header(ring._cur.seq)
    assert committed.n_samples == 1200
    dev.cut_after_writes = 1                # the power fails during the next commit
    feed(ring, SEG_SAMPLES + 1200, 300, rng)
    ring.flush()
    dev.cut_after_writes = None
    # Reboot: a new ring object on the same card.
    ring2 = make_ring(dev)
    summary = ring2.mount(now_utc_us=T0_US + 10 * 1_000_000)
    assert summary["kept"] == 2 and ring2.session == ring.session + 1
    h = ring2.header(committed.seq)
    assert h.n_samples >= 1200 and h.flags & audiobuf.FLAG_TAIL_CLEAN
    base = ring2._slot_block(h.seq) * 512 + 512
    data = dev.image[base:base + 2 * h.n_samples]
    assert data == mic_samples(SEG_SAMPLES, h.n_samples)
    from shotline_fw.wire import crc32
    assert crc32(data) == h.data_crc
    # no byte of the slot after the committed audio survives (it held 0xA5 "old" data)
    rest = dev.image[base + 2 * h.n_samples:base + SEG_BLOCKS * 512]
    assert bytes(rest) == bytes(len(rest))
    # the new session writes after it, and the earlier session's audio is intact
    ring2.write(mic_samples(0, 100), 0)
    ring2.flush()
    assert ring2.header(committed.seq).n_samples == h.n_samples


def test_long_power_off_wipes_every_byte_of_expired_audio():
    dev = RamBlockDev(6 * SLOT_BLOCKS + 2)
    ring = make_ring(dev)
    ring.mount()
    feed(ring, 0, 4 * SEG_SAMPLES + 77, random.Random(5))
    ring.close()
    written = bytes(dev.image)
    assert written.count(bytes(mic_samples(0, 256))) == 1       # audio is on the card
    ring2 = make_ring(dev)
    summary = ring2.mount(now_utc_us=T0_US + 7 * 24 * H_US)     # off for a week
    assert summary["kept"] == 0
    assert ring2.health()["wiped_segments"] == 5
    assert_only_zero_or_fill(dev.image)


def test_a_week_off_then_the_first_utc_wipes_every_expired_byte_at_once():
    """Full card, off for a week, boot without UTC; the fix arrives mid-segment.  The
    privacy sink sweeps every slot on that very block (not 32 headers per new segment)."""
    from shotline_fw import auth
    from shotline_fw.priv_install import Privacy
    from shotline_fw.snippets import SnippetService

    n_slots = 40
    dev = RamBlockDev(n_slots * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    feed(ring, 0, (n_slots + 3) * SEG_SAMPLES, random.Random(21))     # full, wrapped
    ring.close()
    week_later = utc_clock(T0_US + 7 * 24 * H_US)
    fix = [False]
    ring2 = make_ring(dev, clock=lambda s: week_later(s) if fix[0] else None)
    assert ring2.mount(now_utc_us=None)["kept"] == n_slots          # age not provable yet

    class App:
        hw = None

    sink = Privacy(App(), ring2, SnippetService(ring2, RATE_HZ),
                   auth.Authorizer([], None, allow_empty=True), "keys.json")
    s = 0
    for _ in range(3):                                              # no fix yet
        sink.write(mic_samples(s, 256), s)
        s += 256
    assert not sink.utc_swept
    fix[0] = True
    sink.write(mic_samples(s, 256), s)                              # first block with UTC
    assert sink.utc_swept and ring2.health()["wiped_segments"] == n_slots - 1
    current = ring2._slot_block(ring2._cur.seq) * 512
    for lo, hi in slot_ranges(ring2):
        if lo != current:
            assert_only_zero_or_fill(dev.image, lo, hi)


def test_the_current_session_is_expired_even_when_earlier_ones_use_the_budget():
    """More earlier-session segments than the per-segment budget (32): the current
    session's own pass still runs at each new segment."""
    dev = RamBlockDev(45 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    feed(ring, 0, 35 * SEG_SAMPLES, random.Random(22))
    ring.close()                                                    # boot 1: 35 segments
    ring2 = make_ring(dev, clock=utc_clock(T0_US + 75 * 10**6), retention_s=100)
    assert ring2.mount(now_utc_us=None)["kept"] == 35                # all younger than 100 s
    seq0 = ring2._next_seq
    feed(ring2, 0, 1000, random.Random(23))
    later = 150 * RATE_HZ                                           # capture resumes 150 s on
    ring2.write(mic_samples(later, 300), later)
    feed(ring2, later + 300, SEG_SAMPLES, random.Random(24))        # new segments: expiry runs
    assert ring2._session_seq == seq0 and ring2.header(seq0) is None
    assert ring2.header(seq0 + 1) is not None
    lo, hi = slot_ranges(ring2)[ring2._slot_block(seq0) // SLOT_BLOCKS]
    assert_only_zero_or_fill(dev.image, lo, hi)


def test_expiry_after_clock_jumps():
    dev = RamBlockDev(6 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    feed(ring, 0, 2 * SEG_SAMPLES, random.Random(2))
    ring.close()
    # Reboot 71 h later: young enough, kept.
    ring2 = make_ring(dev, clock=utc_clock(T0_US + 71 * H_US))
    assert ring2.mount(now_utc_us=T0_US + 71 * H_US)["kept"] == 2
    # The clock jumps forward: by the next expiry pass the audio is 73 h old.
    assert ring2.expire(now_utc_us=T0_US + 73 * H_US) == 2
    assert_only_zero_or_fill(dev.image)


def test_audio_stamped_in_the_future_is_wiped_when_the_clock_goes_back():
    dev = RamBlockDev(6 * SLOT_BLOCKS)
    ring = make_ring(dev, clock=utc_clock(T0_US + 24 * H_US))  # clock was a day fast
    ring.mount()
    feed(ring, 0, SEG_SAMPLES + 10, random.Random(4))
    ring.close()
    ring2 = make_ring(dev)
    assert ring2.mount(now_utc_us=T0_US)["kept"] == 0
    assert_only_zero_or_fill(dev.image)


def test_earlier_session_without_utc_is_wiped_at_boot_even_without_time():
    dev = RamBlockDev(6 * SLOT_BLOCKS)
    ring = make_ring(dev, clock=lambda s: None)
    ring.mount()
    feed(ring, 0, SEG_SAMPLES + 10, random.Random(4))
    ring.close()
    ring2 = make_ring(dev, clock=lambda s: None)
    assert ring2.mount(now_utc_us=None)["kept"] == 0
    assert_only_zero_or_fill(dev.image)


def test_earlier_session_with_utc_waits_for_time_then_expires():
    dev = RamBlockDev(6 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    feed(ring, 0, SEG_SAMPLES + 10, random.Random(4))
    ring.close()
    ring2 = make_ring(dev, clock=lambda s: None)
    assert ring2.mount(now_utc_us=None)["kept"] == 2          # age unknown until GPS time
    ring2.write(mic_samples(0, 3000), 0)                      # new session records meanwhile
    assert ring2.expire(now_utc_us=T0_US + 80 * H_US) == 2    # first fix: 80 h later
    for lo, hi in slot_ranges(ring2)[:3]:
        assert_only_zero_or_fill(dev.image, lo, hi)
    out = bytearray(2 * 3000)
    ring2.read(0, out)                                        # the new session's audio is kept
    assert out == mic_samples(0, 3000)


def test_without_time_the_newest_stamp_on_the_card_still_expires_older_boots():
    dev = RamBlockDev(8 * SLOT_BLOCKS)
    ring = make_ring(dev)                                    # boot 1 at T0
    ring.mount()
    feed(ring, 0, 2 * SEG_SAMPLES, random.Random(12))
    ring.close()
    later = utc_clock(T0_US + 100 * H_US)
    fixes = []

    def gps(s):                                              # boot 2, 100 h later: the fix
        fixes.append(s)                                      # arrives after its first segment
        return later(s) if len(fixes) > 1 else None          # opened, before it is committed
    ring2 = make_ring(dev, clock=gps)
    ring2.mount(now_utc_us=None)
    feed(ring2, 0, SEG_SAMPLES - 10, random.Random(13))
    ring2.flush()                                            # then the power fails
    assert ring2.header(ring2._session_seq).utc_us == T0_US + 100 * H_US
    boot1 = slot_ranges(ring2)[1:3]
    assert dev.image[boot1[0][0]:boot1[0][0] + 4] == b"SLA1"     # boot 1 is still on the card
    ring3 = make_ring(dev, clock=lambda s: None)             # boot 3: no GPS at all
    assert ring3.mount(now_utc_us=None)["kept"] == 1         # boot 2's segment only
    for lo, hi in boot1:
        assert_only_zero_or_fill(dev.image, lo, hi)


def test_current_session_ages_by_sample_count_whatever_the_clock_says():
    dev = RamBlockDev(5 * SLOT_BLOCKS)
    ring = make_ring(dev, clock=lambda s: T0_US, retention_s=20)   # a stuck clock
    ring.mount()
    feed(ring, 0, 5000, random.Random(8))
    gap_to = 30 * RATE_HZ                   # capture resumed 30 s later (samples counted on)
    ring.write(mic_samples(gap_to, 100), gap_to)
    wiped = ring.expire(now_utc_us=T0_US)
    assert wiped == 3
    with pytest.raises(AudioGone):
        ring.read(100, bytearray(20))
    for lo, hi in slot_ranges(ring)[1:4]:
        assert_only_zero_or_fill(dev.image, lo, hi)


def test_ring_never_holds_more_than_the_retention():
    assert audiobuf.plan_slots(10**9, RATE_HZ, SEG_BLOCKS, retention_s=20) == 20 * RATE_HZ // SEG_SAMPLES
    assert audiobuf.plan_slots(50, RATE_HZ, SEG_BLOCKS) == 50 // SLOT_BLOCKS


def test_documented_card_size_for_72_hours_at_16_khz():
    n_bytes = audiobuf.card_bytes_for(audiobuf.RETENTION_S, 16000, 512)
    assert 8.29e9 < n_bytes < 8.32e9       # 16 kHz x 16 bit x 72 h = 8.29 GB + headers


def test_missing_card_is_reported_and_writing_never_raises():
    ring = make_ring(MissingCard())
    assert ring.mount()["card"] == "missing"
    ring.write(mic_samples(0, 500), 0)
    h = ring.health()
    assert h["card"] == "missing" and h["dropped_samples"] == 500
    with pytest.raises(AudioGone, match="no_card"):
        ring.read(0, bytearray(10))


def test_card_too_small_or_unsupported():
    ring = make_ring(RamBlockDev(SLOT_BLOCKS + 3))
    assert ring.mount()["card"] == "too_small"
    ring.write(mic_samples(0, 10), 0)
    assert ring.health()["dropped_samples"] == 10
    odd = make_ring(RamBlockDev(64, block_bytes=4096))
    assert odd.mount()["card"] == "unsupported" and "4096" in odd.health()["last_error"]


def test_a_wipe_cut_short_by_a_power_failure_is_finished_at_the_next_boot():
    dev = RamBlockDev(6 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    feed(ring, 0, 3 * SEG_SAMPLES, random.Random(14))
    ring.close()
    week = T0_US + 7 * 24 * H_US
    dev.cut_after_writes = 5                  # power fails while the first wipe runs
    make_ring(dev).mount(now_utc_us=week)
    dev.cut_after_writes = None
    assert b"SLA1" in bytes(dev.image)        # headers (so the job) are still there
    make_ring(dev).mount(now_utc_us=week)
    assert_only_zero_or_fill(dev.image)


def test_write_errors_are_counted_and_recording_resumes():
    dev = RamBlockDev(6 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    rng = random.Random(9)
    feed(ring, 0, 1000, rng)
    dev.fail_writes = True
    feed(ring, 1000, 1500, rng)
    h = ring.health()
    assert h["card"] == "write_error" and h["write_errors"] > 0 and h["dropped_samples"] > 0
    assert "block" in h["last_error"]
    dev.fail_writes = False
    feed(ring, 2500, 1500, rng)
    ring.flush()
    assert ring.health()["card"] == "ok"
    # a transient failure: the interrupted segment's slot holds no older card content
    h = ring.header(ring._session_seq)
    base = ring._slot_block(h.seq) * 512 + 512
    assert h.flags & audiobuf.FLAG_TAIL_CLEAN or \
        bytes(dev.image[base + 2 * h.n_samples:base + SEG_BLOCKS * 512]).count(0xA5) < 512
    out = bytearray(2 * 1000)
    ring.read(3000, out)
    assert out == mic_samples(3000, 1000)


def test_corrupt_data_is_refused_and_corrupt_header_wiped_at_boot():
    dev = RamBlockDev(6 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    feed(ring, 0, 2 * SEG_SAMPLES, random.Random(6))
    ring.flush()
    seq = ring._session_seq
    base = ring._slot_block(seq) * 512
    dev.image[base + 512 + 1000] ^= 0xFF             # a flipped bit in the audio
    with pytest.raises(AudioGone, match="corrupt"):
        ring.read(10, bytearray(20))
    assert ring.health()["corrupt_segments"] == 1
    dev.image[base + 8] ^= 0x01                        # and in its header
    ring2 = make_ring(dev)
    ring2.mount(now_utc_us=T0_US)
    assert ring2.health()["corrupt_segments"] == 1
    assert_only_zero_or_fill(dev.image, base, base + SLOT_BLOCKS * 512)


def test_int16_array_blocks_as_the_capture_ring_delivers_them():
    import array

    dev = RamBlockDev(4 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    block = array.array("h", bytes(2 * 300))
    for k in range(10):
        block[:] = array.array("h", bytes(mic_samples(300 * k, 300)))
        ring.write(block, 300 * k)           # the capture reuses one array
    out = bytearray(2 * 3000)
    ring.read(0, out)
    assert out == mic_samples(0, 3000)


def test_a_header_in_the_wrong_slot_is_wiped_and_mount_reads_each_header_once():
    dev = RamBlockDev(6 * SLOT_BLOCKS)
    ring = make_ring(dev)
    ring.mount()
    feed(ring, 0, 2 * SEG_SAMPLES + 100, random.Random(11))
    ring.close()
    size = SLOT_BLOCKS * 512
    src = ring._slot_block(ring._session_seq) * 512
    stray = 5 * size                                     # a copy where its seq cannot live
    dev.image[stray:stray + size] = dev.image[src:src + size]
    reads = dev.blocks_read
    ring2 = make_ring(dev)
    summary = ring2.mount(now_utc_us=T0_US + H_US)
    assert summary["kept"] == 3 and ring2.health()["corrupt_segments"] == 1
    assert_only_zero_or_fill(dev.image, stray, stray + size)
    assert dev.blocks_read - reads <= 6 + 2 + 1          # 6 headers, the stray re-read, a tail


def test_header_codec_round_trip_and_crc():
    buf = bytearray(512)
    notes = [(5, 123456789012 - 40), (6, 123456789012 + 9000)]
    crcs = [0xFFFFFFFF - i for i in range(64)]
    h = audiobuf.Header(7, 2, 123456789012, 2048, 16000, T0_US, audiobuf.FLAG_UTC, 0xDEADBEEF,
                        notes, crcs)
    audiobuf.pack_header(buf, h)
    g = audiobuf.unpack_header(buf)
    assert (g.seq, g.session, g.first_sample, g.n_samples, g.rate_hz, g.utc_us, g.flags,
            g.data_crc, g.notes, g.stage_crcs) == \
        (7, 2, 123456789012, 2048, 16000, T0_US, 1, 0xDEADBEEF, notes, crcs)
    assert audiobuf.max_notes(64) == 25
    h.notes = [(i, 123456789012 + i) for i in range(40)]      # more than fit: the first 25 kept
    audiobuf.pack_header(buf, h)
    assert audiobuf.unpack_header(buf).notes == h.notes[:25]
    buf[500] ^= 1                                               # the CRC covers the whole block
    with pytest.raises(ValueError):
        audiobuf.unpack_header(buf)
    audiobuf.pack_header(buf, h)
    buf[20] ^= 1
    with pytest.raises(ValueError):
        audiobuf.unpack_header(buf)
    assert audiobuf.unpack_header(bytearray(512)) is None


@pytest.mark.micropython
def test_ring_under_real_micropython(micropython):
    script = """
from audiobuf_helpers import RamBlockDev, mic_samples
from shotline_fw.audiobuf import AudioRing, AudioGone
dev = RamBlockDev(4 * 9 + 1)
ring = AudioRing(dev, 1000, lambda s: 1545180567000000 + s * 1000, seg_data_blocks=8, stage_blocks=2)
assert ring.mount()["slots"] == 4
s = 0
sizes = (1, 255, 256, 700, 513, 2048, 3, 1000)
i = 0
while s < 3 * 4 * 2048 + 300:
    k = sizes[i % len(sizes)]
    ring.write(mic_samples(s, k), s)
    s += k
    i += 1
ring.flush()
oldest = s - 3 * 2048
out = bytearray(2 * (s - oldest))
ring.read(oldest, out)
assert out == mic_samples(oldest, s - oldest)
try:
    ring.read(0, bytearray(4))
    raise SystemExit("old audio returned")
except AudioGone:
    pass
ring.close()
ring2 = AudioRing(dev, 1000, lambda s: None, seg_data_blocks=8, stage_blocks=2)
assert ring2.mount(now_utc_us=1545180567000000 + 7 * 86400 * 1000000)["kept"] == 0
for off in range(0, len(dev.image), 512):
    blk = dev.image[off:off + 512]
    assert blk == bytes(512) or blk == b"\\xa5" * 512
import array
ring3 = AudioRing(RamBlockDev(3 * 9), 1000, None, seg_data_blocks=8, stage_blocks=2)
ring3.mount()
a = array.array("h", [0] * 100)
for k in range(30):
    for i in range(100):
        a[i] = (100 * k + i) * 7 - 11000
    ring3.write(a, 100 * k)
got = bytearray(2 * 3000)
ring3.read(0, got)
for i in range(3000):
    v = got[2 * i] | (got[2 * i + 1] << 8)
    assert v - (65536 if v > 32767 else 0) == i * 7 - 11000, i
print("ok", ring.health()["segments_written"])
"""
    out = micropython(script, paths=[str(HERE)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


@pytest.mark.micropython
def test_first_utc_sweep_under_real_micropython(micropython):
    script = """
from audiobuf_helpers import RamBlockDev, mic_samples
from shotline_fw import auth
from shotline_fw.audiobuf import AudioRing
from shotline_fw.priv_install import Privacy
from shotline_fw.snippets import SnippetService
T0 = 1545180567000000
dev = RamBlockDev(40 * 9)
ring = AudioRing(dev, 1000, lambda s: T0 + s * 1000, seg_data_blocks=8, stage_blocks=2)
ring.mount()
s = 0
while s < 43 * 2048:
    ring.write(mic_samples(s, 512), s)
    s += 512
ring.close()
fix = [False]
ring2 = AudioRing(dev, 1000, lambda s: (T0 + 7 * 86400000000 + s * 1000) if fix[0] else None,
                  seg_data_blocks=8, stage_blocks=2)
assert ring2.mount()["kept"] == 40
class App:
    hw = None
sink = Privacy(App(), ring2, SnippetService(ring2, 1000), auth.Authorizer([], None, allow_empty=True), "k")
sink.write(mic_samples(0, 256), 0)
fix[0] = True
sink.write(mic_samples(256, 256), 256)
assert sink.utc_swept and ring2.health()["wiped_segments"] == 39, ring2.health()
print("ok")
"""
    out = micropython(script, paths=[str(HERE)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
