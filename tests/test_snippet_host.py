"""Host side of snippets: keys, signed fetch from the real firmware app on fakehw,
FLAC storage, audit log, and the `shotline keys` / `shotline snippet` commands."""
import itertools
import json
import os
import stat

import numpy as np
import pytest
import soundfile as sf

from audiobuf_helpers import RamBlockDev
from shotline import keys, snippet
from shotline.cli import main
from shotline.fakehw import FakeBoard, write_config
from shotline.link import LinkTimeout
from shotline.virtual import impulse_audio
from shotline_fw import priv_install, wire

RATE_HZ = 16000


class BoardLink:
    """The parts of ``shotline.link.Link`` that ``snippet.fetch`` uses, over a FakeBoard
    (simulated time advances while waiting)."""

    url = "fake://board"

    def __init__(self, board):
        self.board = board
        self._seq = 100
        self.backlog = []

    def next_seq(self):
        self._seq += 1
        return self._seq

    def write(self, data):
        self.board.usb.host_write(data)

    def wait_for(self, match, timeout_s):
        waited = 0.0
        while True:
            self.backlog.extend(self.board.frames())
            for i, f in enumerate(self.backlog):
                if match(f):
                    return self.backlog.pop(i)
            if waited >= timeout_s:
                raise LinkTimeout("no answer")
            self.board.advance(0.05)
            waited += 0.05


@pytest.fixture
def keydir(tmp_path):
    d = tmp_path / "keys"
    keys.generate(d)
    return d


@pytest.fixture
def sensor(tmp_path, keydir):
    """A fake board running the real app with the privacy modules installed, 14 s recorded."""
    root = tmp_path / "flash"
    write_config(root, sensor_id="S1", lat_deg=40.44, lon_deg=-79.99, alt_m=300.0)
    (root / "keys.json").write_text(json.dumps({"ed25519": [keys.load_public(keydir).hex()]}))
    audio = np.concatenate(list(itertools.islice(impulse_audio(RATE_HZ, period_s=4.0,
                                                               first_s=3.0), 20)))
    board = FakeBoard(root, audio=audio)
    card = RamBlockDev(40 * 65)
    privacy = priv_install.install(board.app, card, root=str(root), first_block=0,
                                   seg_data_blocks=64)
    board.advance(14.0)
    return board, privacy, audio, card


def triggers(board):
    return [f.json() for f in board.frames() if f.type == wire.TRIGGER]


def test_keys_generate_export_and_permissions(tmp_path):
    info = keys.generate(tmp_path / "k")
    priv = tmp_path / "k" / keys.PRIVATE_NAME
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert keys.export(tmp_path / "k") == {"key_id": info["public_key"][:16],
                                           "public_key": info["public_key"]}
    with pytest.raises(keys.KeyFileError, match="exists"):
        keys.generate(tmp_path / "k")
    os.chmod(priv, 0o644)
    with pytest.raises(keys.KeyFileError, match="too open"):
        keys.Signer.load(tmp_path / "k")
    with pytest.raises(keys.KeyFileError):
        keys.check_public_key(bytes(32))          # small order: refused for provisioning


def test_counters_only_increase(keydir):
    signer = keys.Signer.load(keydir)
    values = [signer.next_counter() for _ in range(50)]
    assert values == sorted(set(values))
    again = keys.Signer.load(keydir)                  # another process, same directory
    assert again.next_counter() > values[-1]


def test_fetch_equals_the_microphone_audio_and_utc(sensor, keydir):
    board, privacy, audio, _ = sensor
    trig = triggers(board)
    assert len(trig) >= 2
    t = trig[0]
    snip = snippet.fetch(BoardLink(board), keys.Signer.load(keydir), t["seq"], sensor_id="S1")
    assert snip.first_sample_index == t["sample_index"] - 2 * RATE_HZ
    assert len(snip.samples) == 6 * RATE_HZ
    first = snip.first_sample_index
    assert np.array_equal(snip.samples, audio[first:first + 6 * RATE_HZ])
    assert abs(snip.start_utc_s - board.sample_utc_s(first)) < 1e-3
    h = board.app.health()["audio"]
    assert h["card"] == "ok" and h["snippets_served"] == 1 and h["auth"] == {"ok": 1}


