"""``shotline locate [--json] [FILE]``: locate impulses from arrival times (TDOA).

Input: JSON lines (FILE or stdin), one event per line::

    {"sensors_m": [[x, y, z], ...], "arrival_times_s": [...], "temperature_c": 20}
    {"sensors_llh": [[lat, lon, alt], ...], "arrival_times_s": [...], "temperature_c": 0,
     "timing_sigma_s": 1e-4, "mode": "2.5d"}

Optional keys: ``timing_sigma_s``, ``mode`` (2d, 2.5d, 3d), ``relative_humidity_pct``,
``speed_of_sound_m_s``, ``source_up_m`` (an altitude for ``sensors_llh``),
``estimate_speed``, ``id`` (echoed back).  A null arrival time is a missing arrival.

Output: one line per event: ``status``, ``position_m`` (and ``position_llh``),
``t_emit_s``, ``ellipse95_m`` {major, minor, azimuth_deg}, ``used``,
``residuals_s``, plus ``reasons``, ``residual_rms_s``, ``gdop`` and
``alternatives``.  A bad line gives ``{"line": N, "error": "..."}`` (stderr
without ``--json``) and exit code 1; the other lines are still located.
"""
import json
import math
import sys

from shotline.cli import EXIT_FAIL, EXIT_OK, CommandError, emit, warn

_REQUIRED = ("arrival_times_s",)
_OPTIONAL = {"timing_sigma_s": float, "mode": str, "relative_humidity_pct": float,
             "speed_of_sound_m_s": float, "source_up_m": float, "estimate_speed": bool,
             "temperature_c": float}
_KNOWN = {"sensors_m", "sensors_llh", "id", *_REQUIRED, *_OPTIONAL}


def add_arguments(parser):
    parser.add_argument("file", nargs="?", default="-", metavar="FILE",
                        help="JSON lines, one event per line (default: stdin)")
    parser.add_argument("--json", action="store_true", help="write one JSON object per event")


def _event_kwargs(event):
    if not isinstance(event, dict):
        raise ValueError("each line must be a JSON object")
    unknown = sorted(set(event) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(unknown)}")
    if ("sensors_m" in event) == ("sensors_llh" in event):
        raise ValueError("give exactly one of sensors_m or sensors_llh")
    if "arrival_times_s" not in event:
        raise ValueError("missing arrival_times_s")
    times = event["arrival_times_s"]
    if not isinstance(times, list) or not all(t is None or isinstance(t, (int, float)) for t in times):
        raise ValueError("arrival_times_s must be a list of numbers (null = missing)")
    kwargs = {"temperature_c": 20.0}
    for key, kind in _OPTIONAL.items():
        if key in event and event[key] is not None:
            value = event[key]
            if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{key} must be a number")
            if kind is str and not isinstance(value, str):
                raise ValueError(f"{key} must be a string")
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false")
            kwargs[key] = kind(value)
    times = [math.nan if t is None else float(t) for t in times]
    return kwargs, times


def locate_event(event):
    """One input object -> the output dict (raises ValueError on bad input)."""
    from shotline.locate import locate, locate_llh

    kwargs, times = _event_kwargs(event)
    if "sensors_llh" in event:
        fix = locate_llh(event["sensors_llh"], times, **kwargs)
    else:
        fix = locate(event["sensors_m"], times, **kwargs)
    full = fix.to_dict()
    out = {"status": fix.status, "position_m": full["position_m"]}
    if "position_llh" in full:
        out["position_llh"] = full["position_llh"]
    out.update({k: full[k] for k in ("t_emit_s", "ellipse95_m", "used", "residuals_s", "reasons",
                                     "residual_rms_s", "gdop", "speed_of_sound_m_s", "mode",
                                     "message")})
    out["alternatives"] = [{k: a[k] for k in ("position_m", "position_llh", "t_emit_s", "ellipse95_m")
                            if k in a} for a in full["alternatives"]]
    if "id" in event:
        out = {"id": event["id"], **out}
    return out


def _text(n, out):
    from shotline.timeutil import format_utc

    head = f"{out['id']}: " if "id" in out else f"line {n}: "
    if out["position_m"][0] is None:
        return f"{head}{out['status']} ({out['message']})"
    if "position_llh" in out:
        lat, lon, alt = out["position_llh"]
        where = f"{lat:.6f}, {lon:.6f}, {alt:.1f} m"
    else:
        e, nn, u = out["position_m"]
        where = f"E {e:.1f} N {nn:.1f} U {u:.1f} m"
    ell = out["ellipse95_m"]
    size = (f"95% ±{ell['major']:.1f} x {ell['minor']:.1f} m @ {ell['azimuth_deg']:.0f}°"
            if ell["major"] is not None else "95% ellipse unknown")
    t = out["t_emit_s"]
    when = format_utc(t) if t > 1e8 else f"{t:.6f} s"
    n_used = sum(out["used"])
    rms = out["residual_rms_s"]
    rms_text = f", rms {rms * 1e3:.3f} ms" if rms is not None else ""
    line = f"{head}{out['status']} {where}  {size}  at {when}  used {n_used}/{len(out['used'])}{rms_text}"
    if out["alternatives"]:
        line += f"  (+{len(out['alternatives'])} alternative)"
    return line


def run(args):
    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    bad = 0
    with stream:
        for n, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                out = locate_event(json.loads(raw))
            except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
                bad += 1
                record = {"line": n, "error": str(exc)}
                if args.json:
                    emit(record, True)
                else:
                    warn(f"line {n}: {exc}")
                continue
            emit(out, args.json, text=_text(n, out))
    return EXIT_FAIL if bad else EXIT_OK
