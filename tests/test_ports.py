"""Board discovery and selection (pyserial's own ListPortInfo records, no hardware)."""
import os

import pytest
from serial.tools.list_ports_common import ListPortInfo

from shotline.ports import RPI_VID, Board, PortError, list_boards, select, virtual_boards


def port(device, vid, pid, serial):
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number = vid, pid, serial
    info.description = "Board in FS mode" if vid == RPI_VID else "USB-Serial"
    return info


PORTS = [port("/dev/ttyACM1", RPI_VID, 0x0005, "E6614103E7452D2F"),
         port("/dev/ttyACM0", RPI_VID, 0x0005, "E660583883265B2A"),
         port("/dev/ttyUSB0", 0x0403, 0x6001, "FTDI123"),
         ListPortInfo("/dev/ttyS0", skip_link_detection=True)]


def test_only_raspberry_pi_boards_are_listed_sorted_by_port(tmp_path):
    boards = list_boards(comports=lambda: PORTS, folder=tmp_path)
    assert [b.port for b in boards] == ["/dev/ttyACM0", "/dev/ttyACM1"]
    assert boards[0].to_dict()["vid"] == "2E8A" and boards[0].kind == "usb"
    anyvid = list_boards(vids=(), comports=lambda: PORTS, folder=tmp_path)
    assert "/dev/ttyUSB0" in [b.port for b in anyvid] and "/dev/ttyS0" not in [b.port for b in anyvid]


def test_virtual_sensors_are_found_by_their_links(tmp_path):
    target = tmp_path / "pts"
    target.write_text("")
    os.symlink(target, tmp_path / "vs01")
    os.symlink(tmp_path / "gone", tmp_path / "vs02")  # dangling: sensor stopped
    (b,) = virtual_boards(tmp_path)
    assert b.serial_number == "vs01" and b.kind == "virtual" and b.port == str(tmp_path / "vs01")


def test_select_by_id_port_url_and_all(tmp_path):
    boards = list_boards(comports=lambda: PORTS, folder=tmp_path)
    assert [b.port for b in select(["id:e6614103e7452d2f"], boards)] == ["/dev/ttyACM1"]
    assert [b.port for b in select(["all"], boards)] == ["/dev/ttyACM0", "/dev/ttyACM1"]
    assert [b.port for b in select([], boards)] == ["/dev/ttyACM0", "/dev/ttyACM1"]
    got = select(["/dev/ttyACM1", "loop://", "id:E6614103E7452D2F"], boards)
    assert [b.port for b in got] == ["/dev/ttyACM1", "loop://"]  # no repeats
    assert got[0].serial_number == "E6614103E7452D2F" and got[1].kind == "url"


def test_select_errors_name_what_is_attached(tmp_path):
    boards = list_boards(comports=lambda: PORTS, folder=tmp_path)
    with pytest.raises(PortError, match="E660583883265B2A"):
        select(["id:NOPE"], boards)
    with pytest.raises(PortError, match="needs a serial"):
        select(["id:"], boards)
    with pytest.raises(PortError, match="no boards attached"):
        select(["all"], [])
    with pytest.raises(PortError, match="empty"):
        select([" "], boards)
    assert isinstance(boards[0], Board)


def test_ports_command_lists_and_probes_virtual_sensors(tmp_path, monkeypatch, capsys):
    import json

    from shotline.cli import main
    from shotline.link import Link
    from shotline.virtual import VirtualSensor

    monkeypatch.setenv("SHOTLINE_VIRTUAL_DIR", str(tmp_path / "links"))
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [])  # ignore any real Pico
    vs = VirtualSensor("bench1", tmp_path / "flash", speed=4.0).start()
    try:
        assert main(["ports", "--json", "--no-probe"]) == 0
        (row,) = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
        assert row["kind"] == "virtual" and row["serial_number"] == "bench1" and "firmware" not in row
        assert main(["ports", "--json"]) == 0
        (row,) = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
        assert (row["sensor_id"], row["firmware"], row["answer"]) == ("bench1", "0.1.0", "ok")
        with Link(vs.path):  # the collector holds it: a probe must not steal its bytes
            assert main(["ports", "--json"]) == 0
            (row,) = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
            assert row["answer"].startswith("busy")
    finally:
        vs.stop()
    assert main(["ports"]) == 0
    assert capsys.readouterr().out.strip() == "no boards attached"
