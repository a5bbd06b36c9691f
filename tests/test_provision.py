"""Provisioning up to the mpremote calls (which need a real board)."""
import json
import sys

import pytest
from nacl.signing import SigningKey

from shotline import mpremote_calls, provision as prov
from shotline.provision import ProvisionError


@pytest.fixture
def fw_root(tmp_path):
    fw = tmp_path / "firmware"
    (fw / "shotline_fw").mkdir(parents=True)
    (fw / "main.py").write_text("import shotline_fw\n")
    (fw / "boot.py").write_text("pass\n")
    (fw / "shotline_fw" / "__init__.py").write_text("")
    (fw / "shotline_fw" / "wire.py").write_text("from micropython import const\n_X = const(1)\n")
    (fw / "shotline_fw" / "__pycache__").mkdir()
    (tmp_path / "native" / "natmod").mkdir(parents=True)
    (tmp_path / "native" / "natmod" / "impulse.mpy").write_bytes(b"M\x06")
    return tmp_path


class FakeCalls:
    """Stands in for shotline.mpremote_calls: records what would be sent to the board."""

    def __init__(self, existing=None):
        self.existing, self.installed = existing, None

    def read_file(self, port, path):
        assert path == prov.CONFIG_PATH
        return self.existing

    def install(self, port, folders, copies, reset=True):
        self.installed = (port, folders, [(str(a), b, open(a, "rb").read()) for a, b in copies], reset)


def test_plan_copies_firmware_native_config_and_keys(fw_root, tmp_path):
    key = SigningKey.generate().verify_key.encode().hex()
    cfg = prov.build_config("north-07", (40.4406, -79.9959, 260.0), {"heartbeat_s": 5})
    p = prov.plan("/dev/ttyACM0", cfg, [key], root=fw_root, work_dir=tmp_path / "w")
    remotes = [r for _, r in p.copies]
    assert remotes == ["boot.py", "main.py", "shotline_fw/__init__.py", "shotline_fw/wire.py",
                       "impulse.mpy", "config.json", "keys.json"]
    assert p.folders == ("/shotline_fw",)
    written = dict((r, l) for l, r in p.copies)
    assert json.loads(written["config.json"].read_text()) == {
        "sensor_id": "north-07", "lat_deg": 40.4406, "lon_deg": -79.9959, "alt_m": 260.0,
        "heartbeat_s": 5}
    assert json.loads(written["keys.json"].read_text()) == {"ed25519": [key]}
    assert json.loads(json.dumps(p.to_dict()))["port"] == "/dev/ttyACM0"


def test_plan_can_cross_compile_the_package(fw_root, tmp_path):
    p = prov.plan("p", prov.build_config("a", (0, 0, 0)), root=fw_root, compile_mpy=True,
                  work_dir=tmp_path / "w")
    remotes = [r for _, r in p.copies]
    assert "shotline_fw/wire.mpy" in remotes and "shotline_fw/__init__.py" in remotes
    mpy = dict((r, l) for l, r in p.copies)["shotline_fw/wire.mpy"]
    assert mpy.read_bytes()[:1] == b"M"  # MicroPython .mpy header


def test_bad_firmware_tree_and_bad_config_are_refused(tmp_path, fw_root):
    with pytest.raises(ProvisionError, match="firmware not found"):
        prov.firmware_files(tmp_path / "nowhere")
    (fw_root / "firmware" / "main.py").unlink()
    with pytest.raises(ProvisionError, match="main.py is missing"):
        prov.firmware_files(fw_root)
    (fw_root / "firmware" / "main.py").write_text("import shotline_fw\n")
    (fw_root / "firmware" / "shotline_fw" / "bad.py").write_text("def (:\n")
    with pytest.raises(ProvisionError, match="mpy-cross rejects .*bad.py"):
        prov.firmware_files(fw_root, compile_mpy=True, out_dir=tmp_path)
    for bad_id in ("", "a b", "x" * 33, "ü"):
        with pytest.raises(ProvisionError, match="sensor id"):
            prov.build_config(bad_id, (0, 0, 0))
    for bad_pos in ((91, 0, 0), (0, 181, 0), (0, 0, float("nan")), ("x", 0, 0), (1, 2)):
        with pytest.raises(ProvisionError, match="position"):
            prov.build_config("a", bad_pos)


def test_public_keys_hex_or_base64_and_rejects_junk():
    import base64
    raw = SigningKey.generate().verify_key.encode()
    assert prov.parse_public_key(raw.hex()) == raw.hex()
    assert prov.parse_public_key(base64.b64encode(raw).decode() + "\n") == raw.hex()
    for junk in ("00" * 31, "zz", base64.b64encode(b"x" * 33).decode()):
        with pytest.raises(ProvisionError, match="32 bytes"):
            prov.parse_public_key(junk)
    with pytest.raises(ProvisionError, match="Ed25519"):
        prov.parse_public_key("00" * 32)  # the identity point: small order
    with pytest.raises(ProvisionError, match="public_key"):
        prov.parse_public_key('{"key_id": "00"}')


