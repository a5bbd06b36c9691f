"""cffi API-mode build of the association kernels (source search, least-squares fix): ``shotline._assoc``.

Named in setup.py's ``cffi_modules``; also runnable directly
(``python native/assoc/build_ffi.py``) to compile in place for development.
"""
import os
import re
import shutil
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


HEADERS = ("search.h", "fit.h")


def _cdef():
    """The headers' prototypes (search.h's size macros take arguments, which cffi cannot parse)."""
    text = re.sub(r"/\*.*?\*/", "", "".join((HERE / h).read_text() for h in HEADERS), flags=re.S)
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "shotline._assoc",
    "".join(f'#include "{h}"\n' for h in HEADERS),
    sources=[str(HERE / "search.c"), str(HERE / "fit.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-std=c99", "-O2"],
    libraries=["m"],
)

if __name__ == "__main__":
    tmp = HERE.parent.parent / "build" / "cffi_assoc"
    built = Path(ffibuilder.compile(tmpdir=str(tmp), verbose=False))   # shotline/_assoc.*.so
    target = HERE.parent.parent / "host" / "shotline" / built.name
    shutil.copy(built, target.with_suffix(".new"))
    os.replace(target.with_suffix(".new"), target)     # a new file: a running process keeps the old one
