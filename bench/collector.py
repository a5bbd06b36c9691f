"""Collector figures: sustained triggers/s into the store and onset-to-row delay.

1. Real firmware: 16 virtual sensors (``shotline virtual-sensor``, the real
   ``shotline_fw`` app on the fake hardware, in their own process, paced to
   the wall clock) each hear an impulse every PERIOD_S; one collector (this
   process) stores their triggers.  Figures: triggers/s stored, and the delay
   from each trigger's onset (the board's GPS time) to its row in the store
   after the commit that made it durable), p50/p99, split into board -> host
   and host -> durable row.  The board part includes the detector's look-ahead (it
   measures 40 ms of the pulse before it reports) and the fake board's 10 ms
   scheduling step.
2. Capacity: 16 protocol-level sources in another process (each a pty, an
   outbox of at most WINDOW unacknowledged triggers, re-sent on HELLO) push
   triggers as fast as the collector acknowledges them.  Figure: triggers/s
   stored and acknowledged, and the delay under that load.  The real firmware
   cannot produce triggers this fast on this machine, hence the stand-in.

Run: ``.venv/bin/python bench/collector.py`` (about 1 minute).  Figures vary
with the load on the machine; the collector and the sources share its cores.
"""
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shotline.collect import Collector
from shotline.store import Store

N_SENSORS = 16
PERIOD_S = 0.25
RUN_S = 20.0
BLAST_S = 12.0
WINDOW = 128


def percentiles_ms(values):
    v = np.asarray(values) * 1e3
    return f"p50 {np.percentile(v, 50):7.1f} ms   p99 {np.percentile(v, 99):7.1f} ms   (n={len(v)})"


def wait_connected(c, timeout_s=30):
    if not c.wait_for_connections(timeout_s=timeout_s):
        raise SystemExit(f"only {sum(b.connected for b in c.boards.values())} boards connected")


def real_firmware(tmp):
    names = [f"vs{i:02d}" for i in range(N_SENSORS)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "shotline", "virtual-sensor", *names, "--root", str(tmp / "flash"),
         "--links", str(tmp / "links"), "--impulse-every-s", str(PERIOD_S), "--json"],
        stdout=subprocess.PIPE, text=True)
    try:
        ports = [json.loads(proc.stdout.readline())["port"] for _ in names]
        store = Store(tmp / "real.sqlite")
        durable = []  # on_trigger runs after the commit that made the row durable
        with Collector(store, ports, on_trigger=lambda r: durable.append((time.time(), r))) as c:
            wait_connected(c)
            time.sleep(2.0)  # PPS lock, and the backlog recorded before we connected
            t0, n0 = time.time(), c.stats["triggers_new"]
            time.sleep(RUN_S)
            t1, n1 = time.time(), c.stats["triggers_new"]
        rows = [(t, r) for t, r in durable if t0 <= r["received_utc_s"] <= t1
                and r["time_quality"] == "pps"]
    finally:
        proc.terminate()
        proc.wait(20)
    onset = np.array([r["onset_utc_s"] for _, r in rows])
    received = np.array([r["received_utc_s"] for _, r in rows])
    stored = np.array([t for t, _ in rows])
    print(f"real firmware, {N_SENSORS} virtual sensors, one impulse every {PERIOD_S} s each:")
    print(f"  stored            {(n1 - n0) / (t1 - t0):8.1f} triggers/s "
          f"(offered {N_SENSORS / PERIOD_S:.0f}/s)")
    print(f"  onset -> row      {percentiles_ms(stored - onset)}  (durable, committed)")
    print(f"  onset -> host     {percentiles_ms(received - onset)}")
    print(f"  host -> row       {percentiles_ms(stored - received)}")


def _blaster(folder, ready, stop):
    from shotline_fw import wire
    from shotline.virtual import PtyPort

    ports = [PtyPort(f"src{i:02d}", folder).plug() for i in range(N_SENSORS)]
    decoders = [wire.StreamDecoder() for _ in ports]
    unacked = [dict() for _ in ports]
    next_seq = [1] * len(ports)
    frame_seq = 0
    hello = {"proto": 1, "mode": "run", "fw": "bench", "lat_e7": 404406000, "lon_e7": -799959000,
             "alt_m": 300.0}
    ready.set()
    while not stop.is_set():
        idle = True
        for i, port in enumerate(ports):
            for f in decoders[i].feed(port.read(65536)):
                idle = False
                if f.type == wire.ACK:
                    for s in f.json()["seqs"]:
                        unacked[i].pop(s, None)
                elif f.type == wire.HELLO:
                    frame_seq += 1
                    port.write(wire.encode_json(wire.HELLO, frame_seq, dict(hello, sensor_id=f"src{i:02d}")))
                    for body in list(unacked[i].values()):  # like the firmware: resend on HELLO
                        frame_seq += 1
                        port.write(wire.encode_json(wire.TRIGGER, frame_seq, body))
            while len(unacked[i]) < WINDOW:
                idle = False
                t = time.time()
                body = {"sensor_id": f"src{i:02d}", "seq": next_seq[i], "utc_s": int(t),
                        "utc_us": int((t % 1) * 1e6), "time_quality": "pps", "lat_e7": 404406000,
                        "lon_e7": -799959000, "alt_m": 300.0, "snr_db": 30.0, "peak_dbfs": -10.0}
                unacked[i][next_seq[i]] = body
                next_seq[i] += 1
                frame_seq += 1
                port.write(wire.encode_json(wire.TRIGGER, frame_seq, body))
            port.flush()
        if idle:
            time.sleep(0.001)
    for port in ports:
        port.unplug()


def capacity(tmp):
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_blaster, args=(tmp / "src", ready, stop), daemon=True)
    proc.start()
    ready.wait(30)
    ports = [str(tmp / "src" / f"src{i:02d}") for i in range(N_SENSORS)]
    store = Store(tmp / "capacity.sqlite")
    durable = []
    try:
        with Collector(store, ports, on_trigger=lambda r: durable.append(
                time.time() - r["onset_utc_s"])) as c:
            wait_connected(c)
            time.sleep(1.0)
            t0, n0, k0 = time.time(), c.stats["triggers_new"], c.stats["commits"]
            time.sleep(BLAST_S)
            t1, n1, k1 = time.time(), c.stats["triggers_new"], c.stats["commits"]
    finally:
        stop.set()
        proc.join(20)
    delay = np.array(durable[len(durable) // 10:])  # past the start-up
    rate = (n1 - n0) / (t1 - t0)
    print(f"capacity, {N_SENSORS} protocol-level sources, {WINDOW} unacknowledged triggers each:")
    print(f"  stored and acked  {rate:8.0f} triggers/s, {(n1 - n0) / max(1, k1 - k0):.0f} triggers per commit")
    print(f"  onset -> row      {percentiles_ms(delay)}  (mostly waiting in the sources' windows)")


def main():
    with tempfile.TemporaryDirectory(prefix="shotline-bench-") as d:
        tmp = Path(d)
        os.environ["SHOTLINE_VIRTUAL_DIR"] = str(tmp / "links")
        print(f"== collector (machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
        real_firmware(tmp)
        capacity(tmp)


if __name__ == "__main__":
    main()
