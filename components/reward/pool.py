"""Batch scoring with a hard per-item timeout that works from any thread.

The verifier cannot be interrupted in-process (sympy holds the thread; math-verify's signal-based
timeouts only work on the main thread), so every item whose cost is not bounded by construction
(`components.reward.verify.cost_is_bounded`: math, sympy-based reasoning-gym tasks, registered
scorers) goes to a worker process that can be killed, whatever the batch size. Each
worker handles one item at a time under a deadline: a worker that hangs past it is killed, one
that dies (os._exit, SIGKILL, a segfault) is noticed through its closed pipe; either way the item
scores 0.0, is counted, and a fresh worker takes its place while the rest of the batch carries on.
Only bounded items (chain_sum's Decimal comparison, string comparisons, completions without a box)
are scored inline, so the default chain_sum RL batch never waits on a process.

The pipeline scores through `pool_for(cfg.reward)` (RL, evaluation, the champion re-evaluation,
compare); compute_score and the verl/TRL adapters through one module-level pool
(components.reward.score). Workers run components.reward.worker (the verifiers of
components.reward.verify, never compute_score: no recursion). Workers are plain `python -c`
subprocesses, not multiprocessing children: nothing is forked from a parent that may hold torch
threads, and the parent's __main__ is not re-imported.

With the user's reward functions (`reward.functions`, components.reward.user) every item goes to a
worker, which imports those functions itself: their cost is unknown, so each item gets the deadline.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Sequence

from components.config import RewardConfig

from components.reward.gym import RG_PREFIX
from components.reward.gym_tasks import PARSED_TASKS
from components.reward.verify import cost_is_bounded
from components.reward.worker import score_item

log = logging.getLogger(__name__)

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_WORKER_BOOT = "from components.reward.worker import main; main()"
_STOP_GRACE_S = 1.0  # how long a worker asked to stop may take before it is killed
STARTUP_TIMEOUT_S = 60.0  # a worker imports math-verify, sympy (and maybe reasoning_gym) before its first item


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen
    tasks: Connection  # parent -> worker
    results: Connection  # worker -> parent
    deadline: float  # start-up deadline until ready, then the current item's
    ready: bool = False
    item: int | None = None


class ScoringPool:
    """Scores (source, completion, ground truth) items like `compute_score`, each under `timeout_s`.

    workers: most standing worker processes, started as batches need them (a batch of n items
        starts at most n). 0: none standing; a batch with items that need a deadline starts one
        worker for itself and stops it afterwards (slower, still bounded).
    timeout_s: per-item limit; an item past it scores 0.0 (counted in `timeouts`). Items whose cost is
        bounded by construction (`cost_is_bounded`) are scored inline; all others go to a worker.
    extra_scorers_module: module each worker imports first, to register extra scorers
        (`components.reward.verify.register_scorer`), e.g. "tests.support.scoring_hooks".
    preload: modules each worker imports before it reports ready, so that their import time is not
        the first item's (e.g. "reasoning_gym" for tasks other than chain_sum); math-verify always is.
    reward_functions: the user's (spec, weight) pairs as the config resolved reward.functions; when
        given, their weighted sum replaces the built-in verifiers and every item goes to a worker.
    startup_timeout_s: how long a worker may take to start before the pool gives up with an error.

    Counters: `timeouts` (killed for running past timeout_s), `crashes` (died while scoring),
    `errors` (a verifier raised: compute_score's swallowed errors and registered scorers' exceptions
    alike, the item scoring 0.0; or a user function raised or gave no finite number, its term 0.0).
    Thread-safe; close() (or the context manager) stops the workers, and they are also stopped when
    the pool is garbage-collected or the interpreter exits.
    """

    def __init__(
        self,
        workers: int,
        timeout_s: float,
        *,
        extra_scorers_module: str | None = None,
        preload: Sequence[str] = (),
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        reward_functions: Sequence[tuple[str, float]] = (),
    ) -> None:
        if workers < 0 or timeout_s <= 0 or startup_timeout_s <= 0:
            raise ValueError("workers must be >= 0 and the timeouts > 0")
        self.num_workers = workers
        self.timeout_s = float(timeout_s)
        self.extra_scorers_module = extra_scorers_module
        self.preload = tuple(preload)
        self.reward_functions = [(str(spec), float(weight)) for spec, weight in reward_functions]
        self.startup_timeout_s = float(startup_timeout_s)
        self.timeouts = self.crashes = self.errors = 0
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()  # a forked child must not talk to the parent's workers
        self._closed = False
        if extra_scorers_module:  # the inline path needs the same scorers as the workers
            importlib.import_module(extra_scorers_module)
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    # --- public API -----------------------------------------------------------------------------

    def score(
        self,
        sources: Sequence[str],
        completions: Sequence[Any],
        ground_truths: Sequence[Any],
        extra_infos: Sequence[dict | None] | None = None,
    ) -> list[float]:
        """One reward per completion, in order: bounded items inline, every other item (all of them
        with reward functions) in a worker."""
        items = batch_items(sources, completions, ground_truths, extra_infos)
        self._check_open()
        results = [0.0] * len(items)
        pooled = []
        for index, item in enumerate(items):
            if not self.reward_functions and cost_is_bounded(item[0], item[1]):
                results[index] = self._score_inline(*item)
            else:
                pooled.append(index)
        if pooled:
            for index, value in zip(pooled, self._score_in_pool([items[i] for i in pooled])):
                results[index] = value
        return results

    def start(self) -> None:
        """Start the standing workers now and wait until each is ready, so that no batch waits for their
        start-up (after a timeout the killed worker's replacement starts in the background of the next call)."""
        with self._lock:
            self._check_open()
            while len(self._workers) < self.num_workers:
                self._workers.append(self._spawn())
            while starting := [w for w in self._workers if not w.ready]:
                timeout = max(0.0, min(w.deadline for w in starting) - time.monotonic())
                readable = set(wait([w.results for w in starting], timeout))
                for worker in starting:
                    if worker.results in readable:
                        self._receive(worker, [])
                    elif time.monotonic() >= worker.deadline:
                        self._expire(worker, [])  # raises: a worker that cannot start is an error

    def score_one(self, source: str, completion: Any, ground_truth: Any, extra_info: dict | None = None) -> float:
        """One item, like score(): inline if its cost is bounded, else in a worker under timeout_s."""
        return self.score([source], [completion], [ground_truth], [extra_info])[0]

    def counters(self) -> dict[str, int]:
        """Items lost to timeouts, crashes and scorer errors since the pool was made (for logging)."""
        return {"timeouts": self.timeouts, "crashes": self.crashes, "errors": self.errors}

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (empty until the first pooled batch)."""
        return [w.proc.pid for w in self._workers]

    def close(self) -> None:
        """Stop every worker; the pool cannot be used afterwards. Idempotent."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- inline ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the scoring pool is closed")

    def _score_inline(self, source: str, completion: Any, truth: Any, extra: dict | None) -> float:
        value, error = score_item(source, completion, truth, extra)
        if error is not None:
            self.errors += 1
            log.warning("scorer for %s raised %s", source, error)
        return value

    # --- pool -----------------------------------------------------------------------------------

    def _score_in_pool(self, items: list[tuple]) -> list[float]:
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            self._check_open()
            if "reasoning_gym" not in self.preload and any(_needs_reasoning_gym(item[0]) for item in items):
                # Its import (seconds) must not count against an item's timeout: restart preloaded.
                self.preload += ("reasoning_gym",)
                _stop_all(self._workers)
            # As many workers as this batch can use, up to num_workers: one item starts one.
            while len(self._workers) < min(max(self.num_workers, 1), len(items)):
                self._workers.append(self._spawn())
            try:
                return self._run(items)
            except BaseException:
                # A worker still busy with this batch would answer into the next one: drop it.
                for worker in [w for w in self._workers if w.item is not None]:
                    self._workers.remove(worker)
                    _stop(worker, graceful=False)
                raise
            finally:
                if self.num_workers == 0:  # no standing workers: this batch's one goes with it
                    _stop_all(self._workers)

    def _after_fork(self) -> None:  # the workers (and maybe a held lock) are the parent's: start afresh
        for worker in self._workers:  # close this process's copies of their pipes; they run on
            worker.tasks.close()
            worker.results.close()
        self._workers.clear()  # the child's copy of the list: its finalizer then stops nothing
        self._lock, self._pid = threading.Lock(), os.getpid()

    def _run(self, items: list[tuple]) -> list[float]:
        """Keep every ready worker busy until each item has a result, a timeout or a crash."""
        results = [0.0] * len(items)
        pending = deque(range(len(items)))
        remaining = len(items)
        while remaining:
            for worker in self._workers:
                if worker.ready and worker.item is None and pending:
                    remaining -= self._dispatch(worker, pending, items, results)
            waiting = [w for w in self._workers if not w.ready or w.item is not None]
            if not waiting:
                continue
            timeout = max(0.0, min(w.deadline for w in waiting) - time.monotonic())
            readable = set(wait([w.results for w in waiting], timeout))
            for worker in waiting:
                if worker.results in readable:
                    remaining -= self._receive(worker, results)
                elif time.monotonic() >= worker.deadline:
                    remaining -= self._expire(worker, results)
        return results

    def _spawn(self) -> _Worker:
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        argv = [sys.executable, "-c", _WORKER_BOOT, str(task_r), str(result_w), str(os.getpid()),
                self.extra_scorers_module or "", json.dumps(self.reward_functions), *self.preload]
        try:
            proc = subprocess.Popen(argv, pass_fds=(task_r, result_w), env=_worker_env(), stdin=subprocess.DEVNULL)
        except BaseException:
            for fd in (task_r, task_w, result_r, result_w):
                os.close(fd)
            raise
        os.close(task_r)  # the worker's ends: the parent keeps only its own
        os.close(result_w)
        return _Worker(proc, Connection(task_w, readable=False), Connection(result_r, writable=False),
                       deadline=time.monotonic() + self.startup_timeout_s)

    def _replace(self, worker: _Worker) -> None:
        _stop(worker, graceful=False)
        self._workers[self._workers.index(worker)] = self._spawn()

    def _dispatch(self, worker: _Worker, pending: deque, items: list[tuple], results: list[float]) -> int:
        """Send the next pending item to an idle worker; returns how many items that finished (0 or 1)."""
        index = pending.popleft()
        try:
            worker.tasks.send((index, *items[index]))
        except (BrokenPipeError, ConnectionError, EOFError, OSError):
            pending.appendleft(index)  # the worker died while idle: not this item's fault
            self._replace(worker)
            return 0
        except Exception as exc:  # e.g. an extra_info that cannot be pickled
            self.errors += 1
            log.warning("cannot send item %d to a scoring worker: %s: %s", index, type(exc).__name__, exc)
            results[index] = 0.0
            return 1
        worker.item, worker.deadline = index, time.monotonic() + self.timeout_s
        return 0

    def _receive(self, worker: _Worker, results: list[float]) -> int:
        try:
            message = worker.results.recv()
        except (EOFError, OSError):
            return self._crashed(worker, results)
        kind = message[0]
        if kind == "ready":
            worker.ready, worker.deadline = True, math.inf
            return 0
        _, index, value, error = message
        if error is not None:
            self.errors += 1
            log.warning("scoring item %d: %s", index, error)
        results[index] = float(value)
        worker.item, worker.deadline = None, math.inf
        return 1

    def _crashed(self, worker: _Worker, results: list[float]) -> int:
        if not worker.ready:
            code = worker.proc.wait()
            self._workers.remove(worker)
            _stop(worker, graceful=False)
            raise RuntimeError(f"a scoring worker exited with code {code} while starting (its stderr says why)")
        index = worker.item
        try:  # its pipe closes a moment before it is reaped
            code: int | None = worker.proc.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            code = None
        log.warning("scoring worker %d died (exit code %s) on item %s", worker.proc.pid, code, index)
        self._replace(worker)
        if index is None:
            return 0
        self.crashes += 1
        results[index] = 0.0
        return 1

    def _expire(self, worker: _Worker, results: list[float]) -> int:
        if not worker.ready:
            self._workers.remove(worker)
            _stop(worker, graceful=False)
            raise RuntimeError(f"a scoring worker did not start within {self.startup_timeout_s:.0f} s")
        index = worker.item
        log.warning("scoring item %s ran past %.1f s: killing worker %d", index, self.timeout_s, worker.proc.pid)
        self.timeouts += 1
        results[index] = 0.0
        self._replace(worker)
        return 1


