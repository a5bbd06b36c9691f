"""cffi API-mode build of the impulse detector: the module ``shotline._impulse``.

Named in setup.py's ``cffi_modules``; also runnable directly
(``python native/build_ffi.py``) to compile in place for development.
"""
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _cdef():
    """impulse.h with the preprocessor lines cffi cannot parse reduced to constants."""
    text = (HERE / "impulse.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = []
    for line in text.splitlines():
        if line.startswith("#define IMPULSE_") and not line.startswith("#define IMPULSE_H"):
            lines.append("#define %s ..." % line.split()[1])
        elif line.startswith("#") or line.startswith("extern") or line.strip() == "}":
            continue
        else:
            lines.append(line.replace("[IMPULSE_RING_N]", "[...]"))
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "shotline._impulse",
    '#include "impulse.h"',
    sources=[str(HERE / "impulse.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-std=c99", "-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent / "build" / "cffi"), verbose=False)
