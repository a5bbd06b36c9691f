"""The natmod binding (native/natmod/impulse_natmod.c) without MicroPython's source.

The real build needs MicroPython's tree (``make natmod MPY_DIR=...``).  Here
the binding is compiled against a minimal stand-in for ``py/dynruntime.h``
(declarations only), with the project's warnings, for the host and for the
Cortex-M0+, which catches drift from ``native/impulse.h`` (field names,
types) and any division helper; and its field order is checked against
``shotline_fw.detector.RAW_ORDER`` and ``detconfig.FIELDS``.
"""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shotline_fw import detconfig
from shotline_fw.detector import MAX_OUT, RAW_N, RAW_ORDER

REPO = Path(__file__).resolve().parents[1]
BINDING = REPO / "native" / "natmod" / "impulse_natmod.c"

MOCK = r"""
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
typedef intptr_t mp_int_t;
typedef uintptr_t mp_uint_t;
typedef void *mp_obj_t;
typedef const void *mp_const_obj_t;
typedef struct _mp_obj_type_t mp_obj_type_t;
typedef struct { const mp_obj_type_t *type; } mp_obj_base_t;
struct _mp_obj_type_t { mp_obj_base_t base; uint16_t flags; uint16_t name; };
typedef struct { mp_obj_base_t base; uint16_t flags; uint16_t name; const void *slots[12]; } mp_obj_full_type_t;
typedef struct { void *buf; size_t len; int typecode; } mp_buffer_info_t;
typedef struct { mp_obj_t key; mp_obj_t value; } mp_map_elem_t;
typedef struct { int unused; } mp_obj_dict_t;
typedef struct { int unused; } mp_obj_fun_bc_t;
typedef struct { int unused; } mp_obj_fun_builtin_fixed_t;
#define MP_BUFFER_READ 1
#define MP_BUFFER_WRITE 2
#define MP_ERROR_TEXT(s) s
#define MP_QSTR_Detector 1
#define MP_QSTR_process 2
#define MP_QSTR_dropped 3
#define MP_QSTR_reset 4
#define MP_QSTR_convert 5
#define MP_QSTR_RAW_N 6
#define MP_QSTR_MAX_OUT 7
struct mp_fun_table_t { void *(*memmove_)(void *, const void *, size_t); void *(*memset_)(void *, int, size_t); };
extern struct mp_fun_table_t mp_fun_table;
extern mp_obj_type_t mp_type_type;
extern mp_obj_t mp_const_none;
void mp_arg_check_num(size_t n_args, size_t n_kw, size_t lo, size_t hi, int kw);
void mp_obj_get_array(mp_obj_t o, size_t *len, mp_obj_t **items);
mp_int_t mp_obj_get_int(mp_obj_t o);
mp_obj_t mp_obj_new_int_from_uint(mp_uint_t v);
void mp_get_buffer_raise(mp_obj_t o, mp_buffer_info_t *b, int flags);
void mp_raise_ValueError(const char *msg) __attribute__((noreturn));
void mp_raise_TypeError(const char *msg) __attribute__((noreturn));
void mp_store_global(int qst, mp_obj_t o);
void *mp_obj_malloc_helper(size_t n, const mp_obj_type_t *t);
#define mp_obj_malloc(st, t) ((st *)mp_obj_malloc_helper(sizeof(st), t))
#define MP_OBJ_FROM_PTR(p) ((mp_obj_t)(p))
#define MP_OBJ_TO_PTR(o) ((void *)(o))
#define MP_OBJ_NEW_SMALL_INT(i) ((mp_obj_t)(((mp_uint_t)(i) << 1) | 1))
#define MP_OBJ_NEW_QSTR(q) ((mp_obj_t)(mp_uint_t)(q))
#define MP_OBJ_TYPE_SET_SLOT(t, name, v, n) ((t)->slots[n] = (const void *)(v))
#define MP_DEFINE_CONST_FUN_OBJ_1(o, f) const mp_obj_fun_builtin_fixed_t o = {(int)sizeof(&f)}
#define MP_DEFINE_CONST_FUN_OBJ_3(o, f) const mp_obj_fun_builtin_fixed_t o = {(int)sizeof(&f)}
#define MP_DEFINE_CONST_DICT(d, t) const mp_obj_dict_t d = {(int)sizeof(t)}
#define MP_DYNRUNTIME_INIT_ENTRY (void)self; (void)n_args; (void)n_kw; (void)args;
#define MP_DYNRUNTIME_INIT_EXIT return mp_const_none;
"""

WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"]


def _compile(tmp_path, cc, flags):
    (tmp_path / "py").mkdir(exist_ok=True)
    (tmp_path / "py" / "dynruntime.h").write_text(MOCK)
    obj = tmp_path / "binding.o"
    out = subprocess.run([cc, *flags, *WARN, "-I", str(tmp_path), "-I", str(REPO / "native"),
                          "-c", str(BINDING), "-o", str(obj)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return obj


def test_binding_compiles_for_the_host(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "a C compiler is needed"
    _compile(tmp_path, cc, ["-O2"])


def test_binding_compiles_for_cortex_m0plus_without_division(tmp_path):
    cc = shutil.which("arm-none-eabi-gcc")
    if cc is None:
        pytest.skip("arm-none-eabi-gcc not installed (make toolchain installs it)")
    obj = _compile(tmp_path, cc, ["-mcpu=cortex-m0plus", "-mthumb", "-Os"])
    undefined = subprocess.run(["arm-none-eabi-nm", "-u", str(obj)], capture_output=True,
                               text=True, check=True).stdout
    assert not re.search(r"__aeabi_\w*div|__aeabi_\w*mod|__aeabi_[fd]", undefined), undefined


def test_binding_field_order_matches_the_python_side():
    src = BINDING.read_text()
    out_fields = re.findall(r"o\[(\d+)\] = (?:\(int64_t\))?t->(\w+)(?:\[(\d)\])?;", src)
    names = []
    for idx, field, band in out_fields:
        names.append(("band_low", "band_mid", "band_high")[int(band)] if band else field)
        assert int(idx) == len(names) - 1
    assert tuple(names) == RAW_ORDER and len(names) == RAW_N
    assert re.search(r"#define RAW_N %d\b" % RAW_N, src)
    assert int(re.search(r"#define MAX_OUT (\d+)", src).group(1)) <= MAX_OUT
    header = (REPO / "native" / "impulse.h").read_text()
    body = header[header.index("typedef struct {"):header.index("} impulse_config_t;")]
    fields = re.findall(r"int32_t (\w+);", body)
    assert fields == list(detconfig.FIELDS)   # the binding copies them in this order
    assert re.search(r"#define IMPULSE_CONFIG_FIELDS %d\b" % len(fields), header)
