"""The foundation: time stamps, the CLI table, the data-set reader."""
import math
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from shotline import cli
from shotline.timeutil import format_utc, parse_utc


def test_parse_utc_known_value():
    assert parse_utc("2018-12-19T00:49:27.467123Z") == pytest.approx(1545180567.467123, abs=1e-7)
    assert parse_utc("2018-12-19T01:49:27.5+01:00") == pytest.approx(1545180567.5, abs=1e-7)


@pytest.mark.parametrize("bad", ["", "yesterday", "2018-12-19T00:49:27", "2018-13-19T00:49:27Z", None])
def test_parse_utc_refuses(bad):
    with pytest.raises(ValueError):
        parse_utc(bad)


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**6))
def test_utc_round_trip_to_the_microsecond(ticks_us):
    t = ticks_us / 1e6
    assert abs(parse_utc(format_utc(t)) - t) < 1e-6


def test_cli_without_command_is_a_usage_error(capsys):
    assert cli.main([]) == cli.EXIT_USAGE
    assert "usage" in capsys.readouterr().err


def test_every_command_module_has_its_handler():
    import importlib
    names = [name for name, _, _ in cli.COMMANDS]
    assert len(names) == len(set(names))
    for _, module, _ in cli.COMMANDS:
        mod = importlib.import_module(f"shotline.commands.{module}")
        assert callable(mod.add_arguments) and callable(mod.run)


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "shotline", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("shotline ")


def test_pittsburgh_reader(pittsburgh_tests):
    assert len(pittsburgh_tests) == 108
    t = pittsburgh_tests[0]
    assert t.firing_position == "FP1" and t.rounds in (1, 3)
    assert 1 <= len(t.recordings) <= 6 and len(t.shots) == t.rounds
    by_uuid = t.pulse_by_uuid()
    assert all(u in by_uuid for shot in t.shots for u in shot)
    assert all(math.isfinite(c) for c in t.survey_m)


def test_command_help_lists_its_own_options():
    out = subprocess.run([sys.executable, "-m", "shotline", "detect", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--start-utc" in out.stdout


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["no-such-command"]) == cli.EXIT_USAGE
    assert "unknown command" in capsys.readouterr().err
