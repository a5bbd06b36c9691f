"""The snippet service (firmware/shotline_fw/snippets.py) and the protocol's audio policy."""
from pathlib import Path

import pytest

from audiobuf_helpers import RamBlockDev, mic_samples
from shotline_fw import wire
from shotline_fw.audiobuf import AudioRing
from shotline_fw.snippets import SnippetRefused, SnippetService

HERE = Path(__file__).resolve().parent
RATE_HZ = 16000
SEG_BLOCKS = 64                     # 16384 samples (1.024 s) per segment
T0_US = 1_545_180_567 * 1_000_000


def recorder(seconds, n_slots=30, block=512):
    dev = RamBlockDev(n_slots * (SEG_BLOCKS + 1))
    ring = AudioRing(dev, RATE_HZ, lambda s: T0_US + s * 1_000_000 // RATE_HZ,
                     seg_data_blocks=SEG_BLOCKS, stage_blocks=8)
    ring.mount()
    for s in range(0, int(seconds * RATE_HZ), block):
        ring.write(mic_samples(s, block), s)
    return dev, ring, SnippetService(ring, RATE_HZ)


def collect(chunks):
    got = []
    for body in chunks:
        got.append(wire.decode_snippet_chunk(body))     # checks each chunk's CRC
    assert [c[1] for c in got] == list(range(len(got)))
    assert all(c[2] == len(got) for c in got)
    return b"".join(c[3] for c in got)


