"""Loading a model never runs its folder's Python unasked, never hangs on a silent hub, and names what
is wrong in one line: a missing local folder (never sent to the hub), a corrupt weights file, custom code
without model.trust_remote_code, an unreachable hub, vLLM not installed.

Before: a folder with `auto_map` made transformers ask on stdin (answering "y" ran the code; an open,
silent stdin waited 15 s per call); a hub that accepts connections but never answers hung loading for
over 400 s, a refused one took 52 s; `models/sft` missing was a hub error, a corrupt safetensors file
and a missing vLLM were tracebacks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from components.config import ConfigError, load_config
from components.model.factory import build_tiny_model, load_policy, load_tokenizer
from components.model.io import save_policy
from components.model.source import ModelLoadError
from components.model.tokenizer import build_char_tokenizer
from components.stages.prepare import prompt_budget

ROOT = Path(__file__).resolve().parents[2]


def _run_python(code: str, tmp_path: Path, env: dict[str, str] | None = None, **popen) -> dict:
    """Run `code` in a fresh interpreter (the hub reads its settings at import) and return the JSON
    it prints last; the code measures its own load calls, so interpreter start-up is not counted."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_CACHE": str(tmp_path / "hf-cache"), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)
    try:
        out, err = proc.communicate(timeout=180)  # before the fix, the silent hub ran past this
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("model loading did not finish within 180 s")
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _tiny_folder(path: Path) -> Path:
    tok = build_char_tokenizer()
    save_policy(build_tiny_model(load_config().model, tok, seed=0), tok, path)
    return path


# --- a model folder's own Python --------------------------------------------------------------------

def _custom_code_folder(folder: Path, marker: Path) -> Path:
    """config.json and tokenizer_config.json point (auto_map) at evil.py, which leaves `marker` when run."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil_lm", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["evil.EvilTok", None]}}))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                    "from transformers import PretrainedConfig\n\n\n"
                                    "class EvilConfig(PretrainedConfig):\n    model_type = 'evil_lm'\n")
    return folder


CUSTOM_CODE_PROBE = """
import json, os, sys, time
from pathlib import Path
from components.config import load_config
from components.model.factory import load_policy, load_tokenizer, model_max_length
from components.model.source import ModelLoadError
from components.stages.prepare import prompt_budget

folder, marker = sys.argv[1], Path(sys.argv[2])
os.chdir(Path(folder).parents[2])  # a local model folder must lie in models/base/ (of cwd, here)
cfg = load_config(overrides=[f"model.name_or_path={folder}"])
calls = {"load_policy": lambda: load_policy(folder), "load_tokenizer": lambda: load_tokenizer(folder),
         "prompt_budget": lambda: prompt_budget(cfg)}
out = {}
for name, call in calls.items():
    t = time.perf_counter()
    try:
        call()
        out[name] = {"error": None}
    except ModelLoadError as exc:
        out[name] = {"error": str(exc)}
    out[name]["seconds"] = time.perf_counter() - t
