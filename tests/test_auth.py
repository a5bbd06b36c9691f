"""Signed-command policy (firmware/shotline_fw/auth.py) with real Ed25519 keys."""
import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from shotline_fw import auth, wire

HERE = Path(__file__).resolve().parent


def signer(seed=1):
    return SigningKey(bytes([seed]) * 32)


UID = bytes.fromhex("e6613852834a2b21")     # the board under test
OTHER_UID = bytes.fromhex("e6613852834a2b22")


def envelope(sk, msg_type, body, counter, uid=UID):
    """(command, counter, key_id, signature, uid) as the board decodes them, signed for ``uid``
    and checked by board UID."""
    command = wire.command_bytes(msg_type, json.dumps(body).encode())
    key_id = auth.key_id_of(bytes(sk.verify_key))
    sig = sk.sign(wire.signed_message(command, counter, key_id, uid)).signature
    body = wire.encode_signed(command, counter, key_id, sig)
    return wire.decode_signed(body) + (UID,)


@pytest.fixture
def board():
    a, b = signer(1), signer(2)
    authz = auth.Authorizer([bytes(a.verify_key), bytes(b.verify_key)], auth.default_verifier())
    return authz, a, b


def test_default_verifier_is_the_native_build():
    verify = auth.default_verifier()
    assert verify is not None and verify.__module__ == "shotline_fw.auth"


def test_valid_signed_command_is_accepted(board):
    authz, a, _ = board
    assert authz.check(*envelope(a, wire.SNIPPET, {"trigger_seq": 5}, 1)) == (True, "ok")
    assert authz.counts["ok"] == 1


def test_a_command_signed_for_another_board_is_refused(board):
    """Binding to the board uid: a frame captured on board A's link does not run on B."""
    authz_b, a, _ = board                                   # this authorizer is board UID
    for_other = envelope(a, wire.REBOOT, {}, 5, uid=OTHER_UID)
    assert authz_b.check(*for_other) == (False, "bad_signature")
    assert authz_b.counts["bad_signature"] == 1 and authz_b.last_counter(for_other[2]) == -1
    # board OTHER_UID (same key) accepts it; and UID still accepts its own, lower counter
    other = auth.Authorizer([bytes(a.verify_key)], auth.default_verifier())
    assert other.check(*for_other[:4], OTHER_UID) == (True, "ok")
    assert authz_b.check(*envelope(a, wire.REBOOT, {}, 4)) == (True, "ok")
    with pytest.raises(wire.WireError):
        wire.signed_message(b"\x42{}", 1, b"k" * 8, b"")


def test_replay_and_old_counters_are_refused_and_counted(board):
    authz, a, b = board
    first = envelope(a, wire.SNIPPET, {"trigger_seq": 5}, 10)
    assert authz.check(*first)[0]
    assert authz.check(*first) == (False, "replayed")
    assert authz.check(*envelope(a, wire.SNIPPET, {"trigger_seq": 6}, 9)) == (False, "replayed")
    assert authz.check(*envelope(a, wire.SNIPPET, {"trigger_seq": 6}, 11)) == (True, "ok")
    # counters are per key: the other host's key starts on its own
    assert authz.check(*envelope(b, wire.SNIPPET, {"trigger_seq": 6}, 1)) == (True, "ok")
    assert authz.counts["replayed"] == 2 and authz.counts["ok"] == 3


def test_tampering_is_refused(board):
    authz, a, _ = board
    command, counter, key_id, sig, _ = envelope(a, wire.SNIPPET, {"trigger_seq": 5}, 3)
    changed = command.replace(b"5", b"6")
    assert authz.check(changed, counter, key_id, sig, UID) == (False, "bad_signature")
    assert authz.check(command, counter + 1, key_id, sig, UID) == (False, "bad_signature")
    bad = bytearray(sig)
    bad[40] ^= 0x10
    assert authz.check(command, counter, key_id, bytes(bad), UID) == (False, "bad_signature")
    # a valid signature by a key that is not provisioned
    stranger = envelope(signer(9), wire.SNIPPET, {"trigger_seq": 5}, 3)
    assert authz.check(*stranger) == (False, "unknown_key")
    # an authorised key id with a stranger's signature
    c, n, _, s, _ = stranger
    assert authz.check(c, n, key_id, s, UID) == (False, "bad_signature")
    assert authz.counts["bad_signature"] == 4 and authz.counts["unknown_key"] == 1
    # after all that, the genuine command still runs once
    assert authz.check(command, counter, key_id, sig, UID) == (True, "ok")


def test_malformed_too_long_unsigned_and_no_verifier(board):
    authz, a, _ = board
    command, counter, key_id, sig, _ = envelope(a, wire.CONFIG_SET, {"config": {}}, 1)
    assert authz.check(command, counter, key_id, sig[:63], UID) == (False, "malformed")
    assert authz.check(command, -1, key_id, sig, UID) == (False, "malformed")
    assert authz.check(b"", counter, key_id, sig, UID) == (False, "malformed")
    huge = envelope(a, wire.CONFIG_SET, {"config": {"x": "y" * 1100}}, 2)
    assert authz.check(*huge) == (False, "too_long")
    assert authz.refuse("unsigned") == (False, "unsigned")
    closed = auth.Authorizer([bytes(a.verify_key)], None)
    assert closed.check(command, counter, key_id, sig, UID) == (False, "no_verifier")
    assert authz.counts["malformed"] == 3 and authz.counts["too_long"] == 1
    assert authz.counts["unsigned"] == 1 and closed.counts["no_verifier"] == 1


