"""A reload asked for (SIGHUP) while a server process is still starting: remembered and done once
it has started, where SIGHUP's default action would have killed the process (seen when a
reload reached a server that the supervisor had just restarted)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
