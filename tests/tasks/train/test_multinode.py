"""Multi-node training: the launcher's machine settings, the machines' commands, a failing machine
(emulated on this host with `peers: local`), and the Kubernetes worker Job of `peers: kubernetes`
(rendered and type-checked; never run on a cluster). SFT and GRPO trained on two machines:
test_launch.py."""

import os
import re
import subprocess
import sys
from types import SimpleNamespace as NS

import pytest
import yaml
from accelerate.commands.launch import launch_command_parser

import tasks.train.launch as launch
from tasks.recipe import Launcher, RecipeError
from tasks.recipe_checks import load_recipe
from tasks.tracking import configure_tracking
from tasks.train.launch import (
    RANK_FROM_INDEX,
    WORKER_ENV,
    accelerate_command,
    main_process_ip,
    stream,
    worker_env,
    worker_job,
)
from tests.conftest import CONFIGS, REPO

TWO_MACHINES = ["num_machines=2", "num_processes=2", "peers=local"]


def _tiny(tmp_path, *launcher_settings: str, stages=("sft.launcher", "grpo.stages.0.launcher")):
    return load_recipe(CONFIGS / "tiny.yaml", [f"tracking.runs_dir={tmp_path / 'runs'}", "sft.trainer.max_steps=2",
                                               "grpo.stages.0.monitors.reward_hacking.policy=off"]
                       + [f"{where}.{s}" for where in stages for s in launcher_settings])


@pytest.mark.parametrize("settings, message", [
    (["num_machines=2", "num_processes=3", "peers=local"], r"sft\.launcher: .*multiple of num_machines \(2\)"),
    (["num_machines=2", "num_processes=2"], r"sft\.launcher: .*set peers to 'local'"),
    (["peers=local"], r"sft\.launcher: .*apply when num_machines > 1"),
    (["main_process_ip=10.0.0.1"], r"sft\.launcher: .*apply when num_machines > 1"),
    (TWO_MACHINES + ["kubernetes.image=x"], r"sft\.launcher: .*apply with peers: kubernetes"),
    (["num_machines=2", "num_processes=2", "peers=kubernetes", "kubernetes.manifest=nope.yaml"],
     r"sft\.launcher\.kubernetes\.manifest: worker Job template not found: nope\.yaml"),
], ids=["uneven-share", "no-peers", "peers-on-one-machine", "ip-on-one-machine", "kubernetes-without-peers",
        "missing-manifest"])
def test_a_bad_machine_setting_fails_validation_naming_the_key(tmp_path, settings, message):
    with pytest.raises(RecipeError, match=message):
        _tiny(tmp_path, *settings, stages=["sft.launcher"])


def test_the_multinode_recipe_survives_the_trip_to_the_workers(tmp_path):
    recipe = _tiny(tmp_path, *TWO_MACHINES)
    assert type(recipe).model_validate_json(recipe.model_dump_json()) == recipe  # what train_entry reads


