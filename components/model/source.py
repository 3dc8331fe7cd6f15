"""Where a model is read from (a local folder or a Hugging Face hub id), checked before transformers
touches it, and the one-line errors for what the user fixes: a missing folder, a folder whose own
Python would run, a corrupt weights file, a hub that is off or does not answer.

Why check first rather than let transformers fail: it reports a missing `models/sft` as a hub error
and a missing absolute path as a malformed repo id; it asks on stdin before running a folder's code
unless told `trust_remote_code` explicitly; and against a hub that accepts connections but never
answers, huggingface_hub retries a missing file's metadata six times with a 60 s read timeout
(file_download._ETAG_RETRY_TIMEOUT) per file: minutes, where one bounded probe here takes seconds.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from components.config import ConfigError

log = logging.getLogger(__name__)

# The hub's repo id shape, `org/name` (huggingface_hub.utils.validate_repo_id); a bare name with no
# org is read as a local folder, as before.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# The folder the pipeline writes its models under (models/init, and models/sft, models/rl by default):
# `models/...` is a local path even where models/ does not exist yet (a fresh clone, another cwd).
PIPELINE_MODELS = "models"
SETTING = "model.name_or_path"


class ModelLoadError(ConfigError):
    """A model could not be loaded for a reason fixed by a setting or on disk; the message is one line."""


@dataclass(frozen=True)
class ModelSource:
    """`where` is a local folder (a hub model read from the cache is its snapshot folder) or a hub id."""

    where: str
    is_hub: bool = False


def _looks_like_hub_id(name: str) -> bool:
    """org/name, no path syntax, and `org` neither a folder here nor the pipeline's models folder
    (so a missing `models/sft` or `out/sft` is a missing path, never a hub request)."""
    if not _HUB_ID.fullmatch(name) or ".." in name or "--" in name or name.endswith("."):
        return False
    org = name.split("/")[0]
    return org != PIPELINE_MODELS and not Path(org).is_dir()


def resolve(name_or_path: str | Path) -> ModelSource:
    """The model's source; a path that does not exist is named as missing, never sent to the hub."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        check_weights(path)
        return ModelSource(str(path))
    if path.exists():
        raise ModelLoadError(f"model path is a file, not a model folder: {name} (set {SETTING} to the folder)")
    if not _looks_like_hub_id(name):
        raise ModelLoadError(f"model folder not found: {name} (check {SETTING}, or run the stage that writes it)")
    return _hub_source(name)


def check_weights(folder: Path) -> None:
    """Open each safetensors file's header (no tensor data is read): a truncated or garbage file is
    named here instead of surfacing as a deserialisation traceback mid-load."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"corrupt weights file {file}: {_first_line(exc)}; re-save or re-download "
                                 "the model") from None


def _hub_source(repo_id: str) -> ModelSource:
    """A hub id: from the cache when the hub is off or unreachable, else after one probe of its config
    with the hub's etag timeout (HF_HUB_ETAG_TIMEOUT, default 10 s, connect and read) and no retries."""
    import httpx2
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    cached = try_to_load_from_cache(repo_id, "config.json")
    advice = f"set {SETTING} to a local folder, or download it and run with HF_HUB_OFFLINE=1"
    if constants.HF_HUB_OFFLINE:
        if isinstance(cached, str):
            return _cached(cached)
        raise ModelLoadError(f"model {repo_id!r} is not a local folder and not in the Hugging Face cache, and "
                             f"the hub is off (HF_HUB_OFFLINE=1): set {SETTING} to a local folder, or fetch it "
                             "once with HF_HUB_OFFLINE=0")
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except (httpx2.HTTPError, OSError) as exc:  # refused, reset, timed out, DNS; or an HTTP error status
        status = getattr(exc.response, "status_code", None) if isinstance(exc, HfHubHTTPError) else None
        if status is not None and status < 500:  # the hub answered: no such repo, gated, unauthorised
            raise ModelLoadError(f"model {repo_id!r} is not a local folder, and the hub at {constants.ENDPOINT} "
                                 f"answered HTTP {status} for it: check the name or your token, or {advice}") from None
        if isinstance(cached, str):
            log.warning("hub at %s unreachable (%s): loading %s from the local cache", constants.ENDPOINT,
                        type(exc).__name__, repo_id)
            return _cached(cached)
        raise ModelLoadError(f"model {repo_id!r} is not a local folder, and the hub at {constants.ENDPOINT} "
                             f"gave no answer ({type(exc).__name__}; timeout HF_HUB_ETAG_TIMEOUT="
                             f"{constants.HF_HUB_ETAG_TIMEOUT} s, no retries): "
                             f"{advice}") from None
    return ModelSource(repo_id, is_hub=True)


def _cached(config_file: str) -> ModelSource:
    """The cached snapshot folder, loaded as a local folder: transformers then makes no hub call at all
    (its adapter lookup ignores local_files_only and would retry an unreachable hub for ~25 s)."""
    folder = Path(config_file).parent
    check_weights(folder)
    return ModelSource(str(folder))


@contextlib.contextmanager
def loading_errors(source: ModelSource) -> Iterator[None]:
    """Turn what transformers raises while loading `source` into one line naming it and the fix."""
    try:
        yield
    except ModelLoadError:
        raise
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise ModelLoadError(f"model {source.where} ships its own Python code (auto_map in its config), which "
                             "runs only with model.trust_remote_code=true: read that code first, or use a model "
                             "without it") from None
    except OSError as exc:  # a missing weights/config file, or a hub failure after the probe
        raise ModelLoadError(f"cannot load model {source.where}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
