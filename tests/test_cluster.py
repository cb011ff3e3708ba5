"""Cluster launch files (harness/cluster.py): the generated Slurm scripts are checked by `bash -n` and then run for
real against stand-ins for srun, scontrol, hostname, ray and babelmerge that log their arguments, with the
environment Slurm gives a batch script; the KubeRay RayJob is parsed back with yaml.safe_load and its fields read.
No KubeRay CRD schema or Kubernetes API server is available here, so the manifest is not validated against one."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness import cluster, cli

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

# Stand-ins: each appends one line to $FAKE_LOG (a single short write, so parallel lines do not interleave).
FAKES = {
    "scontrol": r'''echo "scontrol $*" >> "$FAKE_LOG"
[ "$1 $2" = "show hostnames" ] && printf '%s\n' $FAKE_NODES
''',
    # srun: log, then run the command after the options on the node given by -w (FAKE_NODE tells the children)
    "srun": r'''echo "srun $*" >> "$FAKE_LOG"
node=
while [ $# -gt 0 ]; do
  case "$1" in -w) node=$2; shift 2 ;; -*) shift ;; *) break ;; esac
done
FAKE_NODE=$node exec "$@"
''',
    "hostname": r'''echo "hostname $* @$FAKE_NODE" >> "$FAKE_LOG"
echo "$FAKE_HOST_IP"
''',
    # ray: `status` answers only once a head has been started (as a real GCS would), never with FAKE_RAY_DOWN;
    # `start` returns at once where the real one blocks (the script backgrounds it either way); a status line is
    # written once the answer is known, so it follows the head's line when it says "up"
    "ray": r'''if [ "$1" != status ]; then echo "ray $* @${FAKE_NODE:-batch}" >> "$FAKE_LOG"; exit 0; fi
if [ -z "$FAKE_RAY_DOWN" ] && grep -q "^ray start --head" "$FAKE_LOG"; then
  echo "ray $* @${FAKE_NODE:-batch}: up" >> "$FAKE_LOG"
else
  echo "ray $* @${FAKE_NODE:-batch}: down" >> "$FAKE_LOG"; exit 1
fi
''',
    "babelmerge": r'''line="babelmerge"; for a in "$@"; do line="$line|$a"; done
echo "$line|BABELMERGE_HOME=$BABELMERGE_HOME @${FAKE_NODE:-batch}" >> "$FAKE_LOG"
''',
}


@pytest.fixture
def fakes(tmp_path):
    """A bin folder of stand-ins and the environment that puts it first on PATH."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, body in FAKES.items():
        f = bin_ / name
        f.write_text("#!/bin/bash\n" + body)
        f.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {"PATH": f"{bin_}:{os.environ['PATH']}", "HOME": str(tmp_path), "FAKE_LOG": str(log),
           "FAKE_HOST_IP": "10.9.8.7 fd00::7", "SLURM_JOB_ID": "4242"}
    return env, log


