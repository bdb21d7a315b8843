"""Running the catalogue, in one process or spread over several.

Invariants of kind "shape" (and the abstract dispatch ones) do not depend on an environment;
the others are proven per environment. With ``jobs > 1`` the environments are split between
worker processes (forked, so nothing is imported twice), the environment-free invariants go to
the first worker, and each worker reports every invariant as soon as it has decided its part;
the parts are merged (groups concatenated, times added) in catalogue order.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import time
import traceback
from collections.abc import Callable, Sequence

from . import core, worlds

__all__ = ["Plan", "execute", "default_jobs"]

# Relative cost of an environment's dispatch proofs (CUDA profiles have twice the worlds and
# heavier memory-format terms).
_ENV_WEIGHT = {True: 3.0, False: 1.0}
_GLOBAL_WEIGHT = 4.0


@dataclasses.dataclass
class Plan:
    names: Sequence[str] | None = None
    dims: Sequence[int] = (1, 2, 3)
    envs: Sequence[str] | None = None  # None: symconv's presets (+ proof-only profiles)
    timeout_ms: int | None = None
    replay: bool = True
    jobs: int = 1

    def invariants(self) -> list[core.Invariant]:
        return core.select(self.names)


def default_jobs() -> int:
    n = os.cpu_count() or 1
    return max(1, min(2, n))


def _global(inv: core.Invariant) -> bool:
    return inv.kind != "dispatch"


def _split(plan: Plan) -> list[tuple[list[str], list[str], bool]]:
    """(envs, proof-only profiles, runs the environment-free invariants) per worker."""
    if plan.envs is None:
        envs = list(worlds.PRESET_NAMES)
        profiles = [n for n in worlds.ENV_NAMES if n not in worlds.PRESET_NAMES]
    else:
        envs, profiles = list(plan.envs), []
    jobs = max(1, min(plan.jobs, len(envs) + len(profiles)))
    loads = [_GLOBAL_WEIGHT] + [0.0] * (jobs - 1)
    parts: list[tuple[list[str], list[str], bool]] = [([], [], i == 0) for i in range(jobs)]
    items = [(e, False) for e in envs] + [(p, True) for p in profiles]
    items.sort(key=lambda it: -_ENV_WEIGHT[worlds.profile(it[0]).cuda_available])
    for name, is_profile in items:
        i = min(range(jobs), key=lambda j: loads[j])
        loads[i] += _ENV_WEIGHT[worlds.profile(name).cuda_available]
        (parts[i][1] if is_profile else parts[i][0]).append(name)
    return parts


def _work(plan: Plan, envs: list[str], profiles: list[str], with_global: bool, emit) -> None:
    """Run this worker's share; ``emit(name, groups, seconds, error)`` per invariant."""
    cache = worlds.WorldCache()
    any_env = bool(envs or profiles)
    all_envs = list(plan.envs) if plan.envs is not None else list(worlds.PRESET_NAMES)
    run = core.Run(dims=plan.dims, envs=envs, profiles=profiles, timeout_ms=plan.timeout_ms,
                   replay=plan.replay, cache=cache, eager_replay=with_global, all_envs=all_envs)
    full: core.Run | None = None
    if with_global:
        full = core.Run(dims=plan.dims, envs=all_envs,
                        profiles=[] if plan.envs is not None else
                        [n for n in worlds.ENV_NAMES if n not in worlds.PRESET_NAMES],
                        timeout_ms=plan.timeout_ms, replay=plan.replay, cache=cache,
                        replayer=run)
    try:
        for inv in plan.invariants():
            if _global(inv) or inv.name in _GLOBAL_DISPATCH:
                if full is None:  # this worker does not run the global invariants
                    continue
                res = core.run_invariant(inv, full)
            else:
                if not any_env:
                    continue
                res = core.run_invariant(inv, run)
            emit(inv.name, res.groups, res.seconds, res.error)
    finally:
        run.close()
        if full is not None:
            full.close()


# dispatch invariants proven once for all environments (the abstract rule table)
_GLOBAL_DISPATCH = ("dispatch_total", "dispatch_deterministic")


def _parts_expected(plan: Plan, inv: core.Invariant, splits) -> int:
    if _global(inv) or inv.name in _GLOBAL_DISPATCH:
        return 1
    return sum(1 for envs, profiles, _ in splits if envs or profiles)


def _worker_main(plan, envs, profiles, with_global, q) -> None:  # pragma: no cover - forked
    def emit(name, groups, seconds, error):
        q.put(("result", name, groups, seconds, error))
    try:
        _work(plan, envs, profiles, with_global, emit)
    except BaseException as e:  # noqa: BLE001
        q.put(("crash", "".join(traceback.format_exception_only(type(e), e)).strip()))
    finally:
        q.put(("done",))


def execute(plan: Plan, on_result: Callable[[core.InvariantResult], None] | None = None
            ) -> list[core.InvariantResult]:
    """Run the plan; ``on_result`` sees each invariant's merged result in catalogue order."""
    invs = plan.invariants()
    splits = _split(plan)
    order = [inv.name for inv in invs]
    by_name = {inv.name: inv for inv in invs}
    need = {inv.name: _parts_expected(plan, inv, splits) for inv in invs}
    got: dict[str, list] = {n: [] for n in order}
    results: dict[str, core.InvariantResult] = {}
    next_i = 0

    def merge(name):
        parts = got[name]
        groups = [g for p in parts for g in p[0]]
        seconds = sum(p[1] for p in parts)
        error = "; ".join(p[2] for p in parts if p[2])
        return core.InvariantResult(by_name[name], groups, seconds, error)

    def flush():
        nonlocal next_i
        while next_i < len(order) and len(got[order[next_i]]) >= need[order[next_i]]:
            name = order[next_i]
            results[name] = merge(name)
            if on_result is not None:
                on_result(results[name])
            next_i += 1

    def accept(name, groups, seconds, error):
        got[name].append((groups, seconds, error))
        flush()

    if len(splits) == 1 or not _can_fork():
        for envs, profiles, with_global in splits:
            _work(plan, envs, profiles, with_global, accept)
        flush()
        return [results[n] for n in order if n in results]

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(plan, envs, profiles, g, q), daemon=True)
             for envs, profiles, g in splits]
    for p in procs:
        p.start()
    done, crash = 0, ""
    while done < len(procs):
        try:
            msg = q.get(timeout=1.0)
        except queue.Empty:
            if all(not p.is_alive() for p in procs) and q.empty():
                crash = crash or "a worker process died"
                break
            continue
        if msg[0] == "result":
            accept(*msg[1:])
        elif msg[0] == "crash":
            crash = msg[1]
        elif msg[0] == "done":
            done += 1
    for p in procs:
        p.join(timeout=5)
    # anything a dead worker never reported is an error, never a verdict
    for name in order:
        while len(got[name]) < need[name]:
            got[name].append(([], 0.0, f"not decided: {crash or 'a worker process died'}"))
    flush()
    return [results[n] for n in order if n in results]


def _can_fork() -> bool:
    return "fork" in mp.get_all_start_methods()


def wall_clock() -> float:
    return time.perf_counter()
