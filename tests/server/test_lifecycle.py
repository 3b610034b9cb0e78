"""A reload asked for (SIGHUP) while a server process is still starting: remembered and done once
it has started, where SIGHUP's default action would have killed the process (seen when a
reload reached a server that the supervisor had just restarted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.serving import REPO_ROOT

STARTING = textwrap.dedent(
    """
    import os, signal
    from server.serving.lifecycle import defer_reloads, reload_was_asked

    defer_reloads()  # what `reqo role` does first
    assert not reload_was_asked()
    os.kill(os.getpid(), signal.SIGHUP)  # the supervisor passing a reload on, mid-start
    print("asked" if reload_was_asked() else "lost")
    """
)


def test_a_sighup_during_start_up_is_remembered_not_fatal() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STARTING], cwd=REPO_ROOT, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "asked"


def test_a_role_ignores_sighup_until_it_can_remember_it() -> None:
    """The supervisor starts each role with SIGHUP ignored (before the interpreter has even
    loaded reqo); `defer_reloads` then takes over."""
    from server.cluster.supervisor import _die_with_parent

    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(1.0); print('alive')"],
        stdout=subprocess.PIPE,
        preexec_fn=_die_with_parent,
    )
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGHUP)  # a reload, while the role is still starting
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    assert out.decode().strip() == "alive"
