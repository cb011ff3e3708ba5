"""Executors: run independent, idempotent, content-addressed units of work (one (model, task) evaluation, one
probe pass) either in this process (`local`, the default, no dependency) or as Ray tasks (`ray`, one task per unit
with its resource request; a worker that dies is retried by Ray, a unit's own fault is recorded once)."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import store

RAY_MAX_RETRIES = 3   # Ray re-runs a unit whose worker died (system failure) at most this many times
CLAIMS = "running"    # <store>/running/<unit>.pid while a unit runs ("host pid"); claims.log: one line per start/end


@dataclass(frozen=True)
class Unit:
    """One unit of work. fn(*args) writes `outputs` (absolute paths under the store, each written atomically) and
    returns a small picklable value; fn must be a module-level function so Ray can ship it. A unit whose outputs
    all exist is done and is not run again (idempotent)."""

    outputs: tuple[Path, ...]
    fn: Callable
    args: tuple
    label: str                 # for people: "m0 lm:en"
    group: str = ""            # units of one model: consecutive in the local executor, so its model loads once

    @property
    def key(self) -> str:
        """The unit's content address: its first output relative to the store."""
        p = Path(self.outputs[0])
        try:
            return str(p.relative_to(store.home()))
        except ValueError:
            return str(p)


@dataclass
class Outcome:
    """What became of one unit: ok (value: what fn returned; cached: nothing was run) or failed (one-line reason)."""

    unit: Unit | None          # None inside a worker (not shipped back); set by the executor
    ok: bool
    value: object = None
    reason: str | None = None
    seconds: float = 0.0
    cached: bool = False
    pid: int | None = field(default=None, repr=False)


EXECUTORS: dict[str, Callable] = {}


def executor(name: str):
    """Register fn(units, on_done, address=None, verbose=False) -> list[Outcome] under `name`."""
    def register(fn):
        EXECUTORS[name] = fn
        return fn
    return register


def run(name: str, units: list[Unit], on_done: Callable[[Outcome], None] = lambda o: None, address: str | None = None,
        verbose: bool = False) -> list[Outcome]:
    """Run every unit on the named executor; on_done(outcome) is called in this process as each one finishes."""
    if name not in EXECUTORS:
        raise ValueError(f"--executor {name}: unknown; choose one of {', '.join(sorted(EXECUTORS))}")
    if address and name != "ray":
        raise ValueError(f"--ray-address {address}: only with --executor ray")
    return EXECUTORS[name](units, on_done, address=address, verbose=verbose)


# -- one unit, wherever it runs -------------------------------------------------------------------------------
def claim_path(home: Path, unit: Unit) -> Path:
    return Path(home) / CLAIMS / (unit.key.replace(os.sep, "+") + ".pid")