def test_unsigned_forged_and_replayed_requests_are_refused(sensor, keydir, tmp_path):
    board, privacy, _, _ = sensor
    seq = triggers(board)[0]["seq"]
    board.command(wire.SNIPPET, {"trigger_seq": seq}, seq=7)           # not signed
    board.advance(0.1)
    answer = [f.json() for f in board.frames() if f.type == wire.RESPONSE and f.ref == 7]
    assert answer[0]["status"] == "unauthorized"
    keys.generate(tmp_path / "intruder")
    with pytest.raises(snippet.SnippetRefused) as exc:
        snippet.fetch(BoardLink(board), keys.Signer.load(tmp_path / "intruder"), seq)
    assert exc.value.reason == "unknown_key"
    signer = keys.Signer.load(keydir)
    body = signer.sign(wire.SNIPPET, json.dumps({"trigger_seq": seq}).encode(), board.unique_id)
    board.command(wire.SIGNED, body, seq=8)
    board.advance(5.0)
    assert [f for f in board.frames() if f.type == wire.RESPONSE and f.ref == 8][0].json()["ok"]
    board.command(wire.SIGNED, body, seq=9)                             # captured and replayed
    board.advance(0.5)
    replay = [f.json() for f in board.frames() if f.type == wire.RESPONSE and f.ref == 9]
    assert replay[0] == {"ok": False, "status": "unauthorized", "error": "replayed"}
    assert board.app.health()["audio"]["auth"] == {"ok": 1, "unknown_key": 1, "replayed": 1}
    # an authorised request for a trigger that does not exist
    with pytest.raises(snippet.SnippetRefused, match="unknown_trigger"):
        snippet.fetch(BoardLink(board), signer, seq + 1000)


def test_a_request_signed_for_another_board_is_refused(sensor, keydir):
    """A SIGNED frame captured on board A's link (same key, fresh counter) does not run on
    this board: the signature covers the target uid.  fetch signs for the uid in HELLO."""
    board, _, _, _ = sensor
    seq = triggers(board)[0]["seq"]
    signer = keys.Signer.load(keydir)
    board_a = bytes(b ^ 0xFF for b in board.unique_id)
    for_a = signer.sign(wire.SNIPPET, json.dumps({"trigger_seq": seq}).encode(), board_a)
    board.command(wire.SIGNED, for_a, seq=8)
    board.advance(0.5)
    answer = [f.json() for f in board.frames() if f.type == wire.RESPONSE and f.ref == 8]
    assert answer == [{"ok": False, "status": "unauthorized", "error": "bad_signature"}]
    assert board.app.health()["audio"]["auth"] == {"bad_signature": 1}
    assert snippet.board_uid(BoardLink(board)) == board.unique_id.hex()
    snip = snippet.fetch(BoardLink(board), signer, seq)               # signed for this board
    assert len(snip.samples) == 6 * RATE_HZ
    assert board.app.health()["audio"]["auth"] == {"bad_signature": 1, "ok": 1}


def test_signed_reboot_closes_the_ring_first(sensor, keydir):
    """REBOOT (and Ctrl-C, both through app.close) commits the ring's open segment:
    the audio captured up to the reset is on the card for the next boot."""
    from shotline_fw.audiobuf import AudioRing

    board, privacy, _, card = sensor
    ring = privacy.ring
    written = []
    ring_write = ring.write
    ring.write = lambda block, first: (written.append(first + len(block)), ring_write(block, first))
    board.command(wire.SIGNED, keys.Signer.load(keydir).sign(wire.REBOOT, b"{}", board.unique_id),
                  seq=5)
    board.advance(1.0)
    assert board.app.boot == 2 and ring._cur is None
    after = AudioRing(card, RATE_HZ, None, first_block=0, seg_data_blocks=64)
    assert after.mount()["card"] == "ok"
    newest = after.header(after._next_seq - 1)
    assert newest.first_sample + newest.n_samples == written[-1]     # nothing uncommitted


def test_corrupted_chunk_is_detected(sensor, keydir):
    board, _, _, _ = sensor
    seq = triggers(board)[0]["seq"]

    class Tamper(BoardLink):
        def wait_for(self, match, timeout_s):
            f = super().wait_for(match, timeout_s)
            if f.type == wire.SNIPPET_CHUNK and f.body[20] is not None:
                body = bytearray(f.body)
                body[40] ^= 1
                f = wire.Frame(f.version, f.type, f.seq, f.ref, bytes(body))
            return f

    with pytest.raises(snippet.SnippetError, match="CRC"):
        snippet.fetch(Tamper(board), keys.Signer.load(keydir), seq)


