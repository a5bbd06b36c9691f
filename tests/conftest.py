"""Shared fixtures: the real-data folder, skipped with a reason only where absent."""
import pytest

from shotline.datasets import data_dir, pittsburgh


@pytest.fixture(scope="session")
def shared_data():
    path = data_dir()
    if not path.is_dir():
        pytest.skip(f"real recordings not found at {path} (set SHOTLINE_DATA)")
    return path


@pytest.fixture(scope="session")
def pittsburgh_tests(shared_data):
    if pittsburgh.root() is None:
        pytest.skip(f"{pittsburgh.NAME} not found under {shared_data}")
    return list(pittsburgh.iter_tests())


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
NODE_RUNNER = REPO / "tools" / "mpy-run.mjs"


@pytest.fixture(scope="session")
def micropython():
    """Run a script under the real MicroPython interpreter (Node + WebAssembly).

    ``micropython(script_text, paths=[...], args=[...])`` returns the
    CompletedProcess; the firmware package is always on the path.  Fails (does
    not skip) when Node or the npm package is missing: ``make test`` installs them.
    """
    import shutil
    import subprocess
    import tempfile

    node = shutil.which("node")
    assert node, "node is required for the MicroPython tests (make test installs the npm package)"
    assert (REPO / "node_modules" / "@micropython").is_dir(), "run `npm install` (make test does)"

    def run(script, paths=(), args=(), timeout=120):
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(script)
        cmd = [node, str(NODE_RUNNER), "--path", str(REPO / "firmware")]
        for p in paths:
            cmd += ["--path", str(p)]
        cmd += [f.name, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)

    return run