def _log_claim(home: Path, line: str) -> None:
    """One appended line (O_APPEND, shorter than PIPE_BUF: lines from concurrent workers never interleave)."""
    with open(Path(home) / CLAIMS / "claims.log", "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_stale(home: Path, unit: Unit) -> None:
    """A claim left by a worker of this host that died mid-unit: remove the temporary files it may have left
    beside the unit's outputs (store.atomic_write_text's `.<name>.*.tmp`, SimilarityCache's `<stem>.tmp<suffix>`);
    a live claimant's are kept."""
    claim = claim_path(home, unit)
    try:
        host, pid = claim.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return
    if host != socket.gethostname() or _alive(int(pid)):
        return
    for out in unit.outputs:
        out = Path(out)
        for tmp in [*out.parent.glob(f".{out.name}.*.tmp"), out.with_name(f"{out.stem}.tmp{out.suffix}")]:
            tmp.unlink(missing_ok=True)


def run_unit(unit: Unit, home: str) -> Outcome:
    """Run one unit against the store at `home` (a path every worker sees): skip it when its outputs exist; while
    it runs, <home>/running/<unit>.pid names the process holding it; a ModelFault is the unit's own failure."""
    from .sources import ModelFault

    os.environ["BABELMERGE_HOME"] = str(home)  # the driver's store, whatever this worker was started with
    if all(Path(o).exists() for o in unit.outputs):
        return Outcome(None, True, cached=True)
    (Path(home) / CLAIMS).mkdir(parents=True, exist_ok=True)
    _clear_stale(Path(home), unit)
    claim, pid, t0 = claim_path(Path(home), unit), os.getpid(), time.perf_counter()
    store.atomic_write_text(claim, f"{socket.gethostname()} {pid}\n")
    _log_claim(Path(home), f"start {pid} {unit.key}")
    try:
        out = Outcome(None, True, value=unit.fn(*unit.args), pid=pid)
    except ModelFault as e:
        out = Outcome(None, False, reason=(str(e).splitlines() or ["ModelFault"])[0], pid=pid)
    finally:
        claim.unlink(missing_ok=True)
    _log_claim(Path(home), f"{'done' if out.ok else 'failed'} {pid} {unit.key}")
    out.seconds = time.perf_counter() - t0
    return out


# -- executors ----------------------------------------------------------------------------------------------
@executor("local")
def run_local(units: list[Unit], on_done, address=None, verbose=False) -> list[Outcome]:
    """In this process, one unit after another, the units of one group together (their model is loaded once)."""
    first: dict[str, int] = {}
    for i, u in enumerate(units):
        first.setdefault(u.group, i)
    home, outs = store.home(), []
    for i in sorted(range(len(units)), key=lambda i: (first[units[i].group], i)):
        o = run_unit(units[i], str(home))
        o.unit = units[i]
        on_done(o)
        outs.append(o)
    return outs


def ray_module():
    """Ray, imported only when chosen."""
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray: ray is not installed; pip install 'babelmerge[ray]'") from None
    return ray


def ray_connect(address: str | None = None, verbose: bool = False):
    """A Ray session: the one already initialised in this process, else ray.init(address) (None: a new local
    cluster). The pinned numerics (cli.NUMERICS) are passed to the workers, which import torch themselves."""
    ray = ray_module()
    if not ray.is_initialized():
        from .cli import NUMERICS

        env = {k: os.environ[k] for k in NUMERICS if k in os.environ}
        ray.init(address=address, log_to_driver=verbose, runtime_env={"env_vars": env} if env else None)
    return ray


def ray_resources(ray) -> dict:
    """One GPU per unit where the cluster has GPUs, else one CPU."""
    return {"num_gpus": 1, "num_cpus": 0} if ray.cluster_resources().get("GPU", 0) > 0 else {"num_cpus": 1}


@executor("ray")
def run_ray(units: list[Unit], on_done, address=None, verbose=False) -> list[Outcome]:
    """Each unit a Ray task (ray_resources), all submitted at once; ray.wait reports them as they finish. A worker
    that dies is retried up to RAY_MAX_RETRIES times (the unit is idempotent, its writes atomic); a unit's own
    fault comes back as a failed Outcome and is never retried (retry_exceptions=False); after the retries a lost
    unit is failed with a one-line reason. Any other exception in a unit is a bug: the rest are cancelled and it
    is raised here."""
    if not units:
        return []
    ray = ray_connect(address, verbose)
    task = ray.remote(run_unit).options(max_retries=RAY_MAX_RETRIES, retry_exceptions=False, **ray_resources(ray))
    home = str(store.home())
    pending = {task.remote(u, home): u for u in units}
    outs = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            u = pending.pop(ref)
            try:
                o = ray.get(ref)
                o.unit = u
            except ray.exceptions.RayTaskError as e:
                for r in pending:
                    ray.cancel(r, force=True)
                raise e.as_instanceof_cause() from None
            except ray.exceptions.RayError as e:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                o = Outcome(u, False, reason=f"{u.label}: lost its worker {RAY_MAX_RETRIES + 1} times ({type(e).__name__}: {reason})")
            on_done(o)
            outs.append(o)
    return outs
