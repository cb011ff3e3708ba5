"""Cluster launch files for babelmerge commands, as text: an sbatch script that starts a Ray cluster over a Slurm
allocation and runs one command on it with `--executor ray` (the head/worker pattern of Ray's guide "Deploying on
Slurm", docs.ray.io/en/latest/cluster/vms/user-guides/community/slurm.html), a Slurm array script with one task per
unit and the local executor, and a KubeRay RayJob manifest (apiVersion ray.io/v1, KubeRay's RayJob API). Every node
shares one store, $BABELMERGE_HOME, whose units are keyed by content hash and written atomically (harness/store.py).
Pure functions; the command line writes the text."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# The commands that take `--executor ray [--ray-address ADDRESS]` (harness/executors.py).
RAY_COMMANDS = (("evaluate",), ("similarity",), ("run",), ("methods", "bench"))
# The commands whose work splits into named units, one per array task: submissions, or a method's scenarios.
ARRAY_COMMANDS = (("evaluate",), ("methods", "bench"))
UNIT = "{unit}"  # where an array task's unit goes in the command (appended at the end when absent)

_TIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):(\d{2}):(\d{2})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,-]*$")          # partition list, job name
_K8S = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")          # a DNS-1123 label: RayJob and PVC names
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")  # Kubernetes resource quantities


@dataclass(frozen=True)
class Slurm:
    """What to ask Slurm for. gpus_per_node 0 asks for none; partition None leaves the cluster's default."""
    nodes: int = 2
    gpus_per_node: int = 0
    cpus_per_task: int = 8
    time: str = "04:00:00"
    partition: str | None = None
    job_name: str = "babelmerge"
    setup: tuple[str, ...] = ()     # shell lines run first on the batch host (module load, venv activation)


@dataclass(frozen=True)
class RayJob:
    """What to ask KubeRay for: a head pod (no GPU, runs the command) and `workers` identical worker pods."""
    image: str
    pvc: str
    name: str = "babelmerge"
    workers: int = 1
    gpus_per_worker: int = 0
    cpus_per_worker: str = "8"
    memory_per_worker: str = "32Gi"
    head_cpus: str = "2"
    head_memory: str = "8Gi"
    mount: str = "/mnt/babelmerge"  # where the PVC is mounted in every pod
    store: str = "/mnt/babelmerge/store"  # BABELMERGE_HOME in every pod: on the PVC
    workdir: str | None = None      # the babelmerge checkout the command runs in (default: the image's own)
    ray_version: str | None = None


def _fail(where: str, what: str) -> None:
    raise ValueError(f"cluster: {where}: {what}")


def command_args(argv: list[str], allowed=RAY_COMMANDS, executor: bool = True) -> list[str]:
    """The babelmerge arguments after `--`, checked: a command that takes the executor (or has units, for an
    array), without the options the script sets itself. argv: ['evaluate', '--limit', '4'] -> the same list."""
    args = list(argv[1:] if argv[:1] == ["--"] else argv)
    names = " | ".join(" ".join(c) for c in allowed)
    if not args:
        _fail("command", f"missing; put the babelmerge command after `--`, one of: {names}")
    if not any(tuple(args[:len(c)]) == c for c in allowed):
        _fail("command", f"{args[0]!r} is not one of {names}; give one of those after `--`")
    own = ("--executor", "--ray-address") if executor else ()
    for a in args:
        if a.split("=", 1)[0] in own:
            _fail("command", f"{a.split('=', 1)[0]} is set by the generated script; leave it out")
    return args


