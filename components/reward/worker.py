"""What runs inside a scoring worker process (components.reward.pool starts it), and the one function
that scores an item, there or inline in the parent.

A worker is a plain `python -c` subprocess: it imports what it needs itself (the preloads, the extra
scorers module, the user's reward functions named by reward.functions), then answers items from its
task pipe one at a time until the pipe closes or its parent dies. The deadline is the parent's: it
kills a worker whose item runs past reward.timeout_s.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Sequence

from components.reward.extract import as_text
from components.reward.user import WeightedFunction, combined_score, load_functions
from components.reward.verify import score_and_error, warm_up


def score_item(source: str, completion: Any, truth: Any, extra: dict | None,
               functions: Sequence[WeightedFunction] = ()) -> tuple[float, str | None]:
    """(reward, None), or (the reward, what went wrong) when a verifier or a scorer raised or a user
    function gave no number (the pool counts those). With `functions` (reward.functions) their weighted
    sum replaces the built-in verifiers."""
    if functions:
        return combined_score(functions, str(source), as_text(completion), truth, extra)
    try:
        return score_and_error(source, completion, truth, extra)
    except Exception as exc:  # a registered scorer: compute_score lets its exceptions through
        return 0.0, f"{type(exc).__name__}: {exc}"


def _exit_with_parent(parent_pid: int) -> None:
    # Closing the task pipe ends an idle worker; this also ends one stuck in sympy when the
    # parent dies without killing it (polled, since the GIL may be held for a while).
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def main() -> None:
    """Entry point: argv is task fd, result fd, parent pid, extra module, reward functions (JSON list of
    [spec, weight]), preloads. Answers ("scored", index, reward, error or None) per item."""
    task_fd, result_fd, parent_pid, extra_module, functions_json, *preload = sys.argv[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_with_parent, args=(int(parent_pid),), daemon=True).start()
    tasks = Connection(int(task_fd), writable=False)
    results = Connection(int(result_fd), readable=False)
    for module in preload:
        importlib.import_module(module)
    if extra_module:
        importlib.import_module(extra_module)
    functions = load_functions(json.loads(functions_json))
    if not functions:  # the built-in verifiers score: pay their first-call costs now
        warm_up()  # imports sympy, the LaTeX grammar and the trigonometric simplifier now
    results.send(("ready", os.getpid()))
    while True:
        try:
            message = tasks.recv()
        except EOFError:
            return
        if message is None:
            return
        index, source, completion, truth, extra = message
        results.send(("scored", index, *score_item(source, completion, truth, extra, functions)))
