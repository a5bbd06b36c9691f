"""Speed of sound (Cramer 1993) and atmospheric absorption (ISO 9613-1)."""
import numpy as np
import pytest

from shotline.acoustics import absorption_db_per_m, speed_of_sound_m_s, water_vapour_mole_fraction

# ISO 9613-2:1996 Table 2 (from ISO 9613-1): alpha in dB/km at the octave-band
# mid frequencies (exact: 1000 * 10**(3n/10)), 70 % relative humidity.
OCTAVES_HZ = 1000.0 * 10.0 ** (0.3 * np.arange(-4, 4))  # 63 Hz .. 8 kHz
ISO_TABLE_DB_PER_KM = {
    (10.0, 70.0): (0.1, 0.4, 1.0, 1.9, 3.7, 9.7, 32.8, 117.0),
    (20.0, 70.0): (0.1, 0.3, 1.1, 2.8, 5.0, 9.0, 22.9, 76.6),
    (30.0, 70.0): (0.1, 0.3, 1.0, 3.1, 7.4, 12.7, 23.1, 59.3),
    (15.0, 50.0): (0.1, 0.5, 1.2, 2.2, 4.2, 10.8, 36.2, 129.0),
}


@pytest.mark.parametrize("condition", sorted(ISO_TABLE_DB_PER_KM))
def test_absorption_matches_iso_table(condition):
    t_c, rh = condition
    got = absorption_db_per_m(OCTAVES_HZ, t_c, rh) * 1000.0
    want = np.array(ISO_TABLE_DB_PER_KM[condition])
    # The table is rounded to 0.1 dB/km (3 significant figures above 100).
    assert np.all(np.abs(got - want) <= np.maximum(0.051, 0.005 * want)), got.round(2)


def test_absorption_scales_with_pressure_and_is_vectorised():
    f = np.array([[500.0], [4000.0]])
    a = absorption_db_per_m(f, np.array([0.0, 10.0, 20.0]), 50.0)
    assert a.shape == (2, 3)
    assert np.all(a[1] > a[0])  # higher frequencies are absorbed more
    assert isinstance(absorption_db_per_m(1000.0, 20.0, 50.0), float)
    assert absorption_db_per_m(1000.0, 20.0, 50.0, 90.0) != absorption_db_per_m(1000.0, 20.0, 50.0)


def test_speed_of_sound_reference_values():
    # Cramer (1993): 331.45 m/s at 0 °C in dry air (with CO2).
    assert speed_of_sound_m_s(0.0) == pytest.approx(331.45, abs=0.02)
    # Ideal-gas formula of ISO 9613-1 A.5: 343.2 * sqrt(T / 293.15); within 0.2 m/s.
    for t_c in (-10.0, 0.0, 10.0, 20.0, 30.0):
        ideal = 343.2 * np.sqrt((t_c + 273.15) / 293.15)
        assert speed_of_sound_m_s(t_c) == pytest.approx(ideal, abs=0.2)


def test_humidity_raises_speed_of_sound():
    dry = speed_of_sound_m_s(25.0)
    humid = speed_of_sound_m_s(25.0, 100.0)
    # Saturated air at 25 °C: water vapour mole fraction about 3.2 %: about +1.7 m/s.
    assert water_vapour_mole_fraction(25.0, 100.0) == pytest.approx(0.032, abs=0.002)
    assert 1.5 < humid - dry < 1.9
    assert speed_of_sound_m_s(25.0, 0.0) == pytest.approx(dry)


def test_vectorised_speed():
    t = np.linspace(-10, 40, 6)
    c = speed_of_sound_m_s(t, 50.0)
    assert c.shape == (6,) and np.all(np.diff(c) > 0)


@pytest.mark.parametrize("kwargs", [
    {"temperature_c": -300.0}, {"temperature_c": float("nan")},
    {"temperature_c": 20.0, "relative_humidity_pct": 120.0},
    {"temperature_c": 20.0, "pressure_kpa": 0.0},
])
def test_bad_air_is_refused(kwargs):
    with pytest.raises(ValueError):
        speed_of_sound_m_s(**kwargs)


def test_absorption_needs_humidity_and_valid_frequency():
    with pytest.raises(ValueError):
        absorption_db_per_m(1000.0, 20.0, None)
    with pytest.raises(ValueError):
        absorption_db_per_m(-5.0, 20.0, 50.0)
