"""Every call Shotline makes to ``mpremote`` -- and nothing else.

Each function runs ONE ``mpremote`` process (``python -m mpremote``) against a
board's serial port.  ``mpremote connect PORT`` interrupts the running
application with Ctrl-C, enters the raw REPL (Ctrl-A) and runs the commands;
the firmware's protocol leaves the REPL reachable for exactly this.

What each call does on the board (to check against a real Pico):

- ``read_file(port, path)``: ``mpremote connect PORT fs cat :PATH`` -- prints
  the file; returns its bytes, or ``None`` when it does not exist.
- ``install(port, steps)``: one chained invocation
  ``mpremote connect PORT exec "<mkdir ...>" + fs cp LOCAL :REMOTE + ... + reset``:
  creates the folders (``os.mkdir``, existing ones kept), copies each file
  (raw-REPL writes; an existing file is overwritten), then hard-resets the
  board so it boots the new firmware and configuration.
- ``sha256(port, path)``: ``mpremote connect PORT fs sha256sum :PATH``;
  returns the hex digest, or ``None`` when the file does not exist.
"""
import subprocess
import sys

TIMEOUT_S = 120.0


class MpremoteError(Exception):
    """``mpremote`` failed; the message carries its stderr."""


def argv(port, *commands):
    """The command line for ``mpremote connect PORT <commands...>``."""
    return [sys.executable, "-m", "mpremote", "connect", str(port), *commands]


def _run(args, timeout_s=TIMEOUT_S):
    try:
        return subprocess.run(args, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise MpremoteError(f"mpremote timed out after {timeout_s:.0f} s: {' '.join(args)}") from exc


def _missing(proc):
    err = proc.stderr.decode("utf-8", "replace") + proc.stdout.decode("utf-8", "replace")
    return "ENOENT" in err or "No such file" in err


def read_file(port, remote_path):
    """Bytes of ``remote_path`` on the board, or ``None`` if it does not exist."""
    proc = _run(argv(port, "fs", "cat", f":{remote_path}"))
    if proc.returncode != 0:
        if _missing(proc):
            return None
        raise MpremoteError(proc.stderr.decode("utf-8", "replace").strip() or "mpremote fs cat failed")
    return proc.stdout


def sha256(port, remote_path):
    """Hex SHA-256 of ``remote_path`` on the board, or ``None`` if it does not exist."""
    proc = _run(argv(port, "fs", "sha256sum", f":{remote_path}"))
    if proc.returncode != 0:
        if _missing(proc):
            return None
        raise MpremoteError(proc.stderr.decode("utf-8", "replace").strip())
    return proc.stdout.decode().split()[0]


def install_argv(port, folders, copies, reset=True):
    """The one chained command line ``install`` runs (see the module docstring).

    ``folders``: board folders to create, parents first; ``copies``:
    ``[(local_path, remote_path), ...]``.
    """
    commands = []
    if folders:
        lines = ["import os"] + [
            f"try:\n os.mkdir({str(f)!r})\nexcept OSError:\n pass" for f in folders]
        commands += ["exec", "\n".join(lines), "+"]
    for local, remote in copies:
        commands += ["fs", "cp", str(local), f":{remote}", "+"]
    if reset:
        commands += ["reset"]
    elif commands:
        commands.pop()  # trailing "+"
    return argv(port, *commands)


def install(port, folders, copies, reset=True, timeout_s=TIMEOUT_S):
    """Create ``folders``, copy ``copies`` and (by default) hard-reset the board."""
    proc = _run(install_argv(port, folders, copies, reset), timeout_s)
    if proc.returncode != 0:
        raise MpremoteError(proc.stderr.decode("utf-8", "replace").strip() or "mpremote install failed")
    return proc.stdout.decode("utf-8", "replace")
