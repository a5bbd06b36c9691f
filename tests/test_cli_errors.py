"""Bad user input to ``shotline map`` and ``shotline simulate``: exit 2 and a clear message."""
import json

import pytest

from shotline.cli import main

SENSORS = [{"sensor": "S1", "position_llh": [40.45, -79.98, 280.0]},
           {"sensor": "S2", "position_llh": [40.46, -79.97, 280.0]}]


@pytest.mark.parametrize("doc", [
    {"sensors": SENSORS, "sources": None},                                     # not a list
    {"sensors": SENSORS, "sources": [{"id": "G1", "position_llh": 5}]},        # not a position
    {"sensors": SENSORS, "sources": [{"id": "G1", "position_llh": ["a", 1]}]},
    {"sensors": [{"sensor": "S1", "position_llh": None}], "sources": []},
    {"sensors": [{"sensor": "S1", "position_llh": [40.4]}], "sources": []},
    {"sensors": ["S1"], "sources": []},
    [1, 2],
])
def test_map_refuses_a_malformed_truth_file(tmp_path, capsys, doc):
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(doc))
    code = main(["map", "--db", str(tmp_path / "none.sqlite"), "--truth", str(truth),
                 "--out", str(tmp_path / "map.png")])
    assert code == 2
    assert "not a simulation truth file" in capsys.readouterr().err
    assert not (tmp_path / "map.png").exists()


def test_map_refuses_an_unwritable_out(tmp_path, capsys):
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"sensors": SENSORS, "sources": []}))
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "map.png"  # a path under a regular file
    assert main(["map", "--db", str(tmp_path / "none.sqlite"), "--truth", str(truth),
                 "--out", str(out)]) == 2
    assert "cannot write the map" in capsys.readouterr().err


def test_simulate_refuses_an_unwritable_out(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["simulate", "scenarios/test-block.json", "--out",
                 str(tmp_path / "file" / "render"), "--json"]) == 2
    assert "cannot write the rendering" in capsys.readouterr().err
