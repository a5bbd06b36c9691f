"""Impulse detection on the host: the native fixed-point C detector through cffi.

The same C (``native/impulse.c``) runs on the sensor as a MicroPython native
module; its configuration comes from ``shotline_fw.detconfig`` on both sides,
and so does the conversion of the integer trigger to named features.

>>> det = ImpulseDetector(16000)
>>> triggers = det.process(np.zeros(16000, dtype=np.int16))   # any block size
>>> triggers
[]
"""
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shotline_fw import detconfig

try:
    from shotline._impulse import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "the native detector shotline._impulse is not built: run `pip install -e .` "
        "(or `python setup.py build_ext --inplace`)"
    ) from exc


@dataclass(frozen=True)
class Trigger:
    """One detected impulse.  Times in seconds from the first sample of the stream.

    Levels in dB re full scale (32768); see ``shotline_fw.detconfig.features``.
    Bands (one-pole crossovers): low = high-pass corner (200 Hz) to 500 Hz,
    mid = 500 Hz to 2 kHz, high = 2 to 4 kHz (defaults; ``band_edges_hz``).
    """

    onset_sample: int       # sample index of the onset (64-bit)
    onset_frac: float       # sub-sample fraction 0..1
    onset_s: float          # (onset_sample + onset_frac) / sample_rate_hz
    peak_dbfs: float        # max |high-passed sample| re 32768
    noise_dbfs: float       # pre-trigger background, RMS re 32768
    snr_db: float           # peak_dbfs - noise_dbfs
    rise_time_s: float      # onset to peak
    width_s: float          # onset until the envelope falls below -6 dB of its peak
    decay_s: float          # envelope peak to -20 dB
    band_low_db: float      # mean-square level in the low band over the measure window, dBFS
    band_mid_db: float      # ... mid band
    band_high_db: float     # ... high band
    sta_lta: float          # max STA/LTA over the measure window (linear)
    trigger_s: float        # when STA/LTA crossed the ratio
    clipped: bool           # input reached full scale during the pulse

    def to_dict(self):
        return asdict(self)


class AudioFileError(ValueError):
    """An audio file that cannot be read (missing, malformed, unsupported rate)."""


def native_config(sample_rate_hz, **params):
    """The C ``impulse_config_t`` for this rate and parameters (ValueError if invalid)."""
    values = detconfig.config(sample_rate_hz, **params)
    cfg = ffi.new("impulse_config_t *")
    for name, value in zip(detconfig.FIELDS, values):
        setattr(cfg, name, value)
    if lib.impulse_config_check(cfg) != lib.IMPULSE_OK:
        raise ValueError("detector configuration rejected by the C check: %r" % (params,))
    return cfg


def _raw(t):
    return {name: (tuple(t.band_energy) if name == "band_energy" else getattr(t, name))
            for name in detconfig.RAW_FIELDS}


class ImpulseDetector:
    """Streaming impulse detector for one int16 mono channel.

    ``sample_rate_hz`` 8000..48000; keyword parameters as in
    ``shotline_fw.detconfig.DEFAULTS`` (``ratio_db``, ``floor_dbfs``,
    ``holdoff_s``...).  Feed blocks of any size with ``process``; a trigger is
    returned once its measure window (``measure_s``) is complete.
    """

    def __init__(self, sample_rate_hz, **params):
        self.sample_rate_hz = detconfig.check_rate(sample_rate_hz)
        self.params = detconfig.params(**params)
        self._cfg = native_config(self.sample_rate_hz, **params)
        self._state = ffi.new("impulse_state_t *")
        if lib.impulse_init(self._state, self._cfg) != lib.IMPULSE_OK:
            raise ValueError("impulse_init rejected the configuration")
        self._post_n = self._cfg.post_n
        self._out_n = 0
        self._out = None

    def reset(self):
        """Start a new stream (sample index 0), same configuration."""
        lib.impulse_reset(self._state)

    @property
    def samples_seen(self):
        return int(self._state.n)

    @property
    def dropped(self):
        return int(lib.impulse_dropped(self._state))

    def process_raw(self, samples):
        """Feed int16 samples (ndarray or a buffer of native-endian int16, as on
        the board); return the completed triggers as raw integer dicts."""
        if isinstance(samples, np.ndarray):
            if samples.dtype != np.int16 or samples.ndim != 1:
                raise TypeError("samples must be a 1-D int16 array, got %s%r"
                                % (samples.dtype, samples.shape))
            if not samples.flags.c_contiguous:
                samples = np.ascontiguousarray(samples)
            buf = samples
        else:
            try:
                mv = memoryview(samples).cast("B")
            except TypeError:
                raise TypeError("samples must be a 1-D int16 array or a buffer of int16, got %s"
                                % type(samples).__name__) from None
            if len(mv) % 2:
                raise ValueError("int16 buffer has an odd number of bytes")
            buf = np.frombuffer(mv, dtype=np.int16)
        n = len(buf)
        max_out = n // self._post_n + 2  # a trigger spans at least post_n samples
        if max_out > self._out_n:
            self._out = ffi.new("impulse_trigger_t[]", max_out)
            self._out_n = max_out
        count = lib.impulse_process(self._state, ffi.from_buffer("int16_t[]", buf), n,
                                    self._out, max_out)
        return [_raw(self._out[i]) for i in range(count)]

    def process(self, samples):
        """Feed int16 samples; return the completed triggers as ``Trigger``."""
        return [Trigger(**detconfig.features(r, self.sample_rate_hz))
                for r in self.process_raw(samples)]


def to_int16(x):
    """Float samples (full scale +-1.0) to int16 with rounding and clipping."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def read_audio(path, block_s=1.0):
    """Yield (sample_rate_hz, int16 block) from a WAV/FLAC file, first channel.

    Integer files come through exactly (int16) or rounded (24/32-bit); float
    files are scaled by 32768 and clipped.  Raises AudioFileError.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioFileError("%s: no such file" % path)
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.SoundFileError) as exc:
        raise AudioFileError("%s: not a readable audio file (%s)" % (path, exc)) from None
    rate = info.samplerate
    try:
        detconfig.check_rate(rate)
    except ValueError as exc:
        raise AudioFileError("%s: %s" % (path, exc)) from None
    block_n = max(1, int(block_s * rate))
    try:
        for block in sf.blocks(str(path), blocksize=block_n, dtype="float64", always_2d=True):
            yield rate, to_int16(block[:, 0])
    except (RuntimeError, sf.SoundFileError) as exc:
        raise AudioFileError("%s: error while decoding (%s)" % (path, exc)) from None


def detect_file(path, **params):
    """All triggers in a WAV/FLAC file (first channel), in order of onset."""
    det = None
    triggers = []
    for rate, block in read_audio(path):
        if det is None:
            det = ImpulseDetector(rate, **params)
        triggers += det.process(block)
    return triggers
