"""``shotline virtual-sensor``: boards running the real firmware on pseudo-terminals.

Several NAMEs run in one process, stepped in lockstep (``VirtualFleet``), so
their simulated clocks agree and their triggers reach the collector in time
order.
"""
import math
import signal
import threading
import time

from shotline.cli import CommandError, emit, warn


def add_arguments(p):
    p.add_argument("names", nargs="*", metavar="NAME", default=None,
                   help="sensor ids, one virtual board each (default: vs01)")
    p.add_argument("--root", default="virtual-sensors", metavar="DIR",
                   help="folder holding each board's flash (DIR/NAME; default %(default)s)")
    p.add_argument("--links", metavar="DIR",
                   help="where the stable port names are published (default: $SHOTLINE_VIRTUAL_DIR "
                        "or <tmp>/shotline-virtual-<uid>, where `shotline ports` looks)")
    p.add_argument("--audio", action="append", metavar="FILE",
                   help="sound file the microphone hears (repeat: one per NAME, in order); "
                        "default: noise with an impulse every --impulse-every-s")
    p.add_argument("--impulse-every-s", type=float, default=2.0,
                   help="period of the generated test impulses (default %(default)s)")
    p.add_argument("--position", action="append", metavar="LAT,LON,ALT",
                   help="surveyed position (repeat: one per NAME; default: a 300 m ring "
                        "around 40.4406,-79.9959)")
    p.add_argument("--utc0", metavar="TIME",
                   help="UTC at power-on, ISO 8601 (default: now)")
    p.add_argument("--crystal-ppm", type=float, default=25.0, help="crystal error (default 25 ppm)")
    p.add_argument("--clock-error-s", type=float, default=0.0,
                   help="error of the simulated GPS time, seconds (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="configuration for new boards (JSON value), e.g. storage=\"sd\" or heartbeat_s=2")
    p.add_argument("--card-mb", type=float, default=64.0, metavar="MB",
                   help="file-backed raw SD card per board for the 72-hour audio ring "
                        "(sparse file ROOT/NAME/sdcard.img; 0 = no card; default 64)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="simulated seconds per wall-clock second (default 1 = real time)")
    p.add_argument("--duration-s", type=float, default=None,
                   help="stop after this many wall-clock seconds (default: until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")


def _position(text):
    try:
        lat, lon, alt = (float(v) for v in text.split(","))
    except ValueError:
        raise CommandError(f"--position must be LAT,LON,ALT, got {text!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise CommandError(f"--position out of range: {text!r}")
    return lat, lon, alt


def _ring(i, n, centre=(40.4406, -79.9959, 300.0), radius_m=300.0):
    if n == 1:
        return centre
    a = 2 * math.pi * i / n
    lat = centre[0] + radius_m * math.cos(a) / 111_320.0
    lon = centre[1] + radius_m * math.sin(a) / (111_320.0 * math.cos(math.radians(centre[0])))
    return lat, lon, centre[2]


def _per_sensor(values, n, name):
    if not values:
        return [None] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise CommandError(f"give one {name} for all sensors or one per sensor ({n})")
    return values


def run(args):
    from pathlib import Path

    from shotline.timeutil import parse_utc
    from shotline.virtual import VirtualFleet, VirtualSensor, impulse_audio

    names = args.names or ["vs01"]
    if len(set(names)) != len(names):
        raise CommandError("sensor names must be unique")
    if args.speed <= 0 or args.impulse_every_s <= 0:
        raise CommandError("--speed and --impulse-every-s must be positive")
    positions = [_position(p) if p else _ring(i, len(names))
                 for i, p in enumerate(_per_sensor(args.position, len(names), "--position"))]
    audios = _per_sensor(args.audio, len(names), "--audio")
    for a in audios:
        if a is not None and not Path(a).is_file():
            raise CommandError(f"no such audio file: {a}")
    try:
        # one power-on UTC for the whole fleet: they step together, so they must agree
        wall0 = time.monotonic()
        utc0 = time.time() if args.utc0 is None else parse_utc(args.utc0)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    from shotline.commands.provision import _settings

    settings = _settings(args.set)
    sensors = []
    for i, name in enumerate(names):
        audio = audios[i] or impulse_audio(period_s=args.impulse_every_s, seed=i)
        sensors.append(VirtualSensor(name, Path(args.root) / name, audio=audio, folder=args.links,
                                     position_llh=positions[i], utc0_s=utc0,
                                     clock_error_s=args.clock_error_s, config=settings,
                                     crystal_ppm=args.crystal_ppm, seed=i, card_mb=args.card_mb))
    fleet = VirtualFleet(sensors, speed=args.speed, wall0_monotonic_s=wall0).start()
    for vs, pos in zip(sensors, positions):
        emit({"sensor": vs.name, "port": vs.path, "tty": vs.port.tty_path,
              "position_llh": list(pos)}, args.json, f"{vs.name}: {vs.path} -> {vs.port.tty_path}")
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
    try:
        while not done.is_set() and (deadline is None or time.monotonic() < deadline):
            if fleet.error is not None:
                break
            done.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        fleet.close()
    if fleet.error is not None:
        warn(f"firmware stopped: {fleet.error!r}")
        return 1
    return 0
