"""The detection step: an injected detector engine -> named trigger features.

Valid MicroPython and CPython.  The engine is the C impulse detector: on the
board the native module (``native/natmod``: ``impulse.Detector(config)``), on
the host ``shotline.fakehw.CffiDetector`` over the cffi build.  Both have::

    engine.process(samples, out) -> n   # samples: int16 array; out: array('q')
    engine.dropped() -> int             # triggers lost because out was full

``process`` writes each completed trigger as ``RAW_N`` integers into the
preallocated ``out``, in ``RAW_ORDER`` (``impulse_trigger_t`` field order,
``band_energy`` as three values).  ``detconfig.features`` turns a raw trigger
into the named features (one conversion for board and host).
"""
import array

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from shotline_fw import detconfig

RAW_ORDER = (
    "onset_sample", "trigger_sample", "peak_sample", "band_low", "band_mid", "band_high",
    "onset_frac_q16", "peak_abs", "noise_q16", "sta_peak_q16", "sta_trigger_q16",
    "width_n", "decay_n", "measure_n", "clipped",
)
RAW_N = const(15)
MAX_OUT = const(8)          # triggers per process() call (a block holds at most a few)
MAX_GAPS = const(8)         # recent capture gaps remembered to map indices from before them
_INDEX_KEYS = ("onset_sample", "trigger_sample", "peak_sample")


def unpack(out, i):
    """Raw trigger ``i`` of ``out`` as a dict keyed by ``detconfig.RAW_FIELDS``."""
    b = i * RAW_N
    raw = {}
    for k in range(RAW_N):
        raw[RAW_ORDER[k]] = out[b + k]
    raw["band_energy"] = (raw.pop("band_low"), raw.pop("band_mid"), raw.pop("band_high"))
    return raw


class Detection:
    """Feeds blocks to the engine; yields named features with board sample indices.

    The engine sees the captured blocks back to back, so its sample index
    falls behind the board's by every capture gap (I2S overrun).  Each gap is
    remembered as (engine index where it was spliced in, offset before it):
    a trigger completed after a gap but with onset/peak before it maps those
    indices with the offset that held when they were captured.
    """

    def __init__(self, engine, sample_rate_hz):
        self.engine = engine
        self.rate_hz = sample_rate_hz
        self._out = array.array("q", bytes(8 * RAW_N * MAX_OUT))
        self._fed = 0          # samples given to the engine
        self._offset = 0       # board sample index - engine sample index (after the last gap)
        self._gap_at = array.array("q", bytes(8 * MAX_GAPS))       # engine index of each gap
        self._gap_before = array.array("q", bytes(8 * MAX_GAPS))   # offset before that gap
        self._n_gaps = 0       # gaps recorded (ring of MAX_GAPS)
        self.gap_samples = 0   # samples lost to capture overruns (not fed)

    def board_index(self, engine_index):
        """The board sample index of engine sample ``engine_index`` (maps across gaps)."""
        offset = self._offset
        k = self._n_gaps
        while k > 0 and k > self._n_gaps - MAX_GAPS:
            k -= 1
            j = k % MAX_GAPS
            if engine_index >= self._gap_at[j]:
                break
            offset = self._gap_before[j]
        return engine_index + offset

    def process(self, block, first_sample_index):
        """Feed one block; returns a list of feature dicts (usually empty).

        ``onset_sample`` etc. are board sample indices; samples lost before
        this block (capture overrun) are accounted for by ``board_index``.
        """
        gap = first_sample_index - (self._fed + self._offset)
        if gap:
            j = self._n_gaps % MAX_GAPS
            self._gap_at[j] = self._fed
            self._gap_before[j] = self._offset
            self._n_gaps += 1
            self._offset += gap
            self.gap_samples += gap
        n = self.engine.process(block, self._out)
        self._fed += len(block)
        triggers = []
        for i in range(n):
            raw = unpack(self._out, i)
            for key in _INDEX_KEYS:
                raw[key] = self.board_index(raw[key])
            triggers.append(detconfig.features(raw, self.rate_hz))
        return triggers

    def dropped(self):
        return self.engine.dropped()