def _check_slurm(s: Slurm, store: str) -> None:
    if s.nodes < 1:
        _fail("--nodes", f"{s.nodes}: must be 1 or more")
    if s.gpus_per_node < 0:
        _fail("--gpus-per-node", f"{s.gpus_per_node}: must be 0 or more")
    if s.cpus_per_task < 1:
        _fail("--cpus-per-task", f"{s.cpus_per_task}: must be 1 or more")
    m = _TIME.match(s.time)
    if not m or int(m.group(3)) > 59 or int(m.group(4)) > 59 or not any(int(g or 0) for g in m.groups()):
        _fail("--time", f"{s.time!r}: not a positive duration; write HH:MM:SS or D-HH:MM:SS, e.g. 04:00:00")
    if s.partition is not None and not _NAME.match(s.partition):
        _fail("--partition", f"{s.partition!r}: not a partition name (letters, digits, _ . , -)")
    if not _NAME.match(s.job_name):
        _fail("--job-name", f"{s.job_name!r}: use letters, digits, _ . , -")
    if any("\n" in ln or "\r" in ln for ln in s.setup):
        _fail("--setup", "a line holds a line break; give one --setup per line")
    _check_store(store)


def _check_store(store: str | None) -> None:
    if not store:
        _fail("--store", "not given and BABELMERGE_HOME is not set; pass the store's folder on the shared filesystem")
    if not store.startswith("/") or any(c in store for c in "\n\r\0"):
        _fail("--store", f"{store!r}: must be an absolute path on the filesystem every node mounts")


def _header(s: Slurm, output: str, comment: str) -> list[str]:
    lines = ["#!/bin/bash", f"# generated by `babelmerge {comment}` (harness/cluster.py)", f"#SBATCH --job-name={s.job_name}"]
    if s.partition:
        lines.append(f"#SBATCH --partition={s.partition}")
    lines += [f"#SBATCH --time={s.time}", f"#SBATCH --output={output}"]
    return lines


def _resources(s: Slurm) -> list[str]:
    lines = [f"#SBATCH --cpus-per-task={s.cpus_per_task}"]
    if s.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={s.gpus_per_node}")
    return lines


def _prologue(s: Slurm, store: str) -> list[str]:
    lines = ["", "set -euo pipefail"]
    if s.setup:
        lines += ["", "# environment (from --setup)", *s.setup]
    lines += ["", "# the shared store: units keyed by content hash, written atomically, so every node reads and writes it",
              f"export BABELMERGE_HOME={shlex.quote(store)}", 'mkdir -p "$BABELMERGE_HOME"']
    return lines


def slurm_script(s: Slurm, store: str, argv: list[str], port: int = 6379, head_timeout: int = 300) -> str:
    """An sbatch script: one Ray node per allocated node (the first is the head), then `babelmerge ARGS --executor
    ray --ray-address HEAD_IP:PORT` on the batch host, which Slurm places on the first node. argv: the babelmerge
    arguments after `--`. The srun lines pass the CPUs and GPUs explicitly (srun does not inherit --cpus-per-task
    since Slurm 22.05), and `ray start` is told the same counts so Ray uses no more than Slurm gave."""
    args = command_args(argv)
    _check_slurm(s, store)
    if not 1 <= port <= 65535:
        _fail("--port", f"{port}: not a TCP port (1-65535)")
    if head_timeout < 1:
        _fail("--head-timeout", f"{head_timeout}: must be 1 second or more")
    step = f"--nodes=1 --ntasks=1 --cpus-per-task={s.cpus_per_task}"
    if s.gpus_per_node:
        step += f" --gpus-per-node={s.gpus_per_node}"
    res = f"--num-cpus={s.cpus_per_task} --num-gpus={s.gpus_per_node}"
    job = shlex.join(["babelmerge", *args]) + ' --executor ray --ray-address "$address"'
    lines = _header(s, f"{s.job_name}-%j.out", "cluster slurm") + [
        f"#SBATCH --nodes={s.nodes}", "#SBATCH --exclusive", "#SBATCH --ntasks-per-node=1", *_resources(s),
        "# Ray's head/worker pattern on Slurm: docs.ray.io/en/latest/cluster/vms/user-guides/community/slurm.html",
        *_prologue(s, store),
        "",
        "# the allocated nodes; the first runs the Ray head (and this script)",
        'mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        'head=${nodes[0]}',
        'head_ip=$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address)',
        'head_ip=${head_ip%% *}  # the first address when the node has several',
        f"port={port}",
        'case $head_ip in *:*) address="[$head_ip]:$port" ;; *) address="$head_ip:$port" ;; esac',
        'echo "babelmerge cluster: Ray head on $head ($address), ${#nodes[@]} node(s)"',
        "",
        f'srun {step} -w "$head" ray start --head --node-ip-address="$head_ip" --port=$port {res} --block &',
        f"deadline=$((SECONDS + {head_timeout}))",
        'until ray status --address="$address" >/dev/null 2>&1; do',
        "  if (( SECONDS >= deadline )); then",
        f'    echo "babelmerge cluster: the Ray head at $address did not answer within {head_timeout} s" >&2',
        "    exit 1",
        "  fi",
        "  sleep 2",
        "done",
        "",
        "# one worker per other node; Ray queues the command's tasks until their resources join",
        'for node in "${nodes[@]:1}"; do',
        f'  srun {step} -w "$node" ray start --address="$address" {res} --block &',
        "done",
        "",
        job,
        "",
    ]
    return "\n".join(lines)


