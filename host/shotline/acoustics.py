"""Sound in air: speed of sound and atmospheric absorption.

* :func:`speed_of_sound_m_s` — Cramer (1993), *J. Acoust. Soc. Am.* 93(5),
  2510–2516, eq. 15 (zero-frequency speed in humid air with CO2), with the
  water-vapour mole fraction from Davis (1992) / Giacomo (1982).  Fitted for
  0…30 °C (usable about −10…+50 °C); in dry air it is within 0.2 m/s of the
  ideal-gas formula of ISO 9613-1 A.5 (343.2 m/s at 20 °C).
* :func:`absorption_db_per_m` — ISO 9613-1:1993, eqs. 3–5 and B.1–B.3: the
  pure-tone attenuation coefficient alpha (dB/m) of still air.

Both are vectorised over NumPy arrays (broadcasting) and return floats for
scalar input.

>>> round(speed_of_sound_m_s(20.0), 1)
343.4
>>> round(absorption_db_per_m(1000.0, 20.0, 70.0) * 1000, 1)   # dB/km
5.0
"""
import numpy as np

KELVIN_0C = 273.15
STANDARD_PRESSURE_KPA = 101.325
DEFAULT_TEMPERATURE_C = 15.0  # ISO standard atmosphere at sea level: when no reading is given
CO2_MOLE_FRACTION = 0.0004  # present-day atmosphere (Cramer used 0.000314)

# Cramer (1993) eq. 15 coefficients a0..a15 (t in °C, p in Pa).
_CRAMER = (331.5024, 0.603055, -0.000528, 51.471935, 0.1495874, -0.000782,
           -1.82e-7, 3.73e-8, -2.93e-10, -85.20931, -0.228525, 5.91e-5,
           -2.835149, -2.15e-13, 29.179762, 0.000486)


def _scalar_or_array(x):
    return float(x) if np.ndim(x) == 0 else x


def _check(temperature_c, relative_humidity_pct, pressure_kpa):
    t = np.asarray(temperature_c, dtype=float)
    p = np.asarray(pressure_kpa, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < -KELVIN_0C):
        raise ValueError(f"temperature_c must be finite and above absolute zero, got {temperature_c!r}")
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(f"pressure_kpa must be positive, got {pressure_kpa!r}")
    h = None
    if relative_humidity_pct is not None:
        h = np.asarray(relative_humidity_pct, dtype=float)
        if not np.all(np.isfinite(h)) or np.any((h < 0) | (h > 100)):
            raise ValueError(f"relative_humidity_pct must be within 0..100, got {relative_humidity_pct!r}")
    return t, h, p


def water_vapour_mole_fraction(temperature_c, relative_humidity_pct, pressure_kpa=STANDARD_PRESSURE_KPA):
    """Mole fraction of water vapour x_w (0..1) from relative humidity (%).

    Saturation vapour pressure and enhancement factor after Davis (1992),
    *Metrologia* 29, 67–70.
    """
    t, h, p = _check(temperature_c, relative_humidity_pct, pressure_kpa)
    if h is None:
        raise ValueError("relative_humidity_pct is required")
    return _scalar_or_array(_xw(t, h, p * 1e3))


def _xw(t_c, rh_pct, p_pa):
    t_k = t_c + KELVIN_0C
    psv_pa = np.exp(1.2378847e-5 * t_k ** 2 - 1.9121316e-2 * t_k + 33.93711047 - 6.3431645e3 / t_k)
    enhancement = 1.00062 + 3.14e-8 * p_pa + 5.6e-7 * t_c ** 2
    return rh_pct / 100.0 * enhancement * psv_pa / p_pa


def speed_of_sound_m_s(temperature_c, relative_humidity_pct=None, pressure_kpa=STANDARD_PRESSURE_KPA):
    """Speed of sound in air (m/s), Cramer (1993).

    ``relative_humidity_pct`` None means dry air.  Saturated air is faster by
    about 1.3 m/s at 20 °C and 2.3 m/s at 30 °C; pressure matters by mm/s.

    >>> round(speed_of_sound_m_s(0.0), 2)
    331.45
    """
    t, h, p = _check(temperature_c, relative_humidity_pct, pressure_kpa)
    p_pa = p * 1e3
    xw = np.zeros_like(t) if h is None else _xw(t, h, p_pa)
    xc = CO2_MOLE_FRACTION
    a = _CRAMER
    c = (a[0] + a[1] * t + a[2] * t ** 2
         + (a[3] + a[4] * t + a[5] * t ** 2) * xw
         + (a[6] + a[7] * t + a[8] * t ** 2) * p_pa
         + (a[9] + a[10] * t + a[11] * t ** 2) * xc
         + a[12] * xw ** 2 + a[13] * p_pa ** 2 + a[14] * xc ** 2 + a[15] * xw * p_pa * xc)
    return _scalar_or_array(c)


def absorption_db_per_m(frequency_hz, temperature_c, relative_humidity_pct,
                        pressure_kpa=STANDARD_PRESSURE_KPA):
    """Atmospheric absorption alpha (dB/m) of a pure tone, ISO 9613-1:1993.

    Includes classical/rotational loss and the oxygen and nitrogen vibrational
    relaxations.  Multiply by the path length for the attenuation in dB.

    >>> round(absorption_db_per_m(3981.07, 20.0, 70.0) * 1000, 1)   # dB/km, ISO 9613-2 Table 2
    22.9
    """
    t, h, p = _check(temperature_c, relative_humidity_pct, pressure_kpa)
    if h is None:
        raise ValueError("relative_humidity_pct is required for absorption")
    f = np.asarray(frequency_hz, dtype=float)
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ValueError(f"frequency_hz must be non-negative, got {frequency_hz!r}")
    t_k = t + KELVIN_0C
    t_ref_k = 293.15
    t01_k = 273.16
    pa_pr = p / STANDARD_PRESSURE_KPA
    psat_pr = 10.0 ** (-6.8346 * (t01_k / t_k) ** 1.261 + 4.6151)
    h_molar_pct = h * psat_pr / pa_pr
    fr_o = pa_pr * (24.0 + 4.04e4 * h_molar_pct * (0.02 + h_molar_pct) / (0.391 + h_molar_pct))
    fr_n = pa_pr * (t_k / t_ref_k) ** -0.5 * (
        9.0 + 280.0 * h_molar_pct * np.exp(-4.170 * ((t_k / t_ref_k) ** (-1.0 / 3.0) - 1.0)))
    alpha = 8.686 * f ** 2 * (
        1.84e-11 / pa_pr * (t_k / t_ref_k) ** 0.5
        + (t_k / t_ref_k) ** -2.5 * (
            0.01275 * np.exp(-2239.1 / t_k) / (fr_o + f ** 2 / fr_o)
            + 0.1068 * np.exp(-3352.0 / t_k) / (fr_n + f ** 2 / fr_n)))
    return _scalar_or_array(alpha)
