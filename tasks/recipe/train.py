"""Recipe sections of the training stages: SFT, GRPO stages (rewards, monitors, LoRA), launchers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tasks.recipe.audit import GRPOAudit
from tasks.recipe.base import Section
from tasks.recipe.data import SamplingSettings


class KubernetesPeers(Section):
    """Machines 1..N-1 as a Kubernetes Indexed Job that the flow pod (machine 0) creates and deletes.
    Empty fields are read from the flow pod, where deployments/k8s/gpu-job-template.yaml sets them."""

    manifest: str = Field("deployments/k8s/multinode-workers.yaml",
                          description="The worker Job template (relative to the repository); its {{ placeholders }} "
                                      "are filled at launch.")
    namespace: str | None = Field(None, description="Empty: the flow pod's namespace (POD_NAMESPACE).")
    image: str | None = Field(None, description="Image of the worker pods; they must run the same code. Empty: the "
                                                "flow pod's image (RLVR_IMAGE).")
    runs_volume_claim: str | None = Field(None, description="The ReadWriteMany claim mounted at /runs on every "
                                                            "machine. Empty: the flow pod's (RLVR_RUNS_CLAIM).")


class Launcher(Section):
    """How a training stage runs: inside the calling process, or as `accelerate launch` workers on
    one or several machines (docs/operations.md, "Scaling out")."""

    num_processes: int = Field(1, ge=1, description="Training processes in total over all machines (accelerate's "
                                                    "--num_processes), num_processes / num_machines on each. 1: train "
                                                    "in the calling process. More: workers started with `accelerate "
                                                    "launch`.")
    config: str | None = Field(None, description="An accelerate config YAML, e.g. configs/accelerate/zero2.yaml. "
                                                 "Empty: ddp.yaml on a GPU machine, cpu_2proc.yaml on CPU.")
    num_machines: int = Field(1, ge=1, description="Machines the processes spread over. Machine 0 is the one running "
                                                   "the stage; `peers` starts the others.")
    peers: Literal["local", "kubernetes"] | None = Field(
        None, description="How machines 1..N-1 start (needed when num_machines > 1). local: as more process groups "
                          "on this host (a single-host emulation of a multi-node job, for CPU and tests); "
                          "kubernetes: as pods of an Indexed Job (see `kubernetes`).")
    main_process_ip: str | None = Field(None, description="Address the other machines reach machine 0 at. Empty: "
                                                          "127.0.0.1 for local peers; the flow pod's IP (POD_IP) "
                                                          "for kubernetes.")
    kubernetes: KubernetesPeers = KubernetesPeers()

    @model_validator(mode="after")
    def _machines(self):
        if self.num_processes % self.num_machines:
            raise ValueError(f"num_processes ({self.num_processes}) counts the processes of all machines: it must be "
                             f"a multiple of num_machines ({self.num_machines})")
        if self.num_machines > 1 and self.peers is None:
            raise ValueError(f"num_machines is {self.num_machines}: set peers to 'local' (more process groups on "
                             "this host) or 'kubernetes' (an Indexed Job) to start machines 1..N-1")
        if self.num_machines == 1 and (self.peers or self.main_process_ip):
            raise ValueError("peers and main_process_ip apply when num_machines > 1")
        if self.peers != "kubernetes" and self.kubernetes != KubernetesPeers():
            raise ValueError("kubernetes settings apply with peers: kubernetes")
        return self


class SFTSection(Section):
    """Cold-start SFT. The typed settings below are TRL SFTConfig fields with TRL's defaults;
    `trainer:` passes any other SFTConfig field and wins where both are set."""

    enabled: bool = True
    learning_rate: float = Field(2e-5, gt=0, le=1, description="Peak learning rate. Default: TRL's 2e-5, for "
                                                               "fine-tuning a pretrained model; a from-scratch "
                                                               "model tolerates about 3e-3.")
    num_train_epochs: float = Field(3.0, gt=0, description="Passes over the cold-start set. Default: TRL's 3; "
                                                           "max_steps wins when set.")
    max_steps: int = Field(-1, ge=-1, description="Optimizer steps; -1 (TRL's default): num_train_epochs decides.")
    per_device_train_batch_size: int = Field(8, gt=0, description="Traces per device per micro-batch. Default: "
                                                                  "TRL's 8.")
    max_length: int | None = Field(1024, gt=0, description="Tokens per trace (prompt + completion); longer ones "
                                                           "are truncated. Default: TRL's 1024. Empty: no limit.")
    trainer: dict[str, Any] = Field(default_factory=dict, description="Any other TRL SFTConfig field; wins over "
                                                                      "the typed settings above.")
    launcher: Launcher = Launcher()

    def trainer_fields(self) -> dict[str, Any]:
        """SFTConfig fields of the section: the typed settings, then `trainer:` (wins)."""
        return {**{k: getattr(self, k) for k in SFT_SETTINGS}, **self.trainer}


SFT_SETTINGS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "max_length")
#: The typed GRPOConfig fields of a stage (docs/grpo.md, "Typed settings").
GRPO_SETTINGS = ("learning_rate", "max_steps", "num_generations", "max_completion_length", "temperature", "beta",
                 "per_device_train_batch_size")


class RewardSpec(Section):
    name: str = Field(..., description="A registered verifier, e.g. math_answer_reward.")
    weight: float = 1.0
    params: dict[str, Any] = Field(default_factory=dict)


class StageData(Section):
    """Which curated GRPO rows a stage trains on (e.g. easy items first, hard ones later)."""

    where: dict[str, Any] = Field(
        default_factory=dict, description="Keep rows whose field (dotted for nested, e.g. metadata.level) equals "
                                          "a value, is in a list, or lies in {min: .., max: ..}.")
    max_rows: int | None = Field(None, gt=0, description="Use at most this many of the selected rows.")


class DynamicSampling(Section):
    """DAPO dynamic sampling: groups whose rewards have zero variance are replaced by fresh ones."""

    enabled: bool = True
    max_resamples: int = Field(4, ge=1, description="Extra generation rounds per batch at most (verl's max_num_gen_batches).")


class LoraSpec(Section):
    """Train a LoRA adapter (peft) instead of all weights; merged into the stage's model at the end."""

    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="Module names, or 'all-linear'.")


