"""The vendored Ed25519 verifier (native/verify.c + Monocypher + SUPERCOP SHA-512)."""
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from nacl.signing import SigningKey

from shotline._verify import lib

NATIVE = Path(__file__).resolve().parent.parent / "native"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wconversion", "-Wdouble-promotion", "-Werror",
          "-DCONFIGURED=1"]
ORDER_L = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 section 7.1, TEST 1-3: (secret seed, public key, message, signature)
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
     "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da0"
     "85ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac1"
     "8ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


def verify(sig, key, msg):
    return lib.verify_ed25519(sig, key, msg, len(msg))


@pytest.mark.parametrize("seed,public,message,signature", RFC8032)
def test_rfc8032_vectors(seed, public, message, signature):
    key, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert bytes(SigningKey(bytes.fromhex(seed)).verify_key) == key
    assert verify(sig, key, msg) == lib.VERIFY_OK
    assert verify(sig, key, msg + b"\0") == lib.VERIFY_BAD_SIGNATURE
    bad = bytearray(sig)
    bad[0] ^= 1
    assert verify(bytes(bad), key, msg) == lib.VERIFY_BAD_SIGNATURE


@settings(max_examples=60, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), msg=st.binary(max_size=300),
       bit=st.integers(min_value=0, max_value=10**6))
def test_agrees_with_pynacl_and_every_bit_matters(seed, msg, bit):
    sk = SigningKey(seed)
    key = bytes(sk.verify_key)
    sig = sk.sign(msg).signature
    assert verify(sig, key, msg) == lib.VERIFY_OK
    for which in ("sig", "key", "msg"):
        s, k, m = bytearray(sig), bytearray(key), bytearray(msg)
        target = {"sig": s, "key": k, "msg": m}[which]
        if not target:
            continue
        i = bit % (8 * len(target))
        target[i // 8] ^= 1 << (i % 8)
        assert verify(bytes(s), bytes(k), bytes(m)) != lib.VERIFY_OK, which


def test_non_canonical_s_is_refused():
    sk = SigningKey(bytes(range(32)))
    msg = b"shotline"
    sig = sk.sign(msg).signature
    s = int.from_bytes(sig[32:], "little") + ORDER_L     # same point equation, S >= L
    forged = sig[:32] + s.to_bytes(32, "little")
    assert verify(forged, bytes(sk.verify_key), msg) == lib.VERIFY_BAD_SIGNATURE


def test_message_length_limit():
    sk = SigningKey(bytes(32))
    ok = bytes(lib.VERIFY_MAX_MESSAGE_BYTES)
    assert verify(sk.sign(ok).signature, bytes(sk.verify_key), ok) == lib.VERIFY_OK
    long = ok + b"x"
    assert verify(sk.sign(long).signature, bytes(sk.verify_key), long) == lib.VERIFY_TOO_LONG


SMALL_ORDER_KEYS = (bytes(32), bytes([1]) + bytes(31), bytes([0xEC]) + b"\xff" * 30 + b"\x7f")


@pytest.mark.parametrize("key", SMALL_ORDER_KEYS)
def test_small_order_keys_are_refused(key):
    # Under a cofactored check these would accept an all-zero signature on anything.
    for sig in (bytes(64), bytes([1]) + bytes(63)):
        assert verify(sig, key, b"any message") == lib.VERIFY_WEAK_KEY


def test_garbage_signatures_never_verify():
    key = bytes(SigningKey(bytes(range(32))).verify_key)
    for sig in (bytes(64), b"\xff" * 64, bytes([1]) + bytes(63)):
        assert verify(sig, key, b"x") == lib.VERIFY_BAD_SIGNATURE
    assert verify(bytes(64), b"\xff" * 32, b"x") != lib.VERIFY_OK


@pytest.mark.parametrize("cc,extra", [("gcc", []),
                                      ("arm-none-eabi-gcc", ["-Os", "-mcpu=cortex-m0plus", "-mthumb"])])
def test_builds_warning_free(tmp_path, cc, extra):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed (make toolchain)")
    jobs = [("verify.c", STRICT), ("monocypher/monocypher.c", STRICT),
            ("monocypher/sha512/hash_sha512_cp.c", STRICT)]
    for src, flags in jobs:
        out = subprocess.run([cc, *flags, *extra, "-I", str(NATIVE), "-I",
                              str(NATIVE / "monocypher" / "sha512" / "include"), "-c", str(NATIVE / src),
                              "-o", str(tmp_path / "x.o")], capture_output=True, text=True)
        assert out.returncode == 0 and not out.stderr, f"{cc} {src}: {out.stderr}"
