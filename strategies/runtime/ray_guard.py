"""The guard of a local Ray instance (ray_instance.py starts one per instance): removes the instance
when the run's process dies without doing it. Ray ends the driver with `_exit(1)` from C++ when its
raylet goes away, and a killed process runs no `finally` or `atexit`; the Ray processes (the agents
ignore SIGTERM) and the directory would outlive it.

    python -m strategies.runtime.ray_guard TEMP_DIR DRIVER_PID

It reads a pipe from the driver: `pid create_time` per process of the instance, `done` when the driver
removed it itself. End of input without `done`: it SIGKILLs those processes, their descendants and any
naming the directory, removes the directory and says so on stderr. It ignores SIGINT, SIGTERM and
SIGHUP, so the signal that ended the run's process group does not end it too."""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys

import psutil

#: How long the killed processes get to be reaped.
WAIT_S = 10.0


def instance_processes(known: list[psutil.Process], temp_dir: str) -> list[psutil.Process]:
    """`known`, their descendants and the processes naming `temp_dir`; never this process or a parent of it."""
    found: dict[int, psutil.Process] = {}
    mine = {psutil.Process().pid, *(process.pid for process in psutil.Process().parents())}
    roots = [process for process in known if process.is_running()]
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if temp_dir in " ".join(process.cmdline()):
                roots.append(process)
    for process in roots:
        found[process.pid] = process
        with contextlib.suppress(psutil.Error):
            found.update((child.pid, child) for child in process.children(recursive=True))
    return [process for pid, process in found.items() if pid not in mine]


def kill_all(processes: list[psutil.Process]) -> int:
    """SIGKILL each one still running (psutil checks the pid was not reused); how many were."""
    killed = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
            killed += 1
    psutil.wait_procs(processes, timeout=WAIT_S)
    return killed


def main(temp_dir: str, driver: int) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    known: list[psutil.Process] = []
    for line in sys.stdin:
        fields = line.split()
        if fields == ["done"]:
            return 0
        if len(fields) == 2:
            with contextlib.suppress(psutil.Error, ValueError):
                process = psutil.Process(int(fields[0]))
                if abs(process.create_time() - float(fields[1])) < 1.0:  # the one the driver saw, not a reused pid
                    known.append(process)
    killed = kill_all(instance_processes(known, temp_dir))
    shutil.rmtree(temp_dir, ignore_errors=True)
    print(f"fanbench: the run's process (pid {driver}) ended without stopping its local Ray instance; "
          f"its {killed} remaining processes were killed and {temp_dir} removed.", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
