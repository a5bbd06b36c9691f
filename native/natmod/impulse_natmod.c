/*
 * MicroPython native-module binding of the impulse detector (native/impulse.c).
 * The only file that sees MicroPython headers; the detector C stays portable.
 *
 *   import impulse
 *   det = impulse.Detector(config)      # config: the int32 fields from
 *                                       # shotline_fw.detconfig.config(rate)
 *   n = det.process(samples, out)       # samples: array('h'); out: array('q')
 *   det.dropped(); det.reset()
 *   impulse.convert(raw, dst, shift)    # I2S 32-bit words -> int16, in place
 *
 * process() writes each completed trigger as RAW_N int64 values into the
 * caller's preallocated out (at most len(out) // RAW_N triggers, and at most
 * MAX_OUT per call), in shotline_fw.detector.RAW_ORDER, and returns n.  It
 * allocates nothing.  No division anywhere (Cortex-M0+ has no divider).
 */
#include "py/dynruntime.h"

#include "impulse.h"

#define RAW_N 15
#define MAX_OUT 8

/* impulse.c copies structs; a native module has no libc: use the firmware's. */
#undef memcpy
#undef memset
void *memcpy(void *dst, const void *src, size_t n) {
    return mp_fun_table.memmove_(dst, src, n);
}
void *memset(void *s, int c, size_t n) {
    return mp_fun_table.memset_(s, c, n);
}

/* The config is filled as a flat int32 array: fail the build if that breaks. */
typedef char impulse_config_is_flat[
    sizeof(impulse_config_t) == IMPULSE_CONFIG_FIELDS * sizeof(int32_t) ? 1 : -1];

typedef struct _detector_obj_t {
    mp_obj_base_t base;
    impulse_state_t state;
} detector_obj_t;

mp_obj_full_type_t detector_type;

static mp_obj_t detector_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw,
                                  const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 1, 1, false);
    size_t len;
    mp_obj_t *items;
    mp_obj_get_array(args[0], &len, &items);
    if (len != IMPULSE_CONFIG_FIELDS) {
        mp_raise_ValueError(MP_ERROR_TEXT("config must have IMPULSE_CONFIG_FIELDS integers"));
    }
    impulse_config_t cfg;
    int32_t *field = (int32_t *)&cfg;   /* all int32_t, in declaration order */
    for (size_t i = 0; i < IMPULSE_CONFIG_FIELDS; i++) {
        field[i] = (int32_t)mp_obj_get_int(items[i]);
    }
    detector_obj_t *self = mp_obj_malloc(detector_obj_t, type);
    if (impulse_init(&self->state, &cfg) != IMPULSE_OK) {
        mp_raise_ValueError(MP_ERROR_TEXT("detector configuration rejected"));
    }
    return MP_OBJ_FROM_PTR(self);
}

static mp_obj_t detector_process(mp_obj_t self_in, mp_obj_t samples_in, mp_obj_t out_in) {
    detector_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_buffer_info_t samples, out;
    mp_get_buffer_raise(samples_in, &samples, MP_BUFFER_READ);
    mp_get_buffer_raise(out_in, &out, MP_BUFFER_WRITE);
    if (samples.typecode != 'h' || out.typecode != 'q') {
        mp_raise_TypeError(MP_ERROR_TEXT("samples must be array('h') and out array('q')"));
    }
    size_t max_out = 0;
    while (max_out < MAX_OUT && (max_out + 1) * RAW_N * sizeof(int64_t) <= out.len) {
        max_out++;
    }
    if (max_out == 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("out holds no trigger"));
    }
    impulse_trigger_t trig[MAX_OUT];
    size_t n = impulse_process(&self->state, (const int16_t *)samples.buf, samples.len >> 1,
                               trig, max_out);
    int64_t *o = (int64_t *)out.buf;
    for (size_t i = 0; i < n; i++, o += RAW_N) {
        const impulse_trigger_t *t = &trig[i];
        o[0] = t->onset_sample;
        o[1] = t->trigger_sample;
        o[2] = t->peak_sample;
        o[3] = (int64_t)t->band_energy[0];
        o[4] = (int64_t)t->band_energy[1];
        o[5] = (int64_t)t->band_energy[2];
        o[6] = t->onset_frac_q16;
        o[7] = t->peak_abs;
        o[8] = t->noise_q16;
        o[9] = t->sta_peak_q16;
        o[10] = t->sta_trigger_q16;
        o[11] = t->width_n;
        o[12] = t->decay_n;
        o[13] = t->measure_n;
        o[14] = t->clipped;
    }
    return MP_OBJ_NEW_SMALL_INT(n);
}
static MP_DEFINE_CONST_FUN_OBJ_3(detector_process_obj, detector_process);