MonitorPolicy = Literal["warn", "stop", "off"]


class _Monitor(Section):
    policy: MonitorPolicy = Field("warn", description="warn: tag + artifact + log line; stop: also end the stage; off.")

    @field_validator("policy", mode="before")
    @classmethod
    def _yaml_off(cls, v):
        return "off" if v is False else v  # YAML 1.1 reads a bare `off` as false


class ZeroVarianceMonitor(_Monitor):
    threshold: float = Field(0.9, ge=0, le=1, description="Trips when frac_reward_zero_std > threshold.")


class TruncationMonitor(_Monitor):
    threshold: float = Field(0.5, ge=0, le=1, description="Trips when completions/clipped_ratio > threshold.")


class EntropyMonitor(_Monitor):
    threshold: float = Field(0.1, ge=0, description="Trips when the entropy per completion (token-mean entropy x "
                                                     "mean completion length, nats) < threshold: the group's "
                                                     "samples are nearly all one completion.")


class KLMonitor(_Monitor):
    threshold: float = Field(1.0, gt=0, description="Trips when kl > threshold (logged only when beta > 0).")


class UnscoredMonitor(_Monitor):
    """A reward that returned None for every row it applies to in a batch (a missing column,
    a verifier that cannot read the rows): it gives the stage no signal at all."""


class CanaryMonitor(_Monitor):
    """Reward-hacking canary: greedy accuracy on GRPO rows held back from training."""

    every: int = Field(25, gt=0, description="Greedy-decode the canary rows every this many steps.")
    rows: int = Field(16, gt=0, description="Rows of the stage's selection held back from training for the canary.")
    reward: str = Field("math_answer_reward", description="Verifier that scores the canary completions.")
    max_drop: float = Field(0.15, gt=0, le=1, description="Trips when canary accuracy is this far below its best "
                                                         "while the training reward has risen since then.")


class FalseNegativeMonitor(_Monitor):
    threshold: float = Field(0.1, ge=0, le=1, description="Trips when the lower end of the 95% Wilson interval of "
                                                          "the stage's audited false-negative rate > threshold.")


class Monitors(Section):
    """Health checks on the trainer's metrics at each logging step (docs/grpo.md#monitors)."""

    patience: int = Field(2, ge=1, description="Consecutive logging steps past a threshold before it trips.")
    zero_variance: ZeroVarianceMonitor = ZeroVarianceMonitor()
    truncation: TruncationMonitor = TruncationMonitor()
    entropy_collapse: EntropyMonitor = EntropyMonitor()
    kl_blowup: KLMonitor = KLMonitor()
    reward_hacking: CanaryMonitor = CanaryMonitor()
    unscored_reward: UnscoredMonitor = UnscoredMonitor()
    false_negatives: FalseNegativeMonitor = FalseNegativeMonitor()


