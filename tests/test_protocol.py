"""Wire codec (firmware/shotline_fw/wire.py): framing, CRC, resync, binary bodies."""
import binascii
import json
import os
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from shotline_fw import wire


def test_crc32_matches_zlib_both_implementations():
    for data in (b"", b"a", b"123456789", os.urandom(1000)):
        assert wire.crc32(data) == zlib.crc32(data)
        assert wire.crc32_py(data) == zlib.crc32(data)
    assert wire.crc32_py(b"123456789") == 0xCBF43926  # the standard check value


def test_frame_round_trip_and_layout():
    line = wire.encode_json(wire.TRIGGER, 0xFFFFFFFF, {"seq": 3, "x": [1, 2]}, ref=9)
    assert line.startswith(b"~SL:") and line.endswith(b"\n")
    assert all(32 <= b < 127 for b in line[:-1])  # no control byte: REPL-safe
    f = wire.decode_line(line)
    assert (f.version, f.type, f.seq, f.ref) == (1, wire.TRIGGER, 0xFFFFFFFF, 9)
    assert f.json() == {"seq": 3, "x": [1, 2]}
    packet = binascii.a2b_base64(line[4:])
    assert packet[0] == wire.PROTOCOL_VERSION and packet[1] == wire.TRIGGER
    assert int.from_bytes(packet[-4:], "little") == zlib.crc32(packet[:-4])


def test_corruption_is_detected():
    packet = bytearray(wire.encode_packet(wire.HEARTBEAT, 1, b'{"a":1}'))
    for i in range(len(packet)):
        bad = bytearray(packet)
        bad[i] ^= 0x10
        with pytest.raises(wire.WireError):
            wire.decode_packet(bytes(bad))
    with pytest.raises(wire.WireError, match="short"):
        wire.decode_packet(b"\x01\x02")


def test_unsupported_version_refused():
    p = bytearray(wire.encode_packet(wire.HELLO, 1))
    p[0] = 2
    p[-4:] = zlib.crc32(bytes(p[:-4])).to_bytes(4, "little")
    with pytest.raises(wire.WireError, match="version"):
        wire.decode_packet(bytes(p))


def test_stream_resynchronises_after_garbage_and_keeps_text():
    text = []
    d = wire.StreamDecoder(on_text=text.append)
    good = [wire.encode_json(wire.HEARTBEAT, i, {"i": i}) for i in range(4)]
    corrupt = bytearray(good[1])
    corrupt[10] = ord("A") if corrupt[10] != ord("A") else ord("B")
    stream = (b"MicroPython v1.23 on rp2\r\n>>> " + good[0] + b"\x00\xff\x03garbage"
              + bytes(corrupt) + b"Traceback (most recent call last):\r\n" + good[2]
              + b"~SL:notbase64!!\n" + good[3])
    frames = []
    for k in range(0, len(stream), 7):  # arbitrary split points
        frames += d.feed(stream[k:k + 7])
    assert [f.json()["i"] for f in frames] == [0, 2, 3]
    assert d.bad == 2 and d.frames == 3
    assert b"Traceback (most recent call last):" in text
    assert text[0].startswith(b"MicroPython")


def test_overlong_line_is_dropped_then_recovers():
    d = wire.StreamDecoder(max_line=200)
    good = wire.encode_json(wire.LOG, 1, {"msg": "x"})
    assert d.feed(b"z" * 1000 + b"\n" + good) and d.overflows == 1
    # a frame starting inside an over-long line is still recovered
    assert len(d.feed(b"y" * 500 + good)) == 1


def test_body_too_long_refused():
    with pytest.raises(wire.WireError, match="too long"):
        wire.encode_frame(wire.LOG, 1, b"x" * wire.MAX_PACKET)


def test_largest_snippet_chunk_fits_a_line():
    samples = os.urandom(2 * wire.SNIPPET_CHUNK_SAMPLES)
    body = wire.encode_snippet_chunk(5, 0, 3, samples)
    line = wire.encode_frame(wire.SNIPPET_CHUNK, 1, body, ref=4)
    assert len(line) <= wire.MAX_LINE
    (f,) = wire.StreamDecoder().feed(line)
    assert wire.decode_snippet_chunk(f.body) == (5, 0, 3, samples)


def test_snippet_chunk_checks():
    body = bytearray(wire.encode_snippet_chunk(7, 1, 2, b"\x01\x00\x02\x00"))
    body[-1] ^= 1
    with pytest.raises(wire.WireError, match="CRC"):
        wire.decode_snippet_chunk(bytes(body))
    with pytest.raises(wire.WireError):
        wire.encode_snippet_chunk(7, 2, 2, b"\x00\x00")
    with pytest.raises(wire.WireError):
        wire.encode_snippet_chunk(7, 0, 1, b"\x00")