def test_each_machine_gets_its_rank_and_its_share_of_the_processes(monkeypatch):
    launcher = Launcher(num_processes=8, num_machines=4, peers="local")
    parsed = [launch_command_parser().parse_args(accelerate_command(launcher, ["sft"], 29555, rank, "10.1.2.3")[3:])
              for rank in range(4)]
    assert [a.machine_rank for a in parsed] == [0, 1, 2, 3]
    assert {(a.num_processes, a.num_machines, a.main_process_ip, a.main_process_port) for a in parsed} == {
        (8, 4, "10.1.2.3", 29555)}  # accelerate's num_processes counts all machines: 2 on each here
    assert "--num_machines" not in accelerate_command(Launcher(num_processes=2), [])  # one machine: as before
    assert main_process_ip(launcher) == "127.0.0.1"
    monkeypatch.setenv("POD_IP", "10.9.8.7")
    assert main_process_ip(Launcher(num_processes=2, num_machines=2, peers="kubernetes")) == "10.9.8.7"
    assert main_process_ip(Launcher(num_processes=2, num_machines=2, peers="kubernetes",
                                    main_process_ip="10.0.0.5")) == "10.0.0.5"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_failing_machine_ends_the_others_and_raises_with_its_own_lines():
    lines = []
    waiting = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(600)"
    failing = "import sys, time; time.sleep(2); print('boom'); sys.exit(3)"
    with pytest.raises(RuntimeError, match=r"\[machine 1\] training workers exited with status 3(.|\n)*boom"):
        stream([[sys.executable, "-c", waiting], [sys.executable, "-c", failing]], dict(os.environ), lines.append)
    assert "[machine 1] boom" in lines
    (pid,) = [int(line.split()[-1]) for line in lines if line.startswith("[machine 0] pid")]
    assert not _alive(pid)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").replace("\0", " ")
        except OSError:  # it ended meanwhile
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.integration
def test_a_failing_peer_fails_the_stage_with_its_output_and_leaves_no_process(
        tmp_path, monkeypatch, tiny_model_dir, tiny_data_dir):
    """Machine 0 is the real `accelerate launch`, waiting in the rendezvous; machine 1 dies once
    machine 0 listens. The stage must raise with machine 1's lines and end machine 0."""
    real = launch.accelerate_command

    def machine_1_dies(launcher, entry_args, port=None, machine_rank=0, main_process_ip="127.0.0.1"):
        cmd = real(launcher, entry_args, port, machine_rank, main_process_ip)
        if machine_rank == 0:
            return cmd
        dies = (f"import socket, sys, time\nwhile socket.socket().connect_ex(('127.0.0.1', {port})): time.sleep(0.2)\n"
                "print('machine 1: out of memory'); sys.exit(7)")
        return [sys.executable, "-c", dies]

    monkeypatch.setattr(launch, "accelerate_command", machine_1_dies)
    recipe = _tiny(tmp_path, *TWO_MACHINES, stages=["sft.launcher"])
    configure_tracking(recipe.tracking)
    out, lines = tmp_path / "sft-stage", []
    with pytest.raises(RuntimeError, match=r"\[machine 1\] training workers exited with status 7(.|\n)*out of memory"):
        launch.launch_stage("sft", recipe, out, tiny_data_dir, tiny_model_dir.parent, recipe.sft.launcher,
                            on_line=lines.append)
    assert "[machine 1] machine 1: out of memory" in lines
    assert _processes_mentioning(str(out)) == []  # machine 0's accelerate launch and its workers are gone


# ---------------------------------------------------------------- peers: kubernetes
FLOW_POD = {"POD_NAMESPACE": "rlvr", "RLVR_IMAGE": "registry.example.com/rlvr-pipeline:1.0",
            "RLVR_RUNS_CLAIM": "rlvr-runs", "POD_NAME": "pipeline-abc", "POD_UID": "1234-5678", "POD_IP": "10.4.0.7"}


@pytest.fixture
def flow_pod(monkeypatch):
    """The environment deployments/k8s/gpu-job-template.yaml gives the flow pod."""
    for k, v in FLOW_POD.items():
        monkeypatch.setenv(k, v)


def _worker_job(machines=3, gpus=8):
    launcher = Launcher(num_processes=machines * gpus, num_machines=machines, peers="kubernetes",
                        config="configs/accelerate/zero2.yaml")
    entry = ["grpo", "--recipe", "/runs/x/grpo/recipe.json", "--out", "/runs/x/grpo", "--stage", "stage 1"]
    ip = main_process_ip(launcher)
    job = worker_job(launcher, accelerate_command(launcher, entry, 29600, RANK_FROM_INDEX, ip),
                     worker_env("run123", "sqlite:////runs/x/mlflow.db", base={"NCCL_SOCKET_IFNAME": "eth0"}))
    return launcher, entry, ip, job


def test_the_flow_pod_template_provides_what_the_worker_job_reads():
    template = yaml.safe_load((REPO / "deployments" / "k8s" / "gpu-job-template.yaml").read_text())
    (container,) = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert set(FLOW_POD) <= set(env)
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["RLVR_IMAGE"]["value"] == "{{ image }}" and env["RLVR_RUNS_CLAIM"]["value"] == "{{ runs_volume_claim }}"


