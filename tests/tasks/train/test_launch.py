"""accelerate configs, the launch command, and SFT + GRPO on 2 CPU worker processes (on one machine,
or on two; more of the multi-machine launcher in test_multinode.py)."""

import os
import sys

import pytest
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import launch_command_parser
from mlflow import MlflowClient

from tasks.recipe import Launcher
from tasks.recipe_checks import load_recipe
from tasks.stages import StageSpec, run_stage
from tasks.tracking import configure_tracking
from tasks.train.launch import (
    ACCELERATE_CONFIGS,
    DEEPSPEED_INSTALL,
    WORKER_ENV,
    accelerate_command,
    launcher_problems,
    should_launch,
    stream,
    worker_env,
)
from tests.conftest import CONFIGS

CONFIG_FILES = sorted(ACCELERATE_CONFIGS.glob("*.yaml"))


def test_the_documented_configs_exist():
    assert {p.stem for p in CONFIG_FILES} == {"cpu_2proc", "ddp", "zero2", "zero3", "fsdp"}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_accelerate_accepts_every_config_key(path):
    assert path.read_text().startswith("#"), "a config opens with a comment: what it is, hardware, how to use it"
    config = ClusterConfig.from_yaml_file(str(path))  # unknown top-level keys raise here
    launch_options = {a.dest for a in launch_command_parser()._actions}
    nested = list(config.deepspeed_config or {}) + [
        k if k.startswith("fsdp_") else f"fsdp_{k}" for k in (config.fsdp_config or {})]
    assert [k for k in nested if k not in launch_options] == []


