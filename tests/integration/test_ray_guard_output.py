"""A Ray guard's one line reaches the terminal when Ray ends the run's process from C++ (`_exit(1)`,
its reaction to a lost raylet) in the middle of a test, while pytest captures the test's fd 2.

No Ray is needed: a strategy defined in a test's plugin file starts a guard the way a local Ray instance
does, then ends the process the way Ray does. The CI once lost the line: the guard had inherited the
capture file as its stderr."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers.run_bench import ROOT, TINY_RUN, bench_subprocess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the guard is for Linux processes")

DYING_PLUGIN = '''
import os

from strategies import STRATEGIES
from strategies.runtime.ray_instance import start_guard
from strategies.serial import Serial


class DiesLikeRay(Serial):
    """serial whose run ends the process as Ray does when its raylet dies, with a guard watching it."""

    name = "dies_like_ray"

    def run(self, *args, **kwargs):
        guard = start_guard(os.environ["GUARDED_DIR"])
        guard.stdin.write(b"%d 0\\n" % os.getpid())  # a stale pid line: the guard checks and skips it
        guard.stdin.flush()
        os._exit(1)


STRATEGIES[DiesLikeRay.name] = DiesLikeRay
'''


def test_the_guard_line_reaches_the_terminal_when_the_run_dies_inside_a_test(tmp_path: Path) -> None:
    (tmp_path / "dying_plugin.py").write_text(DYING_PLUGIN)
    guarded = tmp_path / "fb-ray-guarded"
    guarded.mkdir()
    env = {**os.environ, "GUARDED_DIR": str(guarded), "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}

    # Through pipes, as CI reads a run: the read ends once the guard, which holds them too, has ended.
    result = bench_subprocess("-p", "dying_plugin", *TINY_RUN, "--strategy", "dies_like_ray", "--scenario", "offline",
                              env=env)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    lines = [line for line in output.splitlines() if "ended without stopping its local Ray instance" in line]
    assert len(lines) == 1, output
    assert f"{guarded} removed" in lines[0], output
    assert not guarded.exists()
