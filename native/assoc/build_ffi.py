"""cffi API-mode build of the association kernels (source search, least-squares fix): ``shotline._assoc``.

Named in setup.py's ``cffi_modules`` (``pip install -e .`` builds ``shotline/_assoc.abi3.so``);
also runnable directly (``python native/assoc/build_ffi.py``) to check that it compiles, into
``native/build/cffi_assoc`` (never into the package, where it would shadow the installed build).
"""
import re
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
    ffibuilder.compile(tmpdir=str(HERE.parent / "build" / "cffi_assoc"), verbose=False)
