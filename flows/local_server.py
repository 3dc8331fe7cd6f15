"""Start a Prefect server on 127.0.0.1, wait for its health endpoint, then serve the deployment.

`make serve` runs this. The server's database lives in PREFECT_HOME (default: .prefect/ here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from components.config import REPO_ROOT
from components.infra.runtime import quiet_environment


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


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    prefect = Path(sys.executable).with_name("prefect")
    log = open(log_path, "ab")
    return subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())


def main() -> None:
    quiet_environment()
    os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect"))
    port = int(os.environ.get("PIPO_PREFECT_PORT", "4200"))
    api = f"http://127.0.0.1:{port}/api"
    server = start_server(port, Path(os.environ["PREFECT_HOME"]).with_suffix(".server.log"))
    try:
        wait_healthy(api, proc=server)
        os.environ["PREFECT_API_URL"] = api
        print(f"Prefect UI: http://127.0.0.1:{port}  -  run: prefect deployment run 'pipo-pipeline/local'",
              flush=True)
        subprocess.run([sys.executable, "-m", "flows.serve"], check=True, cwd=REPO_ROOT)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