def test_keys_from_shotline_keys_provision_and_parse_on_the_board(tmp_path):
    from shotline import keys
    from shotline_fw import auth

    made = keys.generate(tmp_path / "k")
    from_pub = prov.parse_public_key((tmp_path / "k" / "signing.pub").read_text())
    from_export = prov.parse_public_key(json.dumps(keys.export(tmp_path / "k")))
    assert from_pub == from_export == made["public_key"]
    p = prov.plan("p", prov.build_config("a", (0, 0, 0)), [from_pub], firmware=False,
                  work_dir=tmp_path / "w")
    keys_file = dict((r, l) for l, r in p.copies)["keys.json"]
    # the firmware's own parser reads what provisioning writes
    assert auth.load_keys(str(keys_file)) == [bytes.fromhex(made["public_key"])]


def test_identity_is_kept_unless_forced():
    assert prov.check_identity(None, "a") is None
    assert prov.check_identity(b'{"sensor_id": "a"}', "a") == "a"
    with pytest.raises(ProvisionError, match="board is sensor 'old'.*--force"):
        prov.check_identity(b'{"sensor_id": "old"}', "new")
    assert prov.check_identity(b'{"sensor_id": "old"}', "new", force=True) == "old"
    with pytest.raises(ProvisionError, match="unreadable"):
        prov.check_identity(b"\xff garbage", "new")
    assert prov.check_identity(b"\xff garbage", "new", force=True) is None


def test_provision_reads_identity_before_installing():
    cfg = prov.build_config("b", (1, 2, 3))
    calls = FakeCalls(existing=b'{"sensor_id": "a"}')
    with pytest.raises(ProvisionError):
        prov.provision("/dev/ttyACM0", cfg, calls=calls, firmware=False)
    assert calls.installed is None  # refused before anything was written
    prov.provision("/dev/ttyACM0", cfg, calls=calls, firmware=False, force=True)
    port, folders, copies, reset = calls.installed
    assert port == "/dev/ttyACM0" and reset and folders == ()
    assert [(r, json.loads(b)["sensor_id"]) for _, r, b in copies] == [("config.json", "b")]


def test_mpremote_command_lines():
    assert mpremote_calls.argv("/dev/ttyACM0", "fs", "cat", ":config.json") == [
        sys.executable, "-m", "mpremote", "connect", "/dev/ttyACM0", "fs", "cat", ":config.json"]
    a = mpremote_calls.install_argv("COM3", ["/shotline_fw"], [("x/main.py", "main.py"),
                                                            ("x/w.py", "shotline_fw/w.py")])
    assert a[3:5] == ["connect", "COM3"]
    assert a[5] == "exec" and "os.mkdir('/shotline_fw')" in a[6] and a[7] == "+"
    compile(a[6], "<exec>", "exec")  # the mkdir script is valid Python
    assert a[8:] == ["fs", "cp", "x/main.py", ":main.py", "+",
                     "fs", "cp", "x/w.py", ":shotline_fw/w.py", "+", "reset"]
    b = mpremote_calls.install_argv("COM3", [], [("c.json", "config.json")], reset=False)
    assert b[5:] == ["fs", "cp", "c.json", ":config.json"]


def test_provision_command_dry_run_with_the_real_firmware(tmp_path, capsys):
    from shotline.cli import main

    key = tmp_path / "ops.pub"
    key.write_text(SigningKey.generate().verify_key.encode().hex() + "\n")
    argv = ["provision", "/dev/ttyACM0", "--id", "north-07", "--position", "40.4406,-79.9959,260",
            "--set", "heartbeat_s=5", "--set", 'detector={"ratio_db": 12.0}', "--key", str(key),
            "--dry-run", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    remotes = [r for _, r in out["copies"]]
    assert {"main.py", "boot.py", "shotline_fw/wire.py", "shotline_fw/app.py",
            "config.json", "keys.json"} <= set(remotes)
    assert out["config"]["heartbeat_s"] == 5 and out["config"]["detector"] == {"ratio_db": 12.0}
    assert out["mpremote"][3:5] == ["connect", "/dev/ttyACM0"] and out["mpremote"][-1] == "reset"
    # the firmware's own validator has the last word on the configuration
    from shotline_fw import config as fwconfig
    full = fwconfig.validate(dict(out["config"]))
    assert full["sensor_id"] == "north-07"


def test_provision_command_refuses_bad_input(tmp_path, capsys):
    from shotline.cli import main

    base = ["provision", "/dev/ttyACM0", "--id", "n7", "--dry-run"]
    assert main(base + ["--position", "40.44,-79.99,260", "--set", "heartbeat_s=-1"]) == 2
    assert "heartbeat_s" in capsys.readouterr().err
    assert main(base + ["--position", "400,0,0"]) == 2
    assert main(base + ["--position", "40,0,0", "--set", "oops"]) == 2
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    assert main(base + ["--position", "40,0,0", "--key", str(bad)]) == 2
    assert main(base + ["--position", "40,0,0", "--key", str(tmp_path / "missing.pub")]) == 2
    assert "cannot read key file" in capsys.readouterr().err
