"""Simulator and alert-path speed: rendering the demo night, CAP and GeoJSON
encoding, webhook outbox throughput to a local receiver.

    .venv/bin/python bench/simulate.py
"""
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    from shotline.alerts.cap import cap_alert
    from shotline.alerts.geojson import feature_collection
    from shotline.alerts.webhook import WebhookOutbox, alert_key
    from shotline.demo import Receiver
    from shotline.simulate import load_scenario, render, write_rendering
    from shotline.store import Store

    sc = load_scenario(ROOT / "scenarios" / "demo-night.json")
    t0 = time.perf_counter()
    rendering = render(sc)
    render_s = time.perf_counter() - t0
    audio_s = sc.duration_s * len(sc.sensors)
    n_impulses = sum(s["n_impulses"] for s in rendering.truth["sources"])
    print(f"render demo night: {len(sc.sensors)} sensors x {sc.duration_s:g} s, "
          f"{n_impulses} impulses: {render_s:.2f} s = {audio_s / render_s:.0f} sensor-seconds "
          f"of audio per second")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_rendering(rendering, tmp)
        print(f"write FLAC + manifest + truth: {time.perf_counter() - t0:.2f} s")

        incident = {"id": 1, "uid": "bench-1", "time_utc_s": sc.start_utc_s, "lat_deg": 40.45,
                    "lon_deg": -79.98, "alt_m": 280.0, "ellipse_major_m": 20.0,
                    "ellipse_minor_m": 8.0, "ellipse_azimuth_deg": 30.0,
                    "sensors": [f"S{i:02d}" for i in range(8)], "n_shots": 3,
                    "class": "gunshot", "probability": 0.9, "status": "new"}
        n = 1000
        t0 = time.perf_counter()
        for _ in range(n):
            cap_alert(incident, sent_utc_s=sc.start_utc_s)
        print(f"CAP 1.2 message: {(time.perf_counter() - t0) / n * 1e3:.2f} ms each")
        t0 = time.perf_counter()
        feature_collection([incident] * n)
        print(f"GeoJSON point + ellipse: {(time.perf_counter() - t0) / n * 1e3:.2f} ms each")

        receiver = Receiver()
        try:
            store = Store(Path(tmp) / "bench.sqlite")
            box = WebhookOutbox(store, receiver.url)
            n = 300
            t0 = time.perf_counter()
            for i in range(n):
                box.enqueue({"i": i}, alert_key({"uid": f"u{i}"}))
            enq_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            box.drain(timeout_s=60)
            post_s = time.perf_counter() - t0
            print(f"webhook outbox: enqueue {enq_s / n * 1e3:.2f} ms (durable commit), "
                  f"deliver {post_s / n * 1e3:.2f} ms per alert to a local receiver "
                  f"({len(receiver.records)} recorded once each)")
            store.close()
        finally:
            receiver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