def test_snippet_equals_the_microphone_audio_of_its_window():
    _, ring, service = recorder(12)
    onset = 6 * RATE_HZ + 123
    service.note_trigger(41, onset)
    info, chunks = service.snippet({"trigger_seq": 41})
    first = onset - 2 * RATE_HZ
    assert info == {"trigger_seq": 41, "first_sample_index": first, "n_samples": 6 * RATE_HZ,
                    "sample_rate_hz": RATE_HZ, "chunks": 94, "boot_session": ring.session,
                    "start_utc_us": T0_US + first * 1_000_000 // RATE_HZ}
    assert collect(chunks) == mic_samples(first, 6 * RATE_HZ)
    assert service.counts == {"served": 1, "refused": 0}


def test_narrower_window_and_clamp_at_start_of_recording():
    _, _, service = recorder(8)
    service.note_trigger(1, RATE_HZ // 2)                 # 0.5 s after capture began
    info, chunks = service.snippet({"trigger_seq": 1, "pre_ms": 2000, "post_ms": 1000})
    assert info["first_sample_index"] == 0 and info["n_samples"] == RATE_HZ * 3 // 2
    assert collect(chunks) == mic_samples(0, RATE_HZ * 3 // 2)
    service.note_trigger(2, 5 * RATE_HZ)
    info, chunks = service.snippet({"trigger_seq": 2, "pre_ms": 100, "post_ms": 0})
    assert collect(chunks) == mic_samples(5 * RATE_HZ - 1600, 1600)


@pytest.mark.parametrize("request_, reason", [
    ({"trigger_seq": 7, "pre_ms": 2001}, "window"),
    ({"trigger_seq": 7, "post_ms": 4001}, "window"),
    ({"trigger_seq": 7, "pre_ms": 0, "post_ms": 0}, "window"),
    ({"trigger_seq": 7, "start_sample": 0}, "bad_request"),
    ({"trigger_seq": 7, "n_samples": 10**6}, "bad_request"),
    ({"trigger_seq": "7"}, "bad_request"),
    ({"trigger_seq": True}, "bad_request"),
    ({"trigger_seq": 7, "pre_ms": -5}, "bad_request"),
    ({"trigger_seq": 7, "pre_ms": 1.5}, "bad_request"),
    ({}, "bad_request"),
    ([7], "bad_request"),
    ({"trigger_seq": 8}, "unknown_trigger"),
])
def test_out_of_policy_requests_are_refused(request_, reason):
    _, _, service = recorder(8)
    service.note_trigger(7, 4 * RATE_HZ)
    with pytest.raises(SnippetRefused) as exc:
        service.snippet(request_)
    assert exc.value.args[0] == reason
    assert service.counts["refused"] == 1


def test_window_not_yet_recorded_expired_and_corrupt():
    dev, ring, service = recorder(8, n_slots=8)
    service.note_trigger(1, 6 * RATE_HZ)                  # its +4 s is in the future
    with pytest.raises(SnippetRefused, match="not_yet"):
        service.snippet({"trigger_seq": 1})
    service.note_trigger(2, 3 * RATE_HZ)
    for s in range(8 * RATE_HZ, 14 * RATE_HZ, 512):        # wrap-around overwrites it
        ring.write(mic_samples(s, 512), s)
    with pytest.raises(SnippetRefused, match="expired"):
        service.snippet({"trigger_seq": 2})
    service.note_trigger(3, 10 * RATE_HZ)
    h = ring.find(10 * RATE_HZ)
    dev.image[(ring._slot_block(h.seq) + 3) * 512 + 17] ^= 0x40
    info, chunks = service.snippet({"trigger_seq": 3})    # headers fine: the data is checked
    with pytest.raises(SnippetRefused, match="corrupt"):  # stage by stage as it is sent
        collect(chunks)
    # a transfer that fails mid-way is refused, not also served
    assert service.counts == {"served": 0, "refused": 3}
    for s in range(14 * RATE_HZ, 18 * RATE_HZ, 512):
        ring.write(mic_samples(s, 512), s)
    service.note_trigger(4, 13 * RATE_HZ)
    info, chunks = service.snippet({"trigger_seq": 4})
    assert service.counts["served"] == 0                  # not until the last chunk is out
    collect(chunks)
    assert service.counts == {"served": 1, "refused": 3}


def test_forgotten_triggers_are_unknown():
    _, ring, _ = recorder(8)
    service = SnippetService(ring, RATE_HZ, capacity=2)
    for seq in (1, 2, 3):
        service.note_trigger(seq, 4 * RATE_HZ)
    with pytest.raises(SnippetRefused, match="unknown_trigger"):
        service.snippet({"trigger_seq": 1})
    assert service.snippet({"trigger_seq": 3})[0]["chunks"] == 94


def test_triggers_of_an_earlier_boot_are_still_served_from_the_card():
    dev, ring, service = recorder(10)
    service.note_trigger(5, 4 * RATE_HZ)
    service.note_trigger(6, 7 * RATE_HZ)
    ring.flush()                                     # then the power fails
    session1 = ring.session
    t1 = T0_US + 60 * 1_000_000                      # rebooted a minute later
    ring2 = AudioRing(dev, RATE_HZ, lambda s: t1 + s * 1_000_000 // RATE_HZ,
                      seg_data_blocks=SEG_BLOCKS, stage_blocks=8)
    service2 = SnippetService(ring2, RATE_HZ)
    ring2.mount(now_utc_us=t1)
    with pytest.raises(SnippetRefused, match="no_time"):
        service2.snippet({"trigger_seq": 5})         # no audio (so no clock) yet in this boot
    for s in range(0, 2 * RATE_HZ, 512):
        ring2.write(mic_samples(s + 10**6, 512), s)
    info, chunks = service2.snippet({"trigger_seq": 5})
    assert info["boot_session"] == session1 and info["first_sample_index"] == 2 * RATE_HZ
    assert info["start_utc_us"] == T0_US + 2 * 1_000_000
    assert collect(chunks) == mic_samples(2 * RATE_HZ, 6 * RATE_HZ)
    # trigger 6's window (5..11 s) was never fully recorded before the cut
    with pytest.raises(SnippetRefused, match="expired"):
        service2.snippet({"trigger_seq": 6})
    # and once that boot's audio is older than 72 h it is refused, then wiped
    late = T0_US + 73 * 3600 * 1_000_000
    ring3 = AudioRing(dev, RATE_HZ, lambda s: late + s * 1_000_000 // RATE_HZ,
                      seg_data_blocks=SEG_BLOCKS, stage_blocks=8)
    service3 = SnippetService(ring3, RATE_HZ)
    ring3.mount(now_utc_us=late)
    with pytest.raises(SnippetRefused, match="unknown_trigger"):
        service3.snippet({"trigger_seq": 5})


def test_protocol_has_no_streaming_or_arbitrary_range_command():
    names = {name for name, _ in wire.COMMANDS.values()}
    assert names == {"hello", "ack", "status", "config_get", "config_set", "time", "self_test",
                     "snippet", "keys", "reboot"}
    for word in ("stream", "audio", "read", "range", "dump", "listen", "record", "file"):
        assert not any(word in n for n in names), word
    # commands that reveal audio or change configuration or keys must be signed
    signed = {name for name, must_sign in wire.COMMANDS.values() if must_sign}
    assert {"snippet", "config_set", "keys"} <= signed
    # the board sends audio in exactly one message type, addressed by trigger seq
    assert [t for t, n in wire.NAMES.items() if "snippet" in n] == [wire.SNIPPET_CHUNK, wire.SNIPPET]


@pytest.mark.micropython
def test_snippet_service_under_real_micropython(micropython):
    script = """
from audiobuf_helpers import RamBlockDev, mic_samples
from shotline_fw.audiobuf import AudioRing
from shotline_fw.snippets import SnippetService, SnippetRefused
from shotline_fw import wire
rate = 4000
dev = RamBlockDev(12 * 17)
ring = AudioRing(dev, rate, lambda s: None, seg_data_blocks=16, stage_blocks=4)
ring.mount()
for s in range(0, 10 * rate, 500):
    ring.write(mic_samples(s, 500), s)
svc = SnippetService(ring, rate, capacity=8)
svc.note_trigger(3, 5 * rate)
info, chunks = svc.snippet({"trigger_seq": 3})
got = bytearray()
for body in chunks:
    seq, i, total, samples = wire.decode_snippet_chunk(body)
    got.extend(samples)
assert info["n_samples"] == 6 * rate and info["start_utc_us"] is None
assert got == mic_samples(3 * rate, 6 * rate)
for req, why in (({"trigger_seq": 3, "post_ms": 4500}, "window"),
                 ({"trigger_seq": 4}, "unknown_trigger"),
                 ({"trigger_seq": 3, "first": 0}, "bad_request")):
    try:
        svc.snippet(req)
        raise SystemExit("served " + repr(req))
    except SnippetRefused as e:
        assert e.args[0] == why, e.args
print("ok")
"""
    out = micropython(script, paths=[str(HERE)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.micropython
def test_privacy_sink_paces_a_transfer_under_real_micropython(micropython):
    """priv_install.Privacy on MicroPython: the SNIPPET handler starts a transfer that
    advances one chunk per captured block and ends with the RESPONSE."""
    script = """
import array, json
from audiobuf_helpers import RamBlockDev
from shotline_fw import wire, auth
from shotline_fw.audiobuf import AudioRing
from shotline_fw.snippets import SnippetService
from shotline_fw.priv_install import Privacy

class App:
    sensor_id = "S1"
    def __init__(self):
        self.sent = []
    def send(self, t, body, ref=0):
        self.sent.append((t, ref, body))
    def respond(self, ref, body):
        self.sent.append((wire.RESPONSE, ref, body))

rate = 4000
app = App()
ring = AudioRing(RamBlockDev(10 * 17), rate, None, seg_data_blocks=16, stage_blocks=4)
ring.mount()
svc = SnippetService(ring, rate)
priv = Privacy(app, ring, svc, auth.Authorizer([], None, allow_empty=True), "keys.json")
block = array.array("h", [0] * 256)
s = 0
def feed(n):
    global s
    for _ in range(n):
        for i in range(256):
            block[i] = (s + i) % 30000
        priv.write(block, s)
        s += 256
feed(120)                                     # 7.7 s
svc.note_trigger(9, 3 * rate)
assert priv.cmd_snippet(app, 77, b'{"trigger_seq": 9}') is None
assert priv.cmd_snippet(app, 78, b'{"trigger_seq": 9}')["status"] == "busy"
feed(30)
chunks = [x for x in app.sent if x[0] == wire.SNIPPET_CHUNK]
final = [x for x in app.sent if x[0] == wire.RESPONSE]
assert len(chunks) == 24 and all(c[1] == 77 for c in chunks), len(chunks)
assert final[0][1] == 77 and final[0][2]["ok"] and final[0][2]["chunks"] == 24
got = bytearray()
for c in chunks:
    got.extend(wire.decode_snippet_chunk(c[2])[3])
first = rate
for i in range(0, 6 * rate, 997):
    v = got[2 * i] | (got[2 * i + 1] << 8)
    assert v == (first + i) % 30000, i
refused = priv.cmd_snippet(app, 79, b'{"trigger_seq": 9, "post_ms": 5000}')
assert refused == {"ok": False, "status": "refused", "error": "window"}
print("ok")
"""
    out = micropython(script, paths=[str(HERE)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
