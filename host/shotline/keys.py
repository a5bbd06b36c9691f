"""Host signing keys: generate, export, and sign commands for the sensors (PyNaCl, Ed25519).

A key directory (``--keys DIR``, ``$SHOTLINE_KEYS``, or
``~/.config/shotline/keys``) holds:

- ``signing.key``   the 32-byte Ed25519 seed as hex, mode 0600 (refused if
  group or others can read it, as ssh does);
- ``signing.pub``   the public key as hex (provision it onto boards);
- ``counter``       the last command counter used (the boards refuse any
  counter not greater than the last one they accepted from this key).

A signed command is ``wire.encode_signed(command, counter, key_id, signature)``
with the signature over ``wire.signed_message(command, counter, key_id, uid)``:
it is bound to the one board whose unique id is ``uid`` (HELLO ``uid``).
Counters are microseconds since the Unix epoch (at least last + 1), so a
fresh key directory restored from backup still moves forward.

Example::

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> info = generate(d)
    >>> signer = Signer.load(d)
    >>> body = signer.sign(wire.SNIPPET, b'{"trigger_seq": 3}', "e66138528334")
    >>> wire.decode_signed(body)[2] == signer.key_id
    True
"""
import fcntl
import os
import time
from pathlib import Path

from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.signing import SigningKey

from shotline_fw import auth, wire

PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"
COUNTER_NAME = "counter"


class KeyFileError(Exception):
    """A key directory or key file that cannot be used (message says why)."""


def default_dir():
    """``$SHOTLINE_KEYS`` or ``~/.config/shotline/keys``."""
    env = os.environ.get("SHOTLINE_KEYS")
    return Path(env) if env else Path.home() / ".config" / "shotline" / "keys"


def check_public_key(public_key):
    """Raise KeyFileError unless ``public_key`` is a usable Ed25519 key (32 bytes, on the
    curve, not of small order: the board's cofactored check would accept forgeries)."""
    if len(public_key) != 32 or not crypto_core_ed25519_is_valid_point(bytes(public_key)):
        raise KeyFileError("not a valid Ed25519 public key (wrong length, off the curve or small order)")


def generate(out_dir=None, *, force=False):
    """Create a key pair in ``out_dir``; returns ``{"key_id", "public_key", "private_key_path",
    "public_key_path"}``.  Refuses to overwrite an existing private key unless ``force``."""
    d = Path(out_dir) if out_dir else default_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    priv = d / PRIVATE_NAME
    if priv.exists() and not force:
        raise KeyFileError(f"{priv} exists; refusing to overwrite a signing key (use --force)")
    sk = SigningKey.generate()
    pk = bytes(sk.verify_key)
    check_public_key(pk)
    tmp = d / (PRIVATE_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (bytes(sk).hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, priv)
    (d / PUBLIC_NAME).write_text(pk.hex() + "\n")
    (d / COUNTER_NAME).unlink(missing_ok=True)
    return {"key_id": auth.key_id_of(pk).hex(), "public_key": pk.hex(),
            "private_key_path": str(priv), "public_key_path": str(d / PUBLIC_NAME)}


def load_public(key_dir=None):
    """The public key (32 bytes) of a key directory."""
    path = Path(key_dir or default_dir()) / PUBLIC_NAME
    try:
        pk = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no public key (run `shotline keys generate`)") from None
    except ValueError:
        raise KeyFileError(f"{path}: not a hex public key") from None
    check_public_key(pk)
    return pk


def export(key_dir=None):
    """Provisioning record for the key: ``{"key_id": hex16, "public_key": hex64}``."""
    pk = load_public(key_dir)
    return {"key_id": auth.key_id_of(pk).hex(), "public_key": pk.hex()}


def _load_signing_key(path):
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no signing key (run `shotline keys generate`)") from None
    if st.st_mode & 0o077:
        raise KeyFileError(f"{path}: permissions {st.st_mode & 0o777:04o} are too open; "
                        f"the private key must be 0600 (chmod 600 {path})")
    try:
        seed = bytes.fromhex(path.read_text().strip())
        if len(seed) != 32:
            raise ValueError
    except ValueError:
        raise KeyFileError(f"{path}: not a 32-byte hex Ed25519 seed") from None
    return SigningKey(seed)


class Signer:
    """Signs commands with one key directory's private key and counter."""

    def __init__(self, signing_key, counter_path):
        self._sk = signing_key
        self.public_key = bytes(signing_key.verify_key)
        self.key_id = auth.key_id_of(self.public_key)
        self.counter_path = Path(counter_path)

    @classmethod
    def load(cls, key_dir=None):
        d = Path(key_dir or default_dir())
        return cls(_load_signing_key(d / PRIVATE_NAME), d / COUNTER_NAME)

    def next_counter(self):
        """A counter greater than every one this key directory used before (file-locked)."""
        fd = os.open(self.counter_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.read(fd, 64).decode().strip()
            last = int(text) if text else 0
            counter = max(last + 1, time.time_ns() // 1000)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, b"%d\n" % counter)
            os.fsync(fd)
            return counter
        finally:
            os.close(fd)

    def sign(self, msg_type, body, uid, counter=None):
        """SIGNED envelope body for command ``msg_type`` with ``body`` (bytes), valid only
        on the board whose unique id is ``uid`` (bytes, or hex as in its HELLO)."""
        uid = bytes.fromhex(uid) if isinstance(uid, str) else bytes(uid)
        command = wire.command_bytes(msg_type, body)
        counter = self.next_counter() if counter is None else counter
        sig = self._sk.sign(wire.signed_message(command, counter, self.key_id, uid)).signature
        return wire.encode_signed(command, counter, self.key_id, sig)
