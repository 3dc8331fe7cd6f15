"""`make serve` (flows/local_server.py) serves on its own server only, and one SIGTERM stops all of it.

The failures this guards against: with something else answering on the port, its own server failed
("port in use") but the health wait asked the URL, not its own process, and the deployment was
registered with the stranger; and the first SIGTERM left the served deployment running.
"""

from __future__ import annotations

import http.server
import signal
import subprocess
import sys
import threading
import time

import psutil

from components.config import REPO_ROOT
from tests.support.e2e import assert_all_exited, env_for, free_port


class Stranger(http.server.BaseHTTPRequestHandler):
    """Answers 200 to everything, like a Prefect API's health endpoint; records what it was asked."""

    seen: list[str] = []

    def _answer(self):
        Stranger.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"true")

    do_GET = do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, *args):
        pass


def serve_env(tmp_path, port: int) -> dict[str, str]:
    return dict(env_for(REPO_ROOT), PIPO_PREFECT_PORT=str(port), PREFECT_HOME=str(tmp_path / "prefect"))


def test_a_port_taken_by_another_server_is_refused_and_nothing_registered(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stranger)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        done = subprocess.run([sys.executable, "-m", "flows.local_server"], cwd=REPO_ROOT,
                              env=serve_env(tmp_path, port), capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"port {port}" in done.stderr and "PIPO_PREFECT_PORT" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert Stranger.seen == []


def test_one_sigterm_stops_the_server_the_deployment_and_itself(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flows.local_server"], cwd=REPO_ROOT,
                            env=serve_env(tmp_path, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        end = time.time() + 180
        family: list[psutil.Process] = []
        # Serving: the server and the deployment's process (flows.serve) are both up.
        while time.time() < end and proc.poll() is None:
            family = psutil.Process(proc.pid).children(recursive=True)
            if any("flows.serve" in " ".join(p.cmdline()) for p in family) and \
                    any("prefect" in " ".join(p.cmdline()) and "server" in p.cmdline() for p in family):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_all_exited(family)