class GRPOStage(Section):
    """One GRPO stage; it starts from the previous stage's checkpoint (the first from SFT)."""

    name: str = "stage-1"
    preset: Literal["none", "grpo", "dr_grpo", "dapo", "gspo"] = Field(
        "none", description="Named algorithm settings mapped to GRPOConfig fields (docs/grpo.md); `trainer:` "
                            "overrides any of them.")
    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec(name="math_answer_reward"), RewardSpec(name="format_reward", weight=0.2)],
        min_length=1)
    data: StageData = StageData()
    # The settings every recipe sets, as typed GRPOConfig fields with TRL's defaults.
    learning_rate: float = Field(1e-6, gt=0, le=1, description="Peak learning rate. Default: TRL's 1e-6, for a "
                                                               "pretrained 1B+ policy (DeepSeek-R1 used 3e-6); a "
                                                               "from-scratch model needs far more (default.yaml: 2e-4).")
    max_steps: int = Field(-1, ge=-1, description="Optimizer steps of the stage; -1 (TRL's default): "
                                                  "trainer.num_train_epochs (3) passes over the stage's rows.")
    num_generations: int = Field(8, ge=2, description="Completions per prompt: the group whose rewards are "
                                                      "compared (2 at least: one has no baseline). Default: TRL's 8, "
                                                      "as in open-r1. The global batch must be divisible by it.")
    max_completion_length: int = Field(512, gt=0, description="Tokens per completion; longer ones are cut "
                                                              "(monitors.truncation watches the share). Default: "
                                                              "TRL's 512.")
    temperature: float = Field(1.0, gt=0, description="Rollout sampling temperature. Default: TRL's 1.0, the "
                                                      "policy's own distribution; lower explores less.")
    beta: float | None = Field(None, ge=0, description="KL penalty towards the starting model. Empty: the preset's "
                                                       "(grpo 0.04, others 0.0), else TRL's 0.0: DAPO and Dr. GRPO "
                                                       "found no KL term needed with verifiable rewards, and 0 "
                                                       "loads no reference model.")
    per_device_train_batch_size: int = Field(8, gt=0, description="Completions per device per micro-batch. "
                                                                  "Default: TRL's 8 (one prompt's group of 8).")
    trainer: dict[str, Any] = Field(default_factory=dict, description="Any other TRL GRPOConfig field; wins over "
                                                                      "the preset and the typed settings above.")
    dynamic_sampling: DynamicSampling | None = Field(None, description="Empty: on for preset dapo, off otherwise.")
    lora: LoraSpec | None = Field(None, description="Empty: train all weights.")
    checkpoint_every: int = Field(50, gt=0, description="Save a resumable checkpoint every N steps (save_steps).")
    monitors: Monitors = Monitors()
    log_samples: int = Field(16, ge=0, description="Completions logged to MLflow as a table at each logging step.")
    launcher: Launcher = Launcher()
    audit: GRPOAudit = Field(GRPOAudit(), description="Re-check a sample of the verifiers' verdicts (docs/verifiers.md#audit).")

    def typed_fields(self) -> dict[str, Any]:
        """The stage's typed GRPOConfig settings (beta only when set)."""
        return {k: v for k in GRPO_SETTINGS if (v := getattr(self, k)) is not None}


class DifficultySection(SamplingSettings):
    """Pass-rate filter at the start of every GRPO stage: the stage's policy answers each prompt
    `samples` times, the verifier scores them, and prompts whose pass rate lies outside
    [min_pass_rate, max_pass_rate] are quarantined (an all-right or all-wrong group gives GRPO
    no gradient). The kept rows carry a `pass_rate` column."""

    enabled: bool = False
    samples: int = Field(8, ge=2, description="Answers sampled per prompt (open-r1 uses 8).")
    min_pass_rate: float = Field(0.1, ge=0, le=1)
    max_pass_rate: float = Field(0.9, ge=0, le=1)
    policy: str = Field("current", description="'current': the checkpoint the GRPO stage starts from (the SFT "
                                               "model for the first stage); else a model directory.")

    @model_validator(mode="after")
    def _band(self):
        if self.min_pass_rate > self.max_pass_rate:
            raise ValueError(f"min_pass_rate ({self.min_pass_rate}) is above max_pass_rate ({self.max_pass_rate})")
        return self



class GRPOSection(Section):
    stages: list[GRPOStage] = Field(default_factory=lambda: [GRPOStage()])
    difficulty: DifficultySection = DifficultySection()

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages):
        names = [s.name for s in stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stage names must be unique; repeated: {dup}")
        return stages