def test_fetch_and_store_writes_flac_and_audits_every_request(sensor, keydir, tmp_path):
    board, _, audio, _ = sensor
    seq = triggers(board)[0]["seq"]
    audit = snippet.AuditLog(tmp_path / "out" / "audit.jsonl")
    signer = keys.Signer.load(keydir)
    rec = snippet.fetch_and_store(BoardLink(board), signer, "S1", seq, out_dir=tmp_path / "out",
                                  audit=audit, reason="incident 12 review", event_id=12)
    assert rec["status"] == "ok" and rec["reason"] == "incident 12 review"
    data, rate = sf.read(rec["path"], dtype="int16")
    assert rate == RATE_HZ and len(data) == 6 * RATE_HZ
    assert stat.S_IMODE(os.stat(rec["path"]).st_mode) == 0o640
    with sf.SoundFile(rec["path"]) as f:
        meta = json.loads(f.comment)
        assert f.date == rec["start_utc"]
    first = meta["first_sample_index"]
    assert np.array_equal(data, audio[first:first + len(data)])
    refused = snippet.fetch_and_store(BoardLink(board), signer, "S1", seq + 99,
                                      out_dir=tmp_path / "out", audit=audit, reason="x")
    assert refused["status"] == "refused" and "unknown_trigger" in refused["error"]
    rows = audit.records()
    assert [r["status"] for r in rows] == ["ok", "refused"]
    assert all(r["user"] and r["host"] and r["utc"].endswith("Z") for r in rows)
    assert audit.verify() is None
    lines = (tmp_path / "out" / "audit.jsonl").read_text().splitlines()
    (tmp_path / "out" / "audit.jsonl").write_text(lines[1] + "\n")        # a deleted record
    assert audit.verify() == 0


def test_card_missing_snippets_refused_detection_continues(tmp_path, keydir):
    root = tmp_path / "flash"
    write_config(root, sensor_id="S2", lat_deg=40.44, lon_deg=-79.99, alt_m=300.0)
    (root / "keys.json").write_text(json.dumps({"ed25519": [keys.load_public(keydir).hex()]}))
    board = FakeBoard(root, audio=impulse_audio(RATE_HZ, period_s=2.0, first_s=1.0))
    priv_install.install(board.app, None, root=str(root))
    board.advance(8.0)
    trig = triggers(board)
    assert len(trig) >= 3                                           # detection unaffected
    assert board.app.health()["audio"]["card"] == "missing"
    with pytest.raises(snippet.SnippetRefused, match="no_card"):
        snippet.fetch(BoardLink(board), keys.Signer.load(keydir), trig[0]["seq"])


def test_keys_command_replaces_keys_only_when_signed(sensor, keydir, tmp_path):
    board, privacy, _, _ = sensor
    new = keys.generate(tmp_path / "new")
    body = json.dumps({"keys": [{"key_id": new["key_id"], "public_key": new["public_key"]}]})
    board.command(wire.KEYS, json.loads(body), seq=3)
    board.advance(0.1)
    assert [f.json()["status"] for f in board.frames() if f.ref == 3] == ["unauthorized"]
    board.command(wire.SIGNED, keys.Signer.load(keydir).sign(wire.KEYS, body.encode(),
                                                                board.unique_id), seq=4)
    board.advance(0.1)
    answer = [f.json() for f in board.frames() if f.ref == 4][0]
    assert answer["ok"] and answer["key_ids"] == [new["key_id"]]
    stored = json.loads((board.root / "keys.json").read_text())
    assert stored == {"ed25519": [new["public_key"]]}


