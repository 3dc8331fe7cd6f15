"""Two gloo processes under `accelerate launch --cpu`: PIPO's batch mean uses all ranks."""

import json
import subprocess

from tests.e2e_support import BIN, REPO_ROOT, free_port


def test_two_processes_agree_on_mu_t_xi_and_weights(tmp_path):
    # accelerate's `--cpu` flag runs a single process unless MPI is installed; `--multi_gpu` goes
    # through torch.distributed.run, and on a machine without CUDA the Accelerator picks gloo.
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           str(REPO_ROOT / "tests" / "dist_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["mean"] == r1["mean"] == 5 / 8
    assert r0["history"] == r1["history"]  # same mu_t, xi, phi, losses on both ranks
    assert [h["pipo/active"] for h in r0["history"]] == [0.0, 0.0, 1.0, 1.0]
    assert r0["checksum"] == r1["checksum"]  # gradients were synchronised