def test_worker_job_is_an_indexed_job_of_the_other_machines_running_the_same_command(flow_pod):
    launcher, entry, ip, job = _worker_job(machines=3, gpus=8)
    assert "{{" not in yaml.safe_dump(job)  # every placeholder filled
    job = yaml.safe_load(yaml.safe_dump(job))  # and it is plain YAML
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "rlvr"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    assert job["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "pipeline-abc",
                                                   "uid": "1234-5678"}]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == FLOW_POD["RLVR_IMAGE"] and container["workingDir"] == str(REPO)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert {"name": "runs", "mountPath": "/runs"} in container["volumeMounts"]
    assert {"name": "runs", "persistentVolumeClaim": {"claimName": "rlvr-runs"}} in pod["volumes"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and env[WORKER_ENV] == "1" and env["MLFLOW_RUN_ID"] == "run123"
    assert env["NCCL_SOCKET_IFNAME"] == "eth0" and "POD_IP" not in env and "PATH" not in env

    # Pod i runs machine 0's command with --machine_rank i+1: run its shell line, printing the args.
    shell, flag, line = container["command"]
    assert (shell, flag) == ("/bin/sh", "-c") and line.startswith("exec ")
    for index in (0, 1):
        printed = subprocess.run([shell, flag, "exec printf '%s\\n' " + line[len("exec "):]], capture_output=True,
                                 text=True, check=True, env={"JOB_COMPLETION_INDEX": str(index)}).stdout
        assert printed.splitlines() == accelerate_command(launcher, entry, 29600, index + 1, ip)
    assert ip == FLOW_POD["POD_IP"]


def test_worker_job_reads_as_a_kubernetes_v1_job(flow_pod):
    client = pytest.importorskip("kubernetes.client")
    *_, job = _worker_job()
    v1 = client.ApiClient()._ApiClient__deserialize(job, "V1Job")
    assert v1.spec.completion_mode == "Indexed" and v1.spec.template.spec.containers[0].image == FLOW_POD["RLVR_IMAGE"]
    assert v1.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == "rlvr-runs"


def test_worker_job_names_the_missing_setting_outside_a_flow_pod(monkeypatch):
    monkeypatch.delenv("RLVR_IMAGE", raising=False)
    monkeypatch.setenv("POD_NAMESPACE", "rlvr")
    with pytest.raises(RuntimeError, match=r"launcher\.kubernetes\.image is empty and RLVR_IMAGE is not set"):
        _worker_job()


class FakeCluster:
    """The calls kubernetes_peers makes, answered as the API would (no cluster here)."""

    class ApiException(Exception):
        reason = "ContainerCreating"

    def __init__(self):
        self.calls = []

    def BatchV1Api(self):
        return self

    CoreV1Api = BatchV1Api

    def create_namespaced_job(self, namespace, body):
        self.calls.append(("create", namespace, body["spec"]["completions"]))
        return NS(metadata=NS(name="rlvr-train-workers-x1"))

    def delete_namespaced_job(self, name, namespace, propagation_policy):
        self.calls.append(("delete", namespace, name))

    def list_namespaced_pod(self, namespace, label_selector):
        assert label_selector == "job-name=rlvr-train-workers-x1"
        index = "batch.kubernetes.io/job-completion-index"
        return NS(items=[NS(metadata=NS(name=f"w-{i}", annotations={index: str(i)})) for i in (0, 1)])

    def read_namespaced_pod_log(self, name, namespace, tail_lines):
        if name == "w-1":
            raise self.ApiException()
        return "loading\nNCCL error: unhandled system error\n"


def test_kubernetes_peers_delete_the_job_whatever_happens_and_show_the_workers_last_lines(flow_pod, monkeypatch):
    cluster = FakeCluster()
    monkeypatch.setattr(launch, "kubernetes_client", lambda: cluster)
    *_, job = _worker_job(machines=3)
    lines = []
    with launch.kubernetes_peers(job, lines.append):
        assert cluster.calls == [("create", "rlvr", 2)]  # the workers exist while machine 0 trains
    assert cluster.calls[-1] == ("delete", "rlvr", "rlvr-train-workers-x1") and not lines[1:]
    with pytest.raises(RuntimeError, match="machine 0 failed"):
        with launch.kubernetes_peers(job, lines.append):
            raise RuntimeError("machine 0 failed")
    assert cluster.calls[-1] == ("delete", "rlvr", "rlvr-train-workers-x1")
    assert "[machine 1] NCCL error: unhandled system error" in lines
    assert "[machine 2] no log: ContainerCreating" in lines


def test_without_the_kubernetes_package_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # import kubernetes -> ImportError
    with pytest.raises(RuntimeError, match=re.escape(launch.KUBERNETES_INSTALL)):
        launch.kubernetes_client()
