"""The MicroPython test harness itself: it really runs MicroPython and reports failure."""


def test_runs_micropython(micropython):
    out = micropython("import sys\nprint(sys.implementation.name)\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "micropython"


def test_reports_exceptions(micropython):
    out = micropython("raise ValueError('boom')\n")
    assert out.returncode == 1 and "boom" in out.stderr


def test_heap_lock_catches_allocation(micropython):
    out = micropython(
        "import micropython\n"
        "micropython.heap_lock()\n"
        "try:\n    x = [1, 2, 3]\n    ok = False\n"
        "except MemoryError:\n    ok = True\n"
        "micropython.heap_unlock()\n"
        "assert ok\n"
    )
    assert out.returncode == 0, out.stderr
