"""Run only by `test_processes.py`, in a pytest of its own that is then killed with SIGKILL:
starts two servers the way fixtures do (one in its own session, one in pytest's group), records
their PIDs, and waits to be killed."""

import os
import subprocess
import sys
import time


def test_starts_servers_and_waits_to_be_killed():
    server = [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"]
    own = subprocess.Popen(server, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    shared = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert own.poll() is None and shared.poll() is None  # both serving when the run is killed
    with open(os.environ["KILLED_RUN_PIDS"], "w") as f:
        f.write(f"{own.pid} {shared.pid}\n")
    time.sleep(300)
    raise AssertionError("this run was meant to be killed")
