"""WGS84 <-> local ENU frames (pymap3d underneath)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shotline.geo import LocalFrame, frame_for

PITTSBURGH = LocalFrame(40.4406, -79.9959, 250.0)


def test_known_distances():
    # One arc-minute of latitude is about 1852 m; east of the origin is +east.
    north = PITTSBURGH.to_enu([40.4406 + 1 / 60, -79.9959, 250.0])
    assert north[1] == pytest.approx(1851.9, abs=2.0) and abs(north[0]) < 1e-6
    east = PITTSBURGH.to_enu([40.4406, -79.9959 + 0.01, 250.0])
    assert east[0] == pytest.approx(847.9, abs=1.0) and east[0] > 0
    up = PITTSBURGH.to_enu([40.4406, -79.9959, 260.0])
    assert up == pytest.approx([0.0, 0.0, 10.0], abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.floats(-85, 85), st.floats(-180, 179.999), st.floats(-100, 3000),
       st.lists(st.tuples(st.floats(-5000, 5000), st.floats(-5000, 5000), st.floats(-200, 200)),
                min_size=1, max_size=5))
def test_round_trip_anywhere(lat0, lon0, alt0, points):
    frame = LocalFrame(lat0, lon0, alt0)
    enu = np.array(points)
    llh = frame.to_llh(enu)
    assert np.all(np.abs(llh[:, 1]) <= 180.0)
    np.testing.assert_allclose(frame.to_enu(llh), enu, atol=1e-6)


def test_vectorised_shapes_and_two_column_input():
    grid = np.zeros((4, 5, 3))
    grid[..., 0] = np.arange(5) * 100.0
    llh = PITTSBURGH.to_llh(grid)
    assert llh.shape == (4, 5, 3)
    np.testing.assert_allclose(PITTSBURGH.to_enu(llh), grid, atol=1e-6)
    # (lat, lon) alone means altitude 0 m.
    assert PITTSBURGH.to_enu([40.4406, -79.9959])[2] == pytest.approx(-250.0, abs=1e-3)


def test_frame_for_centres_on_the_points():
    pts = np.array([[40.44, -80.00, 240.0], [40.45, -79.99, 260.0], [40.44, -79.99, 250.0]])
    frame = frame_for(pts)
    enu = frame.to_enu(pts)
    assert np.abs(enu.mean(axis=0)).max() < 5.0  # the centroid is near the origin


def test_frame_for_across_the_antimeridian():
    frame = frame_for([[10.0, 179.99, 0.0], [10.0, -179.99, 0.0]])
    assert abs(abs(frame.lon0_deg) - 180.0) < 1e-6
    enu = frame.to_enu([[10.0, 179.99, 0.0], [10.0, -179.99, 0.0]])
    assert np.abs(enu[:, 0]).max() < 1200.0  # about 1.1 km either side, not 39,000 km


@pytest.mark.parametrize("bad", [[[1.0]], [[np.nan, 0.0, 0.0]], [[95.0, 0.0, 0.0]]])
def test_bad_points_are_refused(bad):
    with pytest.raises(ValueError):
        PITTSBURGH.to_enu(bad)


def test_bad_frame_is_refused():
    with pytest.raises(ValueError):
        LocalFrame(91.0, 0.0)
    with pytest.raises(ValueError):
        frame_for(np.zeros((0, 3)))
