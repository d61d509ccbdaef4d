"""Run a command, and end it when mlx-lama goes away, however mlx-lama goes.

mlx-lama starts this file as a script (``python -I watchdog.py GRACE LOG -- COMMAND...``), as the
leader of a new process group, with a pipe on stdin whose other end only mlx-lama holds. When
mlx-lama exits, even killed by SIGKILL, the pipe reads EOF and the command's whole process group
is ended: first SIGTERM, then, after GRACE seconds, SIGKILL. Linux alone has
``prctl(PR_SET_PDEATHSIG)``; a pipe works on macOS too. SIGTERM to this process is passed on to
the command, with the same deadline. The exit status is the command's. LOG, the file the
command's output goes to, is removed when mlx-lama is gone (nobody else would).

Standard library only, and run in isolated mode: it must not import mlx-lama or anything else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any


def main(argv: list[str]) -> int:
    """Run ``argv[3:]`` (``argv[2]`` is ``--``) under the watch; returns its exit status."""
    grace, log = float(argv[0]), argv[1]
    child = subprocess.Popen(argv[3:], stdin=subprocess.DEVNULL)
    ending = threading.Event()

    def end() -> None:
        if ending.is_set():
            return
        ending.set()
        try:
            child.terminate()
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
        except OSError:
            pass

    def watch_parent() -> None:
        try:
            while os.read(0, 4096):  # nothing is ever written: b"" means EOF
                pass
        except OSError:
            pass
        try:
            os.unlink(log)
        except OSError:
            pass
        end()

    def on_signal(signum: int, frame: Any) -> None:
        threading.Thread(target=end, daemon=True).start()

    threading.Thread(target=watch_parent, daemon=True).start()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = child.wait()
    if ending.is_set():
        # Ended by us: whatever is left of the group goes too (the command's own helpers, and
        # this process). A command that died by itself leaves that to mlx-lama's supervisor.
        os.killpg(os.getpgid(0), signal.SIGKILL)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.stdout.flush()
    # os._exit: the thread still blocked reading stdin must not hold up (or crash) the exit.
    os._exit(main(sys.argv[1:]))