def slurm_array_script(s: Slurm, store: str, argv: list[str], units: list[str], max_parallel: int | None = None) -> str:
    """An sbatch array script: task i runs `babelmerge ARGS` with units[i] in place of {unit} (or appended), on one
    node with the local executor; every task reads and writes the same store. units: submission folders for
    `evaluate`, scenario ids for `methods bench --scenarios {unit}`."""
    args = command_args(argv, ARRAY_COMMANDS, executor=False)
    _check_slurm(s, store)
    units = [u.strip() for u in units if u.strip() and not u.strip().startswith("#")]
    if not units:
        _fail("--units", "no units (one per line: a submission folder, or a scenario id with --scenarios {unit})")
    if any(c in u for u in units for c in "\n\r\0"):
        _fail("--units", "a unit holds a control character")
    if max_parallel is not None and max_parallel < 1:
        _fail("--max-parallel", f"{max_parallel}: must be 1 or more")
    cmd = ["babelmerge", *args] if any(UNIT in a for a in args) else ["babelmerge", *args, UNIT]
    throttle = f"%{max_parallel}" if max_parallel else ""
    lines = _header(s, f"{s.job_name}-%A_%a.out", "cluster slurm-array") + [
        f"#SBATCH --array=0-{len(units) - 1}{throttle}", "#SBATCH --nodes=1", "#SBATCH --ntasks=1", *_resources(s),
        "# one unit per array task, the local executor, one shared store",
        *_prologue(s, store),
        "",
        "units=(",
        *[f"  {shlex.quote(u)}" for u in units],
        ")",
        'unit=${units[$SLURM_ARRAY_TASK_ID]}',
        'echo "babelmerge cluster: array task $SLURM_ARRAY_TASK_ID: $unit"',
        "",
        " ".join(_with_unit(a) for a in cmd),
        "",
    ]
    return "\n".join(lines)


def _with_unit(arg: str) -> str:
    """One shell word: arg quoted, each {unit} in it replaced by the task's "$unit"."""
    return '"$unit"'.join(shlex.quote(p) if p else "" for p in arg.split(UNIT))