def test_cli_keys_and_snippet_usage_errors(tmp_path, capsys):
    assert main(["keys", "generate", "--out", str(tmp_path / "k"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert main(["keys", "export", "--keys", str(tmp_path / "k")]) == 0
    assert capsys.readouterr().out.strip() == out["public_key"]
    assert main(["keys", "export", "--keys", str(tmp_path / "k"), "--format", "board"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ed25519": [out["public_key"]]}
    assert main(["keys", "generate", "--out", str(tmp_path / "k")]) == 2      # no overwrite
    assert main(["snippet", "--seq", "3", "--reason", "r", "--keys", str(tmp_path / "nokeys"),
                 "--store", str(tmp_path / "none.sqlite")]) == 2
    assert main(["snippet", "--event", "1", "--reason", "r", "--keys", str(tmp_path / "k"),
                 "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "needs the store" in capsys.readouterr().err
    # a port that cannot be opened: failed, and still on record
    assert main(["snippet", "--sensor", "S9", "--seq", "4", "--port", str(tmp_path / "nodev"),
                 "--keys", str(tmp_path / "k"), "--out", str(tmp_path / "o"),
                 "--store", str(tmp_path / "none.sqlite")]) == 1
    err = capsys.readouterr().err
    assert "no --reason" in err and "cannot open" in err
    (rec,) = snippet.AuditLog(tmp_path / "o" / "audit.jsonl").records()
    assert rec["status"] == "failed" and rec["sensor_id"] == "S9" and rec["reason"] is None
    assert main(["snippet", "--check-audit", "--out", str(tmp_path / "o"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["intact"] is True
    log = tmp_path / "o" / "audit.jsonl"
    snippet.AuditLog(log).append({"status": "x"})
    log.write_text(log.read_text().replace('"S9"', '"S8"'))           # an edited record
    assert main(["snippet", "--check-audit", "--out", str(tmp_path / "o")]) == 1
    assert "chain broken at record 1" in capsys.readouterr().out


def _provisioned_sensor(name, tmp_path, keydir):
    """A virtual sensor with this test's key provisioned before boot; its default card holds the ring."""
    from shotline.virtual import VirtualSensor

    root = tmp_path / "vs"
    root.mkdir()
    (root / "keys.json").write_text(json.dumps({"ed25519": [keys.load_public(keydir).hex()]}))
    vs = VirtualSensor(name, root, folder=tmp_path / "ports", speed=8.0)
    assert vs.board.privacy is not None and (root / "sdcard.img").exists()
    return vs


def _wait_for_triggers(vs, n, timeout_s=20.0):
    """Seqs of the board's un-acked triggers once it holds at least ``n`` (or at the timeout)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        with vs._lock:
            pending = vs.board.app.outbox.pending()
        if len(pending) >= n or time.monotonic() > deadline:
            return pending
        time.sleep(0.1)


def test_cli_snippet_over_a_pty_from_a_virtual_sensor(tmp_path, keydir, capsys):
    """`shotline snippet --sensor --seq --port` against the real firmware on a pty."""
    vs = _provisioned_sensor("V1", tmp_path, keydir)
    with vs:
        pending = _wait_for_triggers(vs, 9)
        seq = pending[3]                   # onset 3.5 s: a full window
        rc = main(["snippet", "--sensor", "V1", "--seq", str(seq), "--port", vs.path,
                   "--reason", "pty test", "--keys", str(keydir), "--out", str(tmp_path / "out"),
                   "--store", str(tmp_path / "absent.sqlite"), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    rec = json.loads(out.out.splitlines()[-1])
    assert rec["status"] == "ok" and rec["n_samples"] == 6 * RATE_HZ and rec["reason"] == "pty test"
    data, rate = sf.read(rec["path"], dtype="int16")
    assert rate == RATE_HZ and len(data) == 6 * RATE_HZ and np.abs(data).max() > 10000
    assert snippet.AuditLog(tmp_path / "out" / "audit.jsonl").verify() is None


def test_cli_snippet_by_event_from_the_store(tmp_path, keydir, capsys):
    """`shotline snippet --event ID`: triggers and port from the store, snippet recorded there."""
    import time

    from shotline.store import Store

    vs = _provisioned_sensor("V2", tmp_path, keydir)
    db = tmp_path / "store.sqlite"
    with vs:
        pending = _wait_for_triggers(vs, 9)
        seq = pending[-5]
        with Store(db) as store:
            store.upsert_sensor("V2", port=vs.path)
            (tid, _), = store.insert_triggers([{"sensor_id": "V2", "seq": seq,
                                                "onset_utc_s": time.time()}])
            event_id = store.insert_event({"t_emit_utc_s": time.time()}, [tid])
        rc = main(["snippet", "--event", str(event_id), "--store", str(db), "--reason", "review",
                   "--keys", str(keydir), "--out", str(tmp_path / "out"), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    rec = json.loads(out.out.splitlines()[-1])
    assert rec["status"] == "ok" and rec["event_id"] == event_id and rec["sensor_id"] == "V2"
    with Store(db, readonly=True) as store:
        rows = store.query("SELECT sensor_id, seq, n_samples, sha256, requested_by FROM snippets")
    assert rows == [{"sensor_id": "V2", "seq": seq, "n_samples": 6 * RATE_HZ,
                     "sha256": rec["sha256"], "requested_by": rec["user"]}]