def test_counters_survive_a_reboot(tmp_path):
    a = signer(3)
    path = str(tmp_path / "auth_counters.json")
    one = auth.Authorizer([bytes(a.verify_key)], auth.default_verifier(), auth.CounterFile(path))
    msg = envelope(a, wire.REBOOT, {}, 41)
    assert one.check(*msg)[0]
    rebooted = auth.Authorizer([bytes(a.verify_key)], auth.default_verifier(),
                               auth.CounterFile(path))
    assert rebooted.check(*msg) == (False, "replayed")
    assert rebooted.last_counter(auth.key_id_of(bytes(a.verify_key))) == 41
    assert not (tmp_path / "auth_counters.json.tmp").exists()


def test_a_counter_that_cannot_be_stored_refuses_the_command():
    class Broken(auth.MemoryCounters):
        def save(self, table):
            raise OSError(28)

    a = signer(4)
    authz = auth.Authorizer([bytes(a.verify_key)], auth.default_verifier(), Broken())
    assert authz.check(*envelope(a, wire.SNIPPET, {"trigger_seq": 1}, 1)) == \
        (False, "counter_store_error")
    assert authz.last_counter(auth.key_id_of(bytes(a.verify_key))) == -1


def test_an_unreadable_counter_table_fails_closed(tmp_path):
    a = signer(4)
    path = tmp_path / "auth_counters.json"
    path.write_text("{not json")
    authz = auth.Authorizer([bytes(a.verify_key)], auth.default_verifier(),
                            auth.CounterFile(str(path)))
    assert authz.check(*envelope(a, wire.SNIPPET, {"trigger_seq": 1}, 1)) == \
        (False, "counter_store_error")


def test_key_documents(tmp_path):
    a, b = signer(5), signer(6)
    ka, kb = bytes(a.verify_key), bytes(b.verify_key)
    assert auth.parse_keys({"ed25519": [ka.hex()]}) == [ka]
    assert auth.parse_keys({"keys": [{"key_id": ka[:8].hex(), "public_key": ka.hex()}]}) == [ka]
    for bad in ({}, {"ed25519": []}, {"ed25519": ["zz"]}, {"ed25519": [ka.hex()[:-2]]},
                {"keys": [{"key_id": kb[:8].hex(), "public_key": ka.hex()}]}, []):
        with pytest.raises(ValueError):
            auth.parse_keys(bad)
    path = str(tmp_path / "keys.json")
    auth.save_keys(path, [ka, kb])
    assert auth.load_keys(path) == [ka, kb]
    authz = auth.Authorizer([ka], auth.default_verifier())
    with pytest.raises(ValueError):
        authz.set_keys([])
    authz.set_keys([kb])
    assert authz.key_ids == [kb[:8].hex()]
    assert authz.check(*envelope(a, wire.SNIPPET, {"trigger_seq": 1}, 1)) == (False, "unknown_key")


@pytest.mark.micropython
def test_policy_under_real_micropython(micropython):
    """The same policy on the MicroPython interpreter, with real signatures made by
    PyNaCl and an injected verifier that accepts exactly the triples PyNaCl signed."""
    a, stranger = signer(7), signer(8)
    key = bytes(a.verify_key)
    good = []
    for counter, seq in ((5, 1), (6, 2)):
        command, n, key_id, sig, _ = envelope(a, wire.SNIPPET, {"trigger_seq": seq}, counter)
        good.append((command.hex(), n, key_id.hex(), sig.hex()))
    valid = [(bytes.fromhex(s) + key + wire.signed_message(bytes.fromhex(c), n, bytes.fromhex(k), UID)).hex()
             for c, n, k, s in good]
    sc, sn, sk, ss, _ = envelope(stranger, wire.SNIPPET, {"trigger_seq": 1}, 7)
    script = f"""
import binascii
from shotline_fw import auth
u = binascii.unhexlify
VALID = set(u(x) for x in {valid!r})
def verify(sig, key, msg):
    return bytes(sig) + bytes(key) + bytes(msg) in VALID
GOOD = {good!r}
authz = auth.Authorizer([u({key.hex()!r})], verify)
UID = u({UID.hex()!r})
def env(i):
    c, n, k, s = GOOD[i]
    return u(c), n, u(k), u(s), UID
assert authz.check(*env(0)) == (True, "ok")
assert authz.check(*env(0)) == (False, "replayed")
assert authz.check(*env(1)) == (True, "ok")
c, n, k, s, _ = env(1)
assert authz.check(c, n, k, s, u({OTHER_UID.hex()!r})) == (False, "bad_signature")
assert authz.check(c, n + 1, k, s, UID) == (False, "bad_signature")
assert authz.check(u({sc.hex()!r}), {sn}, u({sk.hex()!r}), u({ss.hex()!r}), UID) == (False, "unknown_key")
assert auth.Authorizer([u({key.hex()!r})], None).check(*env(1)) == (False, "no_verifier")
assert authz.counts["ok"] == 2 and authz.counts["replayed"] == 1
print("ok")
"""
    out = micropython(script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
