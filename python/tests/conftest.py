"""Shared by the pytest suite: the `lifeline` binary under test (LIFELINE_BINARY,
set by ctest) and a `lifeline serve` started on a free loopback port."""
import json
import os
import subprocess

import pytest


@pytest.fixture
def serve():
    """Starts `lifeline serve ARGS` on 127.0.0.1:0; returns (process, port)."""
    started = []

    def start(*args):
        binary = os.environ.get("LIFELINE_BINARY", "lifeline")
        proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        started.append(proc)
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("event") == "listening":
                return proc, int(event["address"].rsplit(":", 1)[1])
        raise RuntimeError("lifeline serve did not start")

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
