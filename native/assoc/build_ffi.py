"""cffi API-mode build of the association source search: the module ``shotline._assoc``.

Named in setup.py's ``cffi_modules``; also runnable directly
(``python native/assoc/build_ffi.py``) to compile in place for development.
"""
import re
import shutil
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _cdef():
    """search.h's prototypes (its size macros take arguments, which cffi cannot parse)."""
    text = re.sub(r"/\*.*?\*/", "", (HERE / "search.h").read_text(), flags=re.S)
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "shotline._assoc",
    '#include "search.h"',
    sources=[str(HERE / "search.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-std=c99", "-O2"],
    libraries=["m"],
)

if __name__ == "__main__":
    tmp = HERE.parent.parent / "build" / "cffi_assoc"
    built = Path(ffibuilder.compile(tmpdir=str(tmp), verbose=False))   # shotline/_assoc.*.so
    shutil.copy(built, HERE.parent.parent / "host" / "shotline" / built.name)