static mp_obj_t detector_dropped(mp_obj_t self_in) {
    detector_obj_t *self = MP_OBJ_TO_PTR(self_in);
    return mp_obj_new_int_from_uint(impulse_dropped(&self->state));
}
static MP_DEFINE_CONST_FUN_OBJ_1(detector_dropped_obj, detector_dropped);

static mp_obj_t detector_reset(mp_obj_t self_in) {
    detector_obj_t *self = MP_OBJ_TO_PTR(self_in);
    impulse_reset(&self->state);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(detector_reset_obj, detector_reset);

/* int16 = clamp(word >> shift) for each 32-bit I2S word of raw (24-bit samples
 * left-justified, as the INMP441 sends them); dst: array('h') of len(raw) / 4. */
static mp_obj_t impulse_convert(mp_obj_t raw_in, mp_obj_t dst_in, mp_obj_t shift_in) {
    mp_buffer_info_t raw, dst;
    mp_get_buffer_raise(raw_in, &raw, MP_BUFFER_READ);
    mp_get_buffer_raise(dst_in, &dst, MP_BUFFER_WRITE);
    mp_int_t shift = mp_obj_get_int(shift_in);
    if (shift < 8 || shift > 16 || dst.len < (raw.len >> 1)) {
        mp_raise_ValueError(MP_ERROR_TEXT("shift 8..16, dst len(raw)/4 int16"));
    }
    const int32_t *w = (const int32_t *)raw.buf;
    int16_t *d = (int16_t *)dst.buf;
    size_t n = raw.len >> 2;
    for (size_t i = 0; i < n; i++) {
        int32_t v = w[i] >> shift;
        d[i] = (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(impulse_convert_obj, impulse_convert);

mp_map_elem_t detector_locals_dict_table[3];
static MP_DEFINE_CONST_DICT(detector_locals_dict, detector_locals_dict_table);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY

    detector_type.base.type = (void *)&mp_type_type;
    detector_type.name = MP_QSTR_Detector;
    MP_OBJ_TYPE_SET_SLOT(&detector_type, make_new, detector_make_new, 0);
    detector_locals_dict_table[0] = (mp_map_elem_t){ MP_OBJ_NEW_QSTR(MP_QSTR_process), MP_OBJ_FROM_PTR(&detector_process_obj) };
    detector_locals_dict_table[1] = (mp_map_elem_t){ MP_OBJ_NEW_QSTR(MP_QSTR_dropped), MP_OBJ_FROM_PTR(&detector_dropped_obj) };
    detector_locals_dict_table[2] = (mp_map_elem_t){ MP_OBJ_NEW_QSTR(MP_QSTR_reset), MP_OBJ_FROM_PTR(&detector_reset_obj) };
    MP_OBJ_TYPE_SET_SLOT(&detector_type, locals_dict, (void *)&detector_locals_dict, 1);

    mp_store_global(MP_QSTR_Detector, MP_OBJ_FROM_PTR(&detector_type));
    mp_store_global(MP_QSTR_convert, MP_OBJ_FROM_PTR(&impulse_convert_obj));
    mp_store_global(MP_QSTR_RAW_N, MP_OBJ_NEW_SMALL_INT(RAW_N));
    mp_store_global(MP_QSTR_MAX_OUT, MP_OBJ_NEW_SMALL_INT(MAX_OUT));

    MP_DYNRUNTIME_INIT_EXIT
}
