"""Impulse detection on the host: the native C detector through cffi.

Work in progress: the Trigger record is final (its field names are shared with
the firmware trigger records, the collector store and the classifier).
"""
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Trigger:
    """One detected impulse.  Times in seconds from the first sample of the stream."""

    onset_sample: int       # sample index of the onset (64-bit)
    onset_frac: float       # sub-sample fraction 0..1
    onset_s: float          # (onset_sample + onset_frac) / sample_rate_hz
    peak_dbfs: float        # max |high-passed sample| re 32768
    noise_dbfs: float       # pre-trigger background, RMS re 32768
    snr_db: float           # peak_dbfs - noise_dbfs
    rise_time_s: float      # onset to peak
    width_s: float          # envelope above -6 dB of its peak
    decay_s: float          # envelope peak to -20 dB
    band_low_db: float      # mean-square level in the low band, dBFS
    band_mid_db: float      # ... mid band
    band_high_db: float     # ... high band
    sta_lta: float          # max STA/LTA over the measure window (linear)
    trigger_s: float        # when STA/LTA crossed the ratio
    clipped: bool           # input reached full scale during the pulse

    def to_dict(self):
        return asdict(self)
