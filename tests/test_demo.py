"""End to end on the small scenario: simulate -> virtual sensors running the firmware on
ptys -> collector -> associate -> locate -> incidents -> alerts (and the in-process path)."""
import json

import pytest
import soundfile

from shotline.cli import main
from shotline.incidents import audit_trail, list_incidents
from shotline.store import Store

from alerts_helpers import check_cap12


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    from shotline.demo import run_demo

    summary = run_demo(out, "scenarios/test-block.json", say=lines.append)
    return out, summary, lines


def test_the_small_night_alerts_both_gunshots_and_nothing_else(night):
    out, summary, lines = night
    assert summary["gunshot_sources"] == 2 and summary["gunshot_sources_alerted"] == 2
    assert summary["false_alerts"] == 0
    assert summary["incident_error_median_m"] < 10.0
    assert summary["shots"] == 4 and summary["shots_detected"] == 4
    assert summary["shots_within_25m"] >= 2
    alerts = [line for line in lines if line.startswith("ALERT")]
    assert len(alerts) == summary["alerts"] == 2
    assert "truth: G1 (handgun), error" in alerts[0] and "truth: G2 (handgun)" in alerts[1]
    assert json.loads((out / "summary.json").read_text()) == summary


def test_the_night_leaves_a_store_cap_files_geojson_and_a_map(night):
    out, summary, _ = night
    with Store(out / "shotline.sqlite") as store:
        incidents = list_incidents(store)
        assert len(incidents) == summary["incidents"]
        assert all(i["status"] == "new" and len(i["sensors"]) >= 4 for i in incidents)
        assert audit_trail(store, incidents[0]["id"])[0]["by"] == "demo"
        assert store.counts()["triggers"] > 0 and store.counts()["events"] >= 2
        sensors = store.sensors()
        assert len(sensors) == 6 and all(s["firmware"] for s in sensors)   # from each HELLO
        assert summary["sensor_path"] == "virtual"
        outbox = store.query("SELECT * FROM webhook_outbox")
    assert len(outbox) == 2 and all(r["delivered_utc_s"] for r in outbox)
    assert summary["webhook_delivered"] == summary["webhook_receiver_records"] == 2
    caps = sorted((out / "cap").glob("*.xml"))
    assert len(caps) == 2
    for cap in caps:
        root = check_cap12(cap.read_text())
        assert root.find("{urn:oasis:names:tc:emergency:cap:1.2}status").text == "Exercise"
    fc = json.loads((out / "incidents.geojson").read_text())
    assert sum(f["geometry"]["type"] == "Point" for f in fc["features"]) == 2
    assert (out / "map.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "sim" / "manifest.json").read_text())
    assert soundfile.info(out / "sim" / manifest["recordings"][0]["path"]).samplerate == 16000


def test_demo_command_prints_the_summary(tmp_path, capsys):
    # The in-process detector path (no ptys, no firmware): same night, same answer.
    assert main(["demo", "--out", str(tmp_path), "--scenario", "scenarios/test-block.json",
                 "--path", "detector", "--no-webhook", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sensor_path"] == "detector" and summary["webhook_delivered"] is None
    assert summary["gunshot_sources_alerted"] == 2 and summary["false_alerts"] == 0
    assert main(["demo", "--out", str(tmp_path), "--scenario", "nope.json"]) == 2
    assert main(["demo", "--out", str(tmp_path), "--threshold", "2"]) == 2
