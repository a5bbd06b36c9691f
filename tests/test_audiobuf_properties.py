"""Property tests of the ring: any block sizes, gaps, flushes and power cuts."""
from hypothesis import given, settings, strategies as st

from audiobuf_helpers import RamBlockDev, mic_samples
from shotline_fw.audiobuf import AudioGone, AudioRing

SEG_BLOCKS = 4
SEG_SAMPLES = SEG_BLOCKS * 256
RATE_HZ = 1000

ops = st.lists(st.tuples(st.integers(1, 900),           # block length, samples
                         st.integers(0, 9),             # 0: a gap of up to 700 samples first
                         st.integers(0, 700),
                         st.booleans()),                # flush afterwards
               min_size=1, max_size=40)


def ring_on(dev):
    return AudioRing(dev, RATE_HZ, lambda s: 1_545_180_567_000_000 + s * 1000,
                     seg_data_blocks=SEG_BLOCKS, stage_blocks=2)


@settings(max_examples=40, deadline=None)
@given(ops=ops, n_slots=st.integers(2, 6))
def test_everything_held_reads_back_exactly(ops, n_slots):
    dev = RamBlockDev(n_slots * (SEG_BLOCKS + 1))
    ring = ring_on(dev)
    ring.mount()
    s = 0
    written = []
    for n, gap_roll, gap, flush in ops:
        if gap_roll == 0:
            s += gap
        ring.write(mic_samples(s, n), s)
        written.append((s, s + n))
        s += n
        if flush:
            ring.flush()
    ring.flush()
    held = 0
    for a, b in written:
        for x in range(a, b, 97):                       # probe many samples
            out = bytearray(2)
            try:
                ring.read(x, out)
            except AudioGone:
                continue
            assert out == mic_samples(x, 1)
            held += 1
    # The newest sample is always held (the ring keeps at least one full slot of history).
    out = bytearray(2)
    ring.read(s - 1, out)
    assert out == mic_samples(s - 1, 1)
    # Nothing outside what was written is ever returned.
    probe = bytearray(2)
    for a, b in zip([w[1] for w in written], [w[0] for w in written[1:]]):
        if b > a:
            try:
                ring.read(a, probe)
                raise AssertionError("read inside a gap")
            except AudioGone:
                pass


@settings(max_examples=30, deadline=None)
@given(ops=ops, cut=st.integers(0, 40))
def test_power_cut_anywhere_then_reboot_keeps_the_card_consistent(ops, cut):
    dev = RamBlockDev(5 * (SEG_BLOCKS + 1))
    ring = ring_on(dev)
    ring.mount()
    dev.cut_after_writes = cut
    s = 0
    for n, gap_roll, gap, flush in ops:
        ring.write(mic_samples(s, n), s)
        s += n
        if flush:
            ring.flush()
    dev.cut_after_writes = None
    ring2 = ring_on(dev)
    ring2.mount(now_utc_us=1_545_180_567_000_000 + s * 1000)
    from shotline_fw.audiobuf import unpack_header
    from shotline_fw.wire import crc32
    for slot in range(ring2.n_slots):
        base = slot * (SEG_BLOCKS + 1) * 512
        try:
            h = unpack_header(dev.image[base:base + 512])
        except ValueError:
            raise AssertionError("a corrupt header survived the mount")
        if h is None:
            continue
        data = dev.image[base + 512:base + 512 + 2 * h.n_samples]
        assert crc32(data) == h.data_crc                          # committed audio is intact
        assert data == mic_samples(h.first_sample, h.n_samples)
        rest = dev.image[base + 512 + 2 * h.n_samples:base + (SEG_BLOCKS + 1) * 512]
        assert bytes(rest) == bytes(len(rest)) or set(rest) == {0xA5}  # no stale audio after it


@settings(max_examples=30, deadline=None)
@given(ops=ops, failures=st.lists(st.booleans(), min_size=40, max_size=40))
def test_write_errors_anywhere_leave_no_stale_audio_after_the_next_boot(ops, failures):
    dev = RamBlockDev(5 * (SEG_BLOCKS + 1))
    ring = ring_on(dev)
    ring.mount()
    s = 0
    for (n, _, _, flush), fail in zip(ops, failures):
        dev.fail_writes = fail
        ring.write(mic_samples(s, n), s)
        s += n
        if flush:
            ring.flush()
    dev.fail_writes = False
    ring.close()
    ring2 = ring_on(dev)
    ring2.mount(now_utc_us=1_545_180_567_000_000 + s * 1000)
    from shotline_fw.audiobuf import unpack_header
    for slot in range(ring2.n_slots):
        base = slot * (SEG_BLOCKS + 1) * 512
        h = unpack_header(dev.image[base:base + 512])
        if h is None:
            continue
        data = dev.image[base + 512:base + 512 + 2 * h.n_samples]
        assert data == mic_samples(h.first_sample, h.n_samples)
        rest = dev.image[base + 512 + 2 * h.n_samples:base + (SEG_BLOCKS + 1) * 512]
        assert bytes(rest) == bytes(len(rest)) or set(rest) == {0xA5}
