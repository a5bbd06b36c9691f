"""Signed-command authorizer: key store, monotonic counters, replay refusal, counting.

Valid MicroPython and CPython.  The board app calls
``authorizer.check(command, counter, key_id, signature, uid) -> (ok, reason)``
for every command that arrives in a SIGNED envelope (``wire.decode_signed``),
with ``uid`` its own ``hw.unique_id``.  The signature is Ed25519 over
``wire.signed_message(command, counter, key_id, uid)``, so a frame signed for
another board fails as ``bad_signature``.

Policy, in order (first failure wins, every refusal is counted by reason):

1. ``no_verifier``: no Ed25519 implementation available -> fail closed.
2. ``unknown_key``: ``key_id`` (first 8 bytes of the public key) not provisioned.
3. ``too_long``: the signed message exceeds ``MAX_MESSAGE_BYTES``.
4. ``bad_signature``: the signature does not verify.
5. ``replayed``: ``counter`` is not greater than the last accepted counter of
   that key (counters are per key, so several hosts can hold keys).
6. ``counter_store_error``: the new counter could not be persisted -> refused,
   so a reboot can never re-open a window for replay.

Verification is never done here: ``verify(signature, public_key, message) ->
bool`` is injected.  ``default_verifier()`` picks the vendored Monocypher
build: the natmod ``shotline_verify`` on the board, the cffi module
``shotline._verify`` on CPython.
"""
import json

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from shotline_fw import wire

KEY_BYTES = const(32)
MAX_MESSAGE_BYTES = const(1024)      # = VERIFY_MAX_MESSAGE_BYTES in native/verify.h
_U64_MAX = const(0xFFFFFFFFFFFFFFFF)
REASONS = ("ok", "no_verifier", "unknown_key", "too_long", "bad_signature", "replayed",
           "counter_store_error", "malformed", "unsigned")


def key_id_of(public_key):
    """The 8-byte key id of a 32-byte Ed25519 public key: its first 8 bytes."""
    return bytes(public_key[:wire.KEY_ID_N])


def parse_keys(obj):
    """Public keys (list of 32-byte ``bytes``) from a keys document.

    Accepts the provisioning file ``{"ed25519": [hex, ...]}`` and the KEYS
    command body ``{"keys": [{"key_id": hex16, "public_key": hex64}, ...]}``
    (a stated key_id must match the key).  Raises ValueError when malformed
    or empty (an empty key set would lock the board out for good).
    """
    if not isinstance(obj, dict):
        raise ValueError("keys must be a JSON object")
    out = []
    for item in obj.get("ed25519", ()):
        out.append(_hex_key(item))
    for item in obj.get("keys", ()):
        if not isinstance(item, dict):
            raise ValueError("each key must be an object")
        key = _hex_key(item.get("public_key"))
        if "key_id" in item and _unhex(item["key_id"]) != key_id_of(key):
            raise ValueError("key_id does not match public_key")
        out.append(key)
    if not out:
        raise ValueError("no public keys")
    return out


def _unhex(text):
    import binascii
    try:
        return binascii.unhexlify(text)
    except (ValueError, TypeError):
        raise ValueError("not hex: %r" % (text,))


def _hex_key(text):
    if not isinstance(text, str):
        raise ValueError("a public key must be a hex string")
    key = _unhex(text)
    if len(key) != KEY_BYTES:
        raise ValueError("a public key must be 32 bytes")
    return key


class CounterFile:
    """Last accepted counter per key id, persisted as JSON ``{hex key id: int}``.

    Saved by writing a temporary file and renaming it over the old one, so a
    power cut leaves either the old or the new table, never a torn one."""

    def __init__(self, path):
        self.path = path

    def load(self):
        try:
            with open(self.path) as f:
                d = json.load(f)
        except OSError:
            return {}
        return dict((k, int(v)) for k, v in d.items())

    def save(self, table):
        import os
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(table, f)
        os.rename(tmp, self.path)


class MemoryCounters:
    """Counters kept in RAM only (tests; a host-side simulation)."""

    def __init__(self, table=None):
        self.table = dict(table or {})

    def load(self):
        return dict(self.table)

    def save(self, table):
        self.table = dict(table)


