"""cffi API-mode build of the Ed25519 verifier: the module ``shotline._verify``.

Compiles ``native/verify.c`` with the vendored Monocypher 4.0.3 and libsodium
1.0.18 SHA-512 (``native/monocypher/``, see ``SOURCE.md``).  Named in setup.py's
``cffi_modules``; also runnable directly (``python native/build_ffi_verify.py``)
to compile in place for development.
"""
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ("verify.c", "monocypher/monocypher.c", "monocypher/sha512/hash_sha512_cp.c")
INCLUDE_DIRS = (".", "monocypher/sha512/include")
# CONFIGURED=1: libsodium's headers are used outside its autoconf build, on purpose.
DEFINES = [("CONFIGURED", "1")]


def _cdef():
    """verify.h with its ``#define VERIFY_*`` constants left for the compiler to fill in."""
    text = re.sub(r"/\*.*?\*/", "", (HERE / "verify.h").read_text(), flags=re.S)
    lines = []
    for line in text.splitlines():
        if line.startswith("#define VERIFY_"):
            lines.append("#define %s ..." % line.split()[1])
        elif not line.startswith("#"):
            lines.append(re.sub(r"\[VERIFY_\w+\]", "[]", line))
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "shotline._verify",
    '#include "verify.h"',
    sources=[str(HERE / s) for s in SOURCES],
    include_dirs=[str(HERE / d) for d in INCLUDE_DIRS],
    define_macros=DEFINES,
    extra_compile_args=["-std=c99", "-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent / "build" / "cffi"), verbose=False)