def _check_rayjob(j: RayJob) -> None:
    if not _K8S.match(j.name) or len(j.name) > 47:
        _fail("--name", f"{j.name!r}: lower-case letters, digits and '-', at most 47 characters (KubeRay adds suffixes)")
    if not _K8S.match(j.pvc) or len(j.pvc) > 253:
        _fail("--pvc", f"{j.pvc!r}: not a PersistentVolumeClaim name (lower-case letters, digits, '-')")
    if not j.image or any(c.isspace() for c in j.image):
        _fail("--image", f"{j.image!r}: give the container image that holds ray and babelmerge")
    if j.workers < 1:
        _fail("--workers", f"{j.workers}: must be 1 or more")
    if j.gpus_per_worker < 0:
        _fail("--gpus-per-worker", f"{j.gpus_per_worker}: must be 0 or more")
    for flag, q in (("--cpus-per-worker", j.cpus_per_worker), ("--memory-per-worker", j.memory_per_worker),
                    ("--head-cpus", j.head_cpus), ("--head-memory", j.head_memory)):
        if not _QUANTITY.match(q):
            _fail(flag, f"{q!r}: not a Kubernetes quantity, e.g. 8, 500m, 32Gi")
    for flag, p in (("--mount", j.mount), ("--store", j.store), ("--workdir", j.workdir)):
        if p is not None and (not p.startswith("/") or any(c in p for c in "\n\r\0")):
            _fail(flag, f"{p!r}: must be an absolute path inside the container")
    if not (j.store.rstrip("/") + "/").startswith(j.mount.rstrip("/") + "/"):
        _fail("--store", f"{j.store!r} is not under the PVC's mount {j.mount!r}; results there would die with the pod")


def _container(name: str, j: RayJob, cpus: str, memory: str, gpus: int) -> dict:
    limits = {"cpu": cpus, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    c = {"name": name, "image": j.image,
         "env": [{"name": "BABELMERGE_HOME", "value": j.store}],
         "resources": {"limits": limits, "requests": dict(limits)},
         "volumeMounts": [{"name": "babelmerge-store", "mountPath": j.mount}]}
    if j.workdir:
        c["workingDir"] = j.workdir
    return c


def _pod(container: dict, j: RayJob) -> dict:
    return {"spec": {"containers": [container],
                     "volumes": [{"name": "babelmerge-store", "persistentVolumeClaim": {"claimName": j.pvc}}]}}


def rayjob(j: RayJob, argv: list[str]) -> dict:
    """A RayJob (KubeRay, ray.io/v1) as a dict: KubeRay makes the cluster, then its submitter runs `ray job submit`
    with the entrypoint, which Ray's job supervisor starts on the head with RAY_ADDRESS set to the cluster, so the
    entrypoint carries `--executor ray` and no address. The head runs no Ray tasks (num-cpus 0); every pod mounts
    the PVC at j.mount and has BABELMERGE_HOME there; the cluster is deleted when the job ends."""
    args = command_args(argv)
    _check_rayjob(j)
    entry = shlex.join(["babelmerge", *args, "--executor", "ray"])
    if j.workdir:  # the supervisor runs the entrypoint through a shell
        entry = f"cd {shlex.quote(j.workdir)} && {entry}"
    head = _container("ray-head", j, j.head_cpus, j.head_memory, 0)
    head["ports"] = [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"},
                     {"containerPort": 10001, "name": "client"}]
    worker = _container("ray-worker", j, j.cpus_per_worker, j.memory_per_worker, j.gpus_per_worker)
    cluster = {
        "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}, "template": _pod(head, j)},
        "workerGroupSpecs": [{"groupName": "workers", "replicas": j.workers, "minReplicas": j.workers,
                              "maxReplicas": j.workers, "rayStartParams": {}, "template": _pod(worker, j)}],
    }
    if j.ray_version:
        cluster = {"rayVersion": j.ray_version, **cluster}
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": j.name},
            "spec": {"entrypoint": entry, "shutdownAfterJobFinishes": True, "ttlSecondsAfterFinished": 600,
                     "rayClusterSpec": cluster}}


def rayjob_yaml(j: RayJob, argv: list[str]) -> str:
    """The RayJob manifest as YAML text (kubectl apply -f)."""
    import yaml

    head = ("# generated by `babelmerge cluster kuberay` (harness/cluster.py): a KubeRay RayJob (ray.io/v1);\n"
            "# apply with `kubectl apply -f FILE` once the KubeRay operator is installed\n")
    return head + yaml.safe_dump(rayjob(j, argv), sort_keys=False)