def test_launch_command_and_worker_environment(monkeypatch):
    launcher = Launcher(num_processes=2, config="configs/accelerate/zero2.yaml")
    cmd = accelerate_command(launcher, ["grpo", "--stage", "s1"], port=29555)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--config_file") + 1] == "configs/accelerate/zero2.yaml"
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--main_process_port") + 1] == "29555"
    assert cmd[-5:] == ["-m", "tasks.train.entry", "grpo", "--stage", "s1"]
    assert accelerate_command(Launcher(num_processes=2), [])[4].endswith("cpu_2proc.yaml")  # no GPU here
    env = worker_env("run123", "sqlite:///x.db")
    assert env["MLFLOW_RUN_ID"] == "run123" and env["MLFLOW_TRACKING_URI"] == "sqlite:///x.db"
    # one thread per rank unless the user chose a count
    assert worker_env(None, None, base={})["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in worker_env(None, None, base={"RLVR_CPU_THREADS": "3"})
    assert worker_env(None, None, base={"OMP_NUM_THREADS": "4"})["OMP_NUM_THREADS"] == "4"
    assert should_launch(launcher) and not should_launch(Launcher())
    monkeypatch.setenv(WORKER_ENV, "1")
    assert not should_launch(launcher)  # a worker trains; it never launches again


def test_stream_forwards_each_line_and_a_failure_carries_the_last_lines():
    lines = []
    script = "import sys; print('bar 10%\\rbar 90%\\rfirst'); print('second'); sys.exit(3)"
    with pytest.raises(RuntimeError, match=r"status 3(.|\n)*first\nsecond"):
        stream([[sys.executable, "-c", script]], dict(os.environ), lines.append)
    assert lines == ["first", "second"]  # a progress bar's redraws collapse to its last state; one machine: no prefix


def test_a_failure_names_the_workers_first_exception_above_torchruns_report():
    script = ("print('[rank1]: Traceback (most recent call last):'); print('[rank1]: ValueError: ds bf16 mismatch');"
              "print('torch.distributed.elastic.multiprocessing.errors.ChildFailedError:');"
              "print('RuntimeError: a later echo'); raise SystemExit(1)")
    with pytest.raises(RuntimeError) as failure:
        stream([[sys.executable, "-c", script]], dict(os.environ), lambda line: None)
    assert str(failure.value).splitlines()[1] == "first error: [rank1]: ValueError: ds bf16 mismatch"


def test_launcher_problems(tmp_path, monkeypatch):
    import tasks.train.launch

    assert launcher_problems("sft.launcher", Launcher()) == []
    assert launcher_problems("x", Launcher(config="configs/accelerate/cpu_2proc.yaml")) == []
    assert "x.config: accelerate config not found: nope.yaml" in launcher_problems("x", Launcher(config="nope.yaml"))[0]
    shards = tmp_path / "zero3.yaml"
    shards.write_text((ACCELERATE_CONFIGS / "zero3.yaml").read_text().replace("  zero3_save_16bit_model: true\n", ""))
    [problem] = launcher_problems("grpo.stages.0.launcher", Launcher(config=str(shards)))
    assert problem.startswith("grpo.stages.0.launcher.config: ") and "zero3_save_16bit_model: true" in problem
    real_find_spec = tasks.train.launch.importlib.util.find_spec
    monkeypatch.setattr(tasks.train.launch.importlib.util, "find_spec",
                        lambda name, *a: None if name == "deepspeed" else real_find_spec(name, *a))
    [problem] = launcher_problems("x", Launcher(config="configs/accelerate/zero2.yaml"))
    assert f"uses DeepSpeed: {DEEPSPEED_INSTALL}" in problem


@pytest.mark.integration
@pytest.mark.parametrize("machines", [1, 2], ids=["one-machine", "two-local-machines"])
def test_sft_and_grpo_train_on_two_cpu_processes(tmp_path, tiny_model_dir, tiny_data_dir, machines):
    """Two workers: both on this machine, or one on each of two machines (machine 1 started as a
    local peer) that join through accelerate's static rendezvous."""
    from tasks.layout import model_dir
    from tasks.train.grpo import run_grpo_stage
    from tasks.train.sft import run_sft

    launcher = ["num_processes=2"] + (["num_machines=2", "peers=local"] if machines > 1 else [])
    recipe = load_recipe(CONFIGS / "tiny.yaml", [
        f"tracking.runs_dir={tmp_path / 'runs'}", "sft.trainer.max_steps=2",
        "grpo.stages.0.monitors.reward_hacking.policy=off",
        *[f"{where}.launcher.{setting}" for where in ("sft", "grpo.stages.0") for setting in launcher]])
    configure_tracking(recipe.tracking)
    lines = []
    tag = f"2proc-{machines}machines"
    sft = run_stage(recipe, StageSpec("sft", tag, lambda out, hooks: run_sft(recipe, tiny_data_dir, tiny_model_dir.parent,
                                                                           out, on_line=lines.append)))
    stage = recipe.grpo.stages[0]
    grpo = run_stage(recipe, StageSpec("grpo-stage-1", tag, lambda out, hooks: run_grpo_stage(
        recipe, stage, tiny_data_dir, sft.path, out, on_line=lines.append)))

    for kind in ("sft", "grpo stage-1"):
        for rank in (0, 1):  # with two machines, global rank r is machine r's one process
            machine = f"[machine {rank}] " if machines > 1 else ""
            assert any(f"{machine}[worker rank {rank} of 2] {kind}" in line for line in lines), (kind, rank)
    client = MlflowClient()
    assert "train_loss" in client.get_run(sft.run_id).data.metrics  # the workers logged into the stage's run
    for run in (sft.run_id, grpo.run_id):
        tags = client.get_run(run).data.tags
        assert (tags["distributed.type"], tags["distributed.processes"], tags["distributed.machines"]) == (
            "MULTI_CPU", "2", str(machines))
    grpo_metrics = client.get_run(grpo.run_id).data.metrics
    assert "reward" in grpo_metrics and "perf/throughput" in grpo_metrics
    assert grpo.metrics["grpo/steps"] == 2 and sft.metrics["sft/rows"] == 40
    assert (model_dir(grpo.path) / "config.json").is_file()


@pytest.mark.integration
def test_deepspeed_zero2_sft_and_zero3_grpo_on_two_cpu_processes(tmp_path, tiny_model_dir, tiny_data_dir):
    """The stock ZeRO configs (bf16 and all) run as they are on 2 CPU processes: ZeRO-2 SFT, then
    ZeRO-3 GRPO, whose generation gathers the sharded weights; each saves a loadable model."""
    pytest.importorskip("deepspeed", reason=DEEPSPEED_INSTALL)
    from safetensors.torch import load_file

    from tasks.layout import model_dir
    from tasks.train.grpo import run_grpo_stage
    from tasks.train.sft import run_sft

    recipe = load_recipe(CONFIGS / "tiny.yaml", [
        f"tracking.runs_dir={tmp_path / 'runs'}", "sft.trainer.max_steps=2",
        "grpo.stages.0.monitors.reward_hacking.policy=off",
        "sft.launcher.num_processes=2", "sft.launcher.config=configs/accelerate/zero2.yaml",
        "grpo.stages.0.launcher.num_processes=2", "grpo.stages.0.launcher.config=configs/accelerate/zero3.yaml"])
    configure_tracking(recipe.tracking)
    sft = run_stage(recipe, StageSpec("sft", "zero", lambda out, hooks: run_sft(recipe, tiny_data_dir, tiny_model_dir.parent, out)))
    stage = recipe.grpo.stages[0]
    grpo = run_stage(recipe, StageSpec("grpo-stage-1", "zero", lambda out, hooks: run_grpo_stage(
        recipe, stage, tiny_data_dir, sft.path, out)))

    client = MlflowClient()
    for run, zero_stage in ((sft.run_id, "2"), (grpo.run_id, "3")):
        tags = client.get_run(run).data.tags
        assert (tags["distributed.type"], tags["distributed.zero_stage"], tags["distributed.mixed_precision"]) == (
            "DEEPSPEED", zero_stage, "bf16")
    assert "reward" in client.get_run(grpo.run_id).data.metrics
    base, trained = (load_file(model_dir(d) / "model.safetensors") for d in (tiny_model_dir.parent, grpo.path))
    assert {k: t.shape for k, t in trained.items()} == {k: t.shape for k, t in base.items()}  # whole, not shards
    moved = max(float((trained[k].float() - t.float()).abs().max() / t.float().abs().max()) for k, t in base.items())
    assert moved > 0.05  # training moved the weights, by far more than bf16 rounding (0.4%)