out["marker_after_refusals"] = marker.exists()
out["max_length_when_trusted"] = model_max_length(folder, trust_remote_code=True)  # the setting works
out["marker_when_trusted"] = marker.exists()
print(json.dumps(out))
"""


@pytest.mark.parametrize("stdin", ["closed", "answers y", "open and silent"])
def test_custom_code_in_a_model_folder_never_runs_unless_trusted(tmp_path, stdin):
    marker = tmp_path / "custom_code_ran"
    folder = _custom_code_folder(tmp_path / "models" / "base" / "custom", marker)
    code = CUSTOM_CODE_PROBE.replace("sys.argv[1], Path(sys.argv[2])", f"{str(folder)!r}, Path({str(marker)!r})")
    if stdin == "closed":
        out = _run_python(code, tmp_path, stdin=subprocess.DEVNULL)
    elif stdin == "answers y":
        read, write = os.pipe()
        os.write(write, b"y\ny\ny\ny\ny\ny\n")
        os.close(write)
        out = _run_python(code, tmp_path, stdin=read)
        os.close(read)
    else:  # a pipe nobody writes to or closes: transformers used to wait for its 15 s prompt alarm
        read, write = os.pipe()
        out = _run_python(code, tmp_path, stdin=read)
        os.close(read)
        os.close(write)
    assert out.pop("marker_after_refusals") is False
    assert out.pop("marker_when_trusted") is True and out.pop("max_length_when_trusted") == 4096
    for name, result in out.items():
        assert result["error"] is not None, f"{name} loaded a folder that needs its own code"
        assert "\n" not in result["error"]
        assert str(folder) in result["error"] and "model.trust_remote_code" in result["error"], result["error"]
        assert result["seconds"] < 10, f"{name} took {result['seconds']:.1f} s to refuse"


# --- missing local folders ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["models/sft", "models/rl", "./nowhere", "../nowhere/model", "~/no-such-model",
                                  "/no/such/model", "bare-name", "{tmp}/existing-parent/missing"])
def test_a_missing_local_path_is_named_as_missing_not_sent_to_the_hub(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)  # no models/ here: models/sft is still the pipeline's folder, not a hub id
    (tmp_path / "existing-parent").mkdir()
    path = path.format(tmp=tmp_path)
    for load in (load_policy, load_tokenizer):
        with pytest.raises(ModelLoadError) as err:
            load(path)
        assert str(err.value) == f"model folder not found: {path} (check model.name_or_path, or run the stage " \
                                 "that writes it)"
    with pytest.raises(ModelLoadError, match="model folder not found"):
        prompt_budget(load_config(overrides=[f"model.name_or_path={path}"]))


def test_an_org_slash_name_not_on_disk_is_a_hub_id_and_the_offline_hub_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError) as err:  # HF_HUB_OFFLINE=1 in the tests (tests/conftest.py)
        load_policy("some-org/some-model")
    message = str(err.value)
    assert "\n" not in message and "'some-org/some-model'" in message and "HF_HUB_OFFLINE=1" in message


def test_a_model_path_that_is_a_file_is_named(tmp_path):
    folder = _tiny_folder(tmp_path / "policy")
    with pytest.raises(ModelLoadError, match="is a file, not a model folder: .*config.json"):
        load_policy(folder / "config.json")


def test_the_cli_prints_one_line_and_exits_2_for_a_missing_model_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "components.cli", "prepare", "--params", str(ROOT / "params.yaml"),
                           "--set", "model.name_or_path=models/sft"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == ["error: model folder not found: models/sft (check model.name_or_path, or "
                                        "run the stage that writes it)"]


# --- corrupt weights ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_safetensors_file_is_named_in_one_line(tmp_path, damage):
    folder = _tiny_folder(tmp_path / "policy")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x07" * 4096, "empty": b""}[damage])
    with pytest.raises(ModelLoadError) as err:
        load_policy(folder)
    assert str(err.value).startswith(f"corrupt weights file {weights}: ") and "\n" not in str(err.value)


def test_an_intact_folder_still_loads(tmp_path):
    folder = _tiny_folder(tmp_path / "policy")
    model, tok = load_policy(folder)
    assert model.config.vocab_size == len(tok)


# --- the hub: silent, refused, cached ----------------------------------------------------------------

HUB_PROBE = """
import json, time
from components.model.factory import load_policy
from components.model.source import ModelLoadError
t = time.perf_counter()
try:
    model, _ = load_policy("some-org/some-model")
    out = {"loaded": type(model).__name__}
except ModelLoadError as exc:
    out = {"error": str(exc)}
out["seconds"] = time.perf_counter() - t
print(json.dumps(out))
"""


def _silent_server():
    """A socket that accepts connections and never answers; returns (port, close, connections held)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()

    def close():
        stop.set()
        server.close()
        for conn in held:
            conn.close()

    return server.getsockname()[1], close, held


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once closed: connections are refused


@pytest.mark.parametrize("hub", ["accepts but never answers", "refuses connections"])
def test_an_unreachable_hub_fails_in_seconds_with_one_line(tmp_path, hub):
    port, close, _ = _silent_server() if hub == "accepts but never answers" else (_refused_port(), lambda: None, [])
    try:
        # a short etag timeout keeps the test quick; before the fix the 60 s retry timeout applied anyway
        out = _run_python(HUB_PROBE, tmp_path, env={"HF_HUB_OFFLINE": "0", "HF_HUB_ETAG_TIMEOUT": "1",
                                                    "HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    finally:
        close()
    message = out.get("error")
    assert message and "\n" not in message, out
    assert "'some-org/some-model'" in message and "HF_HUB_OFFLINE=1" in message and "model.name_or_path" in message
    assert out["seconds"] < 30, f"took {out['seconds']:.0f} s"


def test_a_cached_hub_model_loads_from_the_cache_after_one_unanswered_probe(tmp_path):
    snapshot = tmp_path / "hf-cache" / "models--some-org--some-model" / "snapshots" / ("0" * 40)
    _tiny_folder(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    port, close, connections = _silent_server()
    try:
        out = _run_python(HUB_PROBE, tmp_path, env={"HF_HUB_OFFLINE": "0", "HF_HUB_ETAG_TIMEOUT": "1",
                                                    "HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    finally:
        close()
    assert out.get("loaded") == "LlamaForCausalLM", out
    assert len(connections) == 1  # the probe; the load itself asks the hub nothing


# --- vLLM not installed ------------------------------------------------------------------------------

def test_rollout_engine_vllm_without_vllm_is_a_one_line_config_error(tmp_path, monkeypatch):
    from components.rollout import make_engine

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    for var in ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE"):  # the engine sets these
        monkeypatch.setenv(var, os.environ.get(var, "0"))
    cfg = load_config(overrides=["rollout.engine=vllm"])
    tok = build_char_tokenizer()
    model = build_tiny_model(cfg.model, tok, seed=0)
    with pytest.raises(ConfigError) as err:
        make_engine(cfg.rollout, model, tok, tmp_path, 64, seed=0)
    message = str(err.value)
    assert "\n" not in message and "rollout.engine" in message and "pip install vllm" in message