def _run(script: str, tmp_path: Path, env: dict, timeout: float = 20) -> subprocess.CompletedProcess:
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    syntax = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    return subprocess.run([BASH, str(path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)


def _lines(log: Path, want_starts: int, timeout: float = 5) -> list[str]:
    """The log once the backgrounded `ray start` steps have written (they run on after the script returns)."""
    end = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines()
        if sum(ln.startswith("ray start") for ln in lines) >= want_starts or time.monotonic() > end:
            return lines
        time.sleep(0.05)


def _sbatch(script: str) -> dict[str, str]:
    """The #SBATCH directives of a script, before its first command, as {option: value}."""
    out = {}
    for ln in script.splitlines()[1:]:
        if ln.startswith("#SBATCH "):
            k, _, v = ln[len("#SBATCH "):].partition("=")
            out[k] = v
        elif ln and not ln.startswith("#"):
            break
    return out


def test_slurm_ray_script_runs_head_then_workers_then_the_command(fakes, tmp_path):
    env, log = fakes
    nodes = ["gpu01", "gpu02", "gpu03"]
    store = str(tmp_path / "shared store")
    s = cluster.Slurm(nodes=3, gpus_per_node=1, cpus_per_task=16, time="02:30:00", partition="gpu")
    script = cluster.slurm_script(s, store, ["--", "evaluate", "--preset", "tiny", "--limit", "4"], port=6390)

    head = _sbatch(script)
    assert head["--nodes"] == "3" and head["--gpus-per-node"] == "1" and head["--time"] == "02:30:00"
    assert head["--cpus-per-task"] == "16" and head["--partition"] == "gpu" and head["--ntasks-per-node"] == "1"

    env = {**env, "SLURM_JOB_NODELIST": "gpu[01-03]", "SLURM_JOB_NUM_NODES": "3", "FAKE_NODES": " ".join(nodes)}
    done = _run(script, tmp_path, env)
    assert done.returncode == 0, done.stderr
    lines = _lines(log, want_starts=3)
    address = "10.9.8.7:6390"  # the first address the head's `hostname --ip-address` printed, and --port

    assert lines[0] == "scontrol show hostnames gpu[01-03]"
    assert lines[1].startswith("srun --nodes=1 --ntasks=1 -w gpu01 hostname")
    assert lines[2] == "hostname --ip-address @gpu01"
    starts = [ln for ln in lines if ln.startswith("ray start")]
    heads = [ln for ln in starts if "--head" in ln]
    assert heads == [f"ray start --head --node-ip-address=10.9.8.7 --port=6390 --num-cpus=16 --num-gpus=1 --block @gpu01"]
    workers = sorted(ln for ln in starts if "--head" not in ln)
    assert workers == [f"ray start --address={address} --num-cpus=16 --num-gpus=1 --block @{n}" for n in nodes[1:]]
    # every Ray node was started through srun on its own node, with the CPUs and GPUs asked for
    sruns = [ln for ln in lines if ln.startswith("srun") and " ray start" in ln]
    assert sorted(ln.split(" -w ")[1].split()[0] for ln in sruns) == nodes
    assert all("--cpus-per-task=16 --gpus-per-node=1" in ln for ln in sruns)

    jobs = [ln for ln in lines if ln.startswith("babelmerge")]
    assert jobs == [f"babelmerge|evaluate|--preset|tiny|--limit|4|--executor|ray|--ray-address|{address}"
                    f"|BABELMERGE_HOME={store} @batch"]
    # the head was up before the poll that answered (the last one), and workers and the command came after it
    at = {ln: i for i, ln in enumerate(lines)}
    (answered,) = [i for i, ln in enumerate(lines) if ln.startswith("ray status") and ln.endswith(": up")]
    assert all(ln.endswith(": down") for ln in lines[:answered] if ln.startswith("ray status"))
    assert at[heads[0]] < answered < at[jobs[0]], "\n".join(lines)
    assert all(at[w] > answered for w in workers)
    assert Path(store).is_dir()


def test_slurm_ray_script_one_node_ipv6_no_gpu(fakes, tmp_path):
    env, log = fakes
    script = cluster.slurm_script(cluster.Slurm(nodes=1, cpus_per_task=4), "/tmp/unused-store", ["run"])
    assert "--gpus-per-node" not in script
    store = str(tmp_path / "store")
    script = script.replace("BABELMERGE_HOME=/tmp/unused-store", f"BABELMERGE_HOME={store}")
    env = {**env, "SLURM_JOB_NODELIST": "cpu7", "FAKE_NODES": "cpu7", "FAKE_HOST_IP": "fd00::5"}
    done = _run(script, tmp_path, env)
    assert done.returncode == 0, done.stderr
    lines = _lines(log, want_starts=1)
    assert [ln for ln in lines if ln.startswith("ray start")] == [
        "ray start --head --node-ip-address=fd00::5 --port=6379 --num-cpus=4 --num-gpus=0 --block @cpu7"]
    assert [ln for ln in lines if ln.startswith("babelmerge")] == [
        f"babelmerge|run|--executor|ray|--ray-address|[fd00::5]:6379|BABELMERGE_HOME={store} @batch"]


def test_slurm_ray_script_stops_when_the_head_never_answers(fakes, tmp_path):
    env, log = fakes
    script = cluster.slurm_script(cluster.Slurm(nodes=2), str(tmp_path / "store"), ["similarity"], head_timeout=1)
    env = {**env, "SLURM_JOB_NODELIST": "n[1-2]", "FAKE_NODES": "n1 n2", "FAKE_RAY_DOWN": "1"}
    done = _run(script, tmp_path, env)
    assert done.returncode == 1
    assert "did not answer within 1 s" in done.stderr
    lines = log.read_text().splitlines()
    assert not any(ln.startswith("babelmerge") for ln in lines)
    assert not any(ln.startswith("ray start --address") for ln in lines)


def test_slurm_array_one_unit_per_task(fakes, tmp_path):
    env, log = fakes
    units = ["submissions/ref-linear-mono-de-en", "# a comment", "", "submissions/with space"]
    store = str(tmp_path / "store")
    s = cluster.Slurm(gpus_per_node=1, cpus_per_task=8, time="1-00:00:00")
    script = cluster.slurm_array_script(s, store, ["--", "evaluate", "--preset", "tiny"], units, max_parallel=5)
    head = _sbatch(script)
    assert head["--array"] == "0-1%5" and head["--gpus-per-node"] == "1" and head["--time"] == "1-00:00:00"
    for task, unit in enumerate(["submissions/ref-linear-mono-de-en", "submissions/with space"]):
        done = _run(script, tmp_path, {**env, "SLURM_ARRAY_TASK_ID": str(task)})
        assert done.returncode == 0, done.stderr
        assert log.read_text().splitlines()[-1] == f"babelmerge|evaluate|--preset|tiny|{unit}|BABELMERGE_HOME={store} @batch"


def test_slurm_array_unit_in_place(fakes, tmp_path):
    env, log = fakes
    script = cluster.slurm_array_script(cluster.Slurm(), str(tmp_path / "s"),
                                        ["methods", "bench", "methods/specs/ties.yaml", "--scenarios", "{unit}"],
                                        ["mono-en-ru", "mt-fr-es"])
    done = _run(script, tmp_path, {**env, "SLURM_ARRAY_TASK_ID": "1"})
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines()[-1].startswith("babelmerge|methods|bench|methods/specs/ties.yaml|--scenarios|mt-fr-es|")


def test_kuberay_rayjob_fields():
    j = cluster.RayJob(image="registry.example/babelmerge:0.1", pvc="babelmerge-store", workers=3, gpus_per_worker=2,
                       workdir="/mnt/babelmerge/babelmerge", ray_version="2.49.0")
    doc = yaml.safe_load(cluster.rayjob_yaml(j, ["--", "run", "--preset", "small"]))
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob" and doc["metadata"]["name"] == "babelmerge"
    spec = doc["spec"]
    # the supervisor gives the entrypoint RAY_ADDRESS: no address in the command
    assert spec["entrypoint"] == "cd /mnt/babelmerge/babelmerge && babelmerge run --preset small --executor ray"
    assert spec["shutdownAfterJobFinishes"] is True
    rc = spec["rayClusterSpec"]
    assert rc["rayVersion"] == "2.49.0"
    assert rc["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}
    (group,) = rc["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 3
    pods = {"head": rc["headGroupSpec"]["template"]["spec"], "worker": group["template"]["spec"]}
    for role, pod in pods.items():
        (c,) = pod["containers"]
        assert c["image"] == "registry.example/babelmerge:0.1"
        assert {"name": "BABELMERGE_HOME", "value": "/mnt/babelmerge/store"} in c["env"]
        (vol,) = pod["volumes"]
        assert vol["persistentVolumeClaim"] == {"claimName": "babelmerge-store"}
        assert c["volumeMounts"] == [{"name": vol["name"], "mountPath": "/mnt/babelmerge"}]
        gpus = c["resources"]["limits"].get("nvidia.com/gpu")
        assert gpus == (2 if role == "worker" else None)
        assert c["resources"]["requests"] == c["resources"]["limits"]
    # all values in rayStartParams are strings (the CRD's map[string]string)
    assert all(isinstance(v, str) for v in rc["headGroupSpec"]["rayStartParams"].values())


def test_kuberay_without_gpus_asks_for_none():
    doc = yaml.safe_load(cluster.rayjob_yaml(cluster.RayJob(image="img", pvc="p"), ["evaluate"]))
    limits = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits and doc["spec"]["entrypoint"] == "babelmerge evaluate --executor ray"
    assert "rayVersion" not in doc["spec"]["rayClusterSpec"]


@pytest.mark.parametrize("argv, field", [
    (["cluster", "slurm", "--store", "/s", "--", "merge"], "command"),
    (["cluster", "slurm", "--store", "/s"], "command"),
    (["cluster", "slurm", "--store", "/s", "--", "run", "--ray-address=1.2.3.4:6379"], "command"),
    (["cluster", "slurm", "--store", "/s", "--nodes", "0", "--", "run"], "--nodes"),
    (["cluster", "slurm", "--store", "/s", "--gpus-per-node", "-1", "--", "run"], "--gpus-per-node"),
    (["cluster", "slurm", "--store", "/s", "--time", "4h", "--", "run"], "--time"),
    (["cluster", "slurm", "--store", "/s", "--time", "00:00:00", "--", "run"], "--time"),
    (["cluster", "slurm", "--store", "/s", "--partition", "gpu;rm", "--", "run"], "--partition"),
    (["cluster", "slurm", "--store", "rel/path", "--", "run"], "--store"),
    (["cluster", "slurm", "--store", "/s", "--port", "70000", "--", "run"], "--port"),
    (["cluster", "kuberay", "--image", "i", "--pvc", "Bad_Name", "--", "run"], "--pvc"),
    (["cluster", "kuberay", "--image", "i", "--pvc", "p", "--memory-per-worker", "lots", "--", "run"], "--memory-per-worker"),
    (["cluster", "kuberay", "--image", "i", "--pvc", "p", "--store", "/elsewhere", "--", "run"], "--store"),
    (["cluster", "kuberay", "--image", "i", "--pvc", "p", "--workers", "0", "--", "run"], "--workers"),
    (["cluster", "kuberay", "--image", "i", "--pvc", "p", "--head-cpus", "two", "--", "run"], "--head-cpus"),
])
def test_bad_arguments_get_one_line(argv, field, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"babelmerge: cluster: {field}: ")


def test_store_defaults_to_babelmerge_home_and_is_required(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("BABELMERGE_HOME", raising=False)
    assert cli.main(["cluster", "slurm", "--", "run"]) == 2
    assert "BABELMERGE_HOME is not set" in capsys.readouterr().err
    monkeypatch.setenv("BABELMERGE_HOME", "/shared/store")
    out = tmp_path / "job.sbatch"
    assert cli.main(["cluster", "slurm", "--out", str(out), "--", "run"]) == 0
    assert "export BABELMERGE_HOME=/shared/store\n" in out.read_text() and os.access(out, os.X_OK)
    assert capsys.readouterr().err == f"{out}: written\n"
    units = tmp_path / "units.txt"
    units.write_text("submissions/a\n")
    assert cli.main(["cluster", "slurm-array", "--units", str(units), "--", "similarity"]) == 2
    assert capsys.readouterr().err.startswith("babelmerge: cluster: command: 'similarity' is not one of evaluate")