def _needs_reasoning_gym(source: Any) -> bool:
    return str(source).startswith(RG_PREFIX) and str(source)[len(RG_PREFIX) :] in PARSED_TASKS


def batch_items(sources, completions, ground_truths, extra_infos) -> list[tuple]:
    """(source, completion, truth, extra_info) per item; a ValueError unless every column has one each."""
    extras = [None] * len(completions) if extra_infos is None else list(extra_infos)
    if not len(sources) == len(completions) == len(ground_truths) == len(extras):
        raise ValueError("sources, completions, ground_truths and extra_infos must have one entry per item")
    return list(zip(sources, completions, ground_truths, extras))


def _worker_env() -> dict[str, str]:
    """The parent's environment, its import path (so workers find the same modules) and one thread."""
    env = dict(os.environ)
    paths = [_PROJECT_ROOT] + [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if os.path.isdir(p)))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def _stop(worker: _Worker, graceful: bool) -> None:
    """Stop one worker and reap it; a graceful stop asks first and kills only after a grace period."""
    if graceful:
        try:
            worker.tasks.send(None)
        except (OSError, ValueError):
            pass
    worker.tasks.close()
    try:
        worker.proc.wait(timeout=_STOP_GRACE_S if graceful else 0.0)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait()
    worker.results.close()


def _stop_all(workers: list[_Worker]) -> None:
    while workers:
        _stop(workers.pop(), graceful=True)


def pool_for(reward: RewardConfig) -> ScoringPool:
    """The scoring pool as params.yaml's `reward` section configures it: how every stage builds one."""
    return ScoringPool(reward.workers, reward.timeout_s,
                       reward_functions=[(f.path, f.weight) for f in reward.functions])