class Authorizer:
    """Checks signed commands against provisioned keys.

    ``keys``: iterable of 32-byte public keys; ``verify``: Ed25519 verifier or
    None (fail closed); ``counters``: ``CounterFile`` / ``MemoryCounters``.
    ``counts``: refusals and acceptances by reason (for health messages).
    """

    def __init__(self, keys, verify, counters=None, allow_empty=False):
        self.verify = verify
        self.counters = counters if counters is not None else MemoryCounters()
        try:
            self._last = self.counters.load()
            self._counters_ok = True
        except (ValueError, TypeError, AttributeError):   # unreadable table: fail closed
            self._last = {}
            self._counters_ok = False
        self.counts = dict((r, 0) for r in REASONS)
        self._keys = {}
        self.set_keys(keys, allow_empty)

    def set_keys(self, keys, allow_empty=False):
        """Replace the authorised keys (KEYS command); counters of kept keys stay.
        ``allow_empty``: a board not provisioned yet (it then refuses every command)."""
        table = {}
        for k in keys:
            k = bytes(k)
            if len(k) != KEY_BYTES:
                raise ValueError("a public key must be 32 bytes")
            table[key_id_of(k)] = k
        if not table and not allow_empty:
            raise ValueError("no public keys")
        self._keys = table

    @property
    def key_ids(self):
        """Hex ids of the authorised keys."""
        return sorted(_hex(k) for k in self._keys)

    def refuse(self, reason):
        """Count a refusal decided elsewhere (``unsigned``, ``malformed``); returns (False, reason)."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        return False, reason

    def check(self, command, counter, key_id, signature, uid):
        """``(True, "ok")`` if the command, signed for board ``uid`` (bytes), may run here,
        else ``(False, reason)``."""
        if self.verify is None:
            return self.refuse("no_verifier")
        if not self._counters_ok:
            return self.refuse("counter_store_error")
        if len(signature) != wire.SIGNATURE_N or not 0 <= counter <= _U64_MAX \
                or len(key_id) != wire.KEY_ID_N or not command \
                or not 0 < len(uid) <= wire.UID_MAX_N:
            return self.refuse("malformed")
        key = self._keys.get(bytes(key_id))
        if key is None:
            return self.refuse("unknown_key")
        message = wire.signed_message(command, counter, key_id, uid)
        if len(message) > MAX_MESSAGE_BYTES:
            return self.refuse("too_long")
        try:
            good = self.verify(bytes(signature), key, message)
        except ValueError:
            good = False
        if not good:
            return self.refuse("bad_signature")
        kid = _hex(key_id)
        if counter <= self._last.get(kid, -1):
            return self.refuse("replayed")
        table = dict(self._last)
        table[kid] = counter
        try:
            self.counters.save(table)
        except OSError:
            return self.refuse("counter_store_error")
        self._last = table
        self.counts["ok"] += 1
        return True, "ok"

    def last_counter(self, key_id):
        """Last accepted counter of ``key_id`` (bytes), or -1."""
        return self._last.get(_hex(key_id), -1)


def _hex(b):
    import binascii
    return binascii.hexlify(bytes(b)).decode()


def load_keys(path):
    """Public keys from a keys file on the board (``{"ed25519": [hex, ...]}``)."""
    with open(path) as f:
        return parse_keys(json.load(f))


def save_keys(path, keys):
    """Write the keys file (temporary file + rename)."""
    import os
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"ed25519": [_hex(k) for k in keys]}, f)
    os.rename(tmp, path)


def default_verifier():
    """The vendored Monocypher Ed25519 verifier for this platform, or None."""
    try:
        import shotline_verify            # natmod on the board
        return shotline_verify.verify
    except ImportError:
        pass
    try:
        from shotline._verify import lib        # cffi build on CPython
    except ImportError:
        return None

    def verify(signature, public_key, message):
        if len(signature) != 64 or len(public_key) != 32:
            raise ValueError("signature must be 64 bytes and key 32 bytes")
        status = lib.verify_ed25519(signature, public_key, message, len(message))
        if status == lib.VERIFY_TOO_LONG:
            raise ValueError("message too long")
        return status == lib.VERIFY_OK
    return verify