def test_signed_envelope_round_trip_and_signature_with_nacl():
    nacl = pytest.importorskip("nacl.signing")
    key = nacl.SigningKey(bytes(range(32)))
    key_id = bytes(key.verify_key)[:8]
    cmd = wire.command_bytes(wire.CONFIG_SET, wire.dumps({"config": {"heartbeat_s": 5}}))
    counter = 2**40 + 5
    uid = bytes.fromhex("e6613852834a2b21")
    sig = key.sign(wire.signed_message(cmd, counter, key_id, uid)).signature
    body = wire.encode_signed(cmd, counter, key_id, sig)
    got_cmd, got_counter, got_key, got_sig = wire.decode_signed(body)
    assert (got_cmd, got_counter, got_key, got_sig) == (cmd, counter, key_id, sig)
    key.verify_key.verify(wire.signed_message(got_cmd, got_counter, got_key, uid), got_sig)
    # bound to the board: the same frame does not verify for another uid
    from nacl.exceptions import BadSignatureError
    with pytest.raises(BadSignatureError):
        key.verify_key.verify(wire.signed_message(got_cmd, got_counter, got_key, uid[:7] + b"\x22"),
                              got_sig)
    assert wire.split_command(got_cmd) == (wire.CONFIG_SET, cmd[1:])
    with pytest.raises(wire.WireError):
        wire.encode_signed(cmd, 1, b"short", sig)
    with pytest.raises(wire.WireError):
        wire.decode_signed(body[:50])


def test_command_table():
    signed = {name for name, s in wire.COMMANDS.values() if s}
    assert signed == {"config_set", "snippet", "keys", "reboot"}
    assert all(t in wire.NAMES for t in wire.COMMANDS)
    # no board->host type is a command, and nothing streams audio except SNIPPET by trigger
    assert wire.TRIGGER not in wire.COMMANDS and wire.SNIPPET_CHUNK not in wire.COMMANDS


def test_trigger_record_for_the_host():
    rec = wire.trigger_record({"sensor_id": "A", "seq": 4, "utc_s": 1545094167, "utc_us": 467123,
                               "lat_e7": 404406248, "lon_e7": -799958860, "snr_db": 20.0})
    assert rec["onset_utc_s"] == pytest.approx(1545094167.467123, abs=1e-7)
    assert rec["lat_deg"] == pytest.approx(40.4406248) and rec["lon_deg"] == pytest.approx(-79.995886)
    assert "utc_s" not in rec and rec["snr_db"] == 20.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64),
                          st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1),
                                    st.binary(max_size=300))), max_size=12),
       st.integers(1, 50))
def test_fuzz_stream_yields_exactly_the_valid_frames(parts, split):
    d = wire.StreamDecoder()
    stream, expected = b"", []
    for p in parts:
        if isinstance(p, tuple):
            t, seq, body = p
            stream += b"\n" + wire.encode_frame(t, seq, body)
            expected.append((t, seq, body))
        else:
            stream += p.replace(b"~SL:", b"")  # garbage may not forge the magic
    got = []
    for k in range(0, len(stream), split):
        got += [(f.type, f.seq, f.body) for f in d.feed(stream[k:k + split])]
    assert got == expected


VECTORS_SCRIPT = r"""
import sys, json
from shotline_fw import wire
vec = json.loads(sys.argv[1])
for v in vec:
    line = v["line"].encode()
    f = wire.decode_line(line)
    assert (f.type, f.seq, f.ref) == (v["type"], v["seq"], v["ref"]), (f.type, f.seq)
    assert f.body == bytes.fromhex(v["body"]), "body"
    assert wire.encode_frame(v["type"], v["seq"], f.body, v["ref"]) == line, "encode"
    assert wire.crc32_py(f.body) == v["crc"], "crc_py"
    assert wire.crc32(f.body) == v["crc"], "crc"
d = wire.StreamDecoder()
n = 0
stream = b"junk\r\n>>> \x03" + b"".join(v["line"].encode() for v in vec)
for i in range(0, len(stream), 5):
    n += len(d.feed(stream[i:i + 5]))
assert n == len(vec), n
c = wire.encode_snippet_chunk(9, 1, 2, b"\x01\x02\x03\x04")
assert wire.decode_snippet_chunk(c) == (9, 1, 2, b"\x01\x02\x03\x04")
s = wire.encode_signed(b"\x42{}", 2**40 + 1, b"k" * 8, b"s" * 64)
assert wire.decode_signed(s) == (b"\x42{}", 2**40 + 1, b"k" * 8, b"s" * 64)
print("ok", n)
"""


def test_codec_under_micropython_matches_cpython(micropython):
    vec = []
    for i, (t, body) in enumerate([(wire.HELLO, wire.dumps({"sensor_id": "s1"})),
                                   (wire.SNIPPET_CHUNK, wire.encode_snippet_chunk(1, 0, 1, bytes(range(200)))),
                                   (wire.ACK, b""), (wire.LOG, os.urandom(77))]):
        line = wire.encode_frame(t, 1000 * i + 2**31, body, ref=i)
        vec.append({"line": line.decode(), "type": t, "seq": 1000 * i + 2**31, "ref": i,
                    "body": body.hex(), "crc": zlib.crc32(body)})
    out = micropython(VECTORS_SCRIPT, args=[json.dumps(vec)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "4"]
