"""Start a Prefect server on 127.0.0.1, wait for its health endpoint, then serve the deployment.

`make serve` runs this. The server's database lives in PREFECT_HOME (default: .prefect/ here); its
port is PIPO_PREFECT_PORT (default 4200), refused at once if something already listens there.
One SIGTERM or Ctrl-C stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from components.config import REPO_ROOT
from components.infra.runtime import quiet_environment
from components.infra.tracking import sigterm_raises
from flows.processes import start, stop_tree


def wait_for_url(url: str, deadline_s: float = 180.0, proc: subprocess.Popen | None = None) -> None:
    """Poll GET url until it answers 200 or the deadline passes (fail early if `proc` dies)."""
    end = time.time() + deadline_s
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} while waiting for {url}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {deadline_s:.0f}s")


def wait_healthy(api_url: str, deadline_s: float = 180.0, proc: subprocess.Popen | None = None) -> None:
    wait_for_url(f"{api_url}/health", deadline_s, proc)


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (a bind test, with the SO_REUSEADDR servers use)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def listens_on(proc: subprocess.Popen, port: int) -> bool:
    """Whether proc or one of its descendants holds the listening socket on `port`."""
    try:
        root = psutil.Process(proc.pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for member in family:
        with contextlib.suppress(psutil.Error):
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in member.net_connections(kind="tcp")):
                return True
    return False


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    prefect = Path(sys.executable).with_name("prefect")
    with open(log_path, "ab") as log:
        return start([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                     stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())


def main() -> int:
    """Serve until the deployment's process ends, or until one SIGTERM / Ctrl-C, which stops the
    server, the deployment and any flow run they started (each child runs in its own session)."""
    quiet_environment()
    os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect"))
    port = int(os.environ.get("PIPO_PREFECT_PORT", "4200"))
    # Something else answering on the port would pass the health check and receive the deployment.
    if port_in_use(port):
        print(f"error: port {port} on 127.0.0.1 is already in use; stop what listens there or set "
              "PIPO_PREFECT_PORT to a free port", file=sys.stderr)
        return 2
    api = f"http://127.0.0.1:{port}/api"
    children: list[subprocess.Popen] = []
    try:
        with sigterm_raises():
            server = start_server(port, Path(os.environ["PREFECT_HOME"]).with_suffix(".server.log"))
            children.append(server)
            wait_healthy(api, proc=server)
            if not listens_on(server, port):  # the port was taken between the check and the start
                raise RuntimeError(f"the server answering on port {port} is not the one started here; "
                                   "set PIPO_PREFECT_PORT to a free port")
            os.environ["PREFECT_API_URL"] = api
            print(f"Prefect UI: http://127.0.0.1:{port}  -  run: prefect deployment run 'pipo-pipeline/local'",
                  flush=True)
            children.append(start([sys.executable, "-m", "flows.serve"], cwd=REPO_ROOT))
            return children[-1].wait()
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    finally:
        for child in reversed(children):
            stop_tree(child)


if __name__ == "__main__":
    sys.exit(main())
