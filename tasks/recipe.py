"""The recipe: one typed schema for a whole pipeline run, also the flows' parameter type.

    recipe = load_recipe("configs/default.yaml", overrides=["grpo.stages.0.trainer.learning_rate=1e-5"])

Every model forbids unknown keys. `load_recipe` turns pydantic's errors into one message per
problem that names the key path, the bad value and what is allowed (the closest valid key for
a typo), and checks every `trainer:` map against the installed TRL config dataclasses, all
before any compute starts.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class RecipeError(ValueError):
    """A recipe that cannot run; the message lists every problem found."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# ---------------------------------------------------------------- model
class ScratchModel(Section):
    """Architecture of a decoder initialised from random weights (the embedded default)."""

    architecture: Literal["qwen2", "llama"] = "qwen2"
    hidden_size: int = Field(64, gt=0)
    intermediate_size: int = Field(256, gt=0)
    num_layers: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    num_kv_heads: int = Field(2, gt=0)
    max_position_embeddings: int = Field(256, gt=0)
    vocab_size: int = Field(256, ge=64, description="Size of the BPE tokenizer trained on the curated data.")

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads})")
        return self


class ModelSection(Section):
    name_or_path: str | None = Field(
        None, description="A local model directory or hub id (hub ids need network). Empty: train a tokenizer "
                          "on the curated data and initialise `scratch` from random weights.")
    scratch: ScratchModel = ScratchModel()


# ---------------------------------------------------------------- data
class Source(Section):
    """One raw source. `kind` picks which other fields apply."""

    kind: Literal["synthetic", "jsonl", "parquet", "csv", "hf"] = "synthetic"
    name: str = Field("arithmetic", description="Generator name (synthetic), file path (jsonl, parquet, csv) "
                                                "or hub id (hf).")
    n: int | None = Field(None, gt=0, description="Rows to generate (synthetic) or to take at most.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the generator.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Canonical column <- source column, e.g. {question: problem}. "
                                          "Canonical: id, question (or messages), answer, reasoning, task, source.")
    answer_format: Literal["plain", "gsm8k", "boxed"] = Field(
        "plain", description="How the gold answer is written in the source's answer column.")
    task: str = Field("math", description="Task type of rows without a `task` column (which verifier applies).")
    config: str | None = Field(None, description="hf: the dataset configuration (subset) name.")
    split: str = Field("train", description="hf: the split to read.")
    streaming: bool = Field(False, description="hf: iterate the dataset without downloading it whole first.")
    weight: float = Field(1.0, gt=0, le=1, description="Share of this source's rows to keep in the mixture "
                                                       "(each row kept with this probability, seeded).")

    @model_validator(mode="after")
    def _needs_n(self):
        if self.kind == "synthetic" and self.n is None:
            raise ValueError("a synthetic source needs `n`, the number of rows to generate")
        return self

    @property
    def label(self) -> str:
        """Short name for reports and the canonical `source` column."""
        if self.kind in ("jsonl", "parquet", "csv"):
            path = Path(self.name)
            return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
        return f"{self.kind}:{self.name}" + (f":{self.split}" if self.kind == "hf" else "")


_FILE_KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".csv": "csv"}


class DedupSection(Section):
    """Duplicate prompts, on normalised text (lowercase, whitespace collapsed); the first copy stays."""

    near_duplicate_threshold: float | None = Field(
        0.8, gt=0, le=1, description="A prompt whose word-shingle Jaccard similarity with an earlier one is "
                                     "estimated above this (MinHash LSH) is a near duplicate. Empty: exact only.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations: more is sharper and slower.")
    shingle_words: int = Field(5, gt=0, description="Words per shingle; shorter prompts are compared whole.")


class DecontaminationSection(Section):
    """Training rows that share a word n-gram with an evaluation benchmark are quarantined
    (open-r1's method). The held-out split is always checked; these benchmarks too."""

    ngram: int = Field(8, gt=0, description="Words per n-gram (open-r1 and s1 use 8).")
    benchmarks: list[Source] = Field(
        default_factory=list, description="Benchmark files (a path: .jsonl, .parquet or .csv) or sources; "
                                          "their question column (after `columns`) is compared.")

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _paths_as_sources(cls, items):
        def as_source(item):
            if not isinstance(item, str):
                return item
            kind = _FILE_KINDS.get(Path(item).suffix.lower())
            if kind is None:
                raise ValueError(f"benchmark {item!r}: a path must end in one of {sorted(_FILE_KINDS)}")
            return {"kind": kind, "name": item}

        return [as_source(i) for i in items] if isinstance(items, list) else items


class SamplingSettings(Section):
    """Generation settings for data-side sampling (pass rates, rejection sampling)."""

    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, gt=0)
    batch_size: int = Field(16, gt=0, description="Prompts per generation call.")


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


class ColdStartSection(SamplingSettings):
    """Where the cold-start SFT traces come from. Every kept trace passes `data.verifier`."""

    mode: Literal["traces", "rejection_sampling"] = Field(
        "traces", description="traces: the sources' own worked solutions; rejection_sampling: a teacher "
                              "writes `candidates` answers per prompt and the first correct one is kept.")
    teacher: str = Field("policy", description="'policy' (model.name_or_path), a model directory or hub id, or "
                                               "an OpenAI-compatible base URL such as http://127.0.0.1:8000/v1.")
    teacher_model: str | None = Field(None, description="Model name sent to an endpoint; empty: the first listed.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable with the endpoint's key, if any.")
    timeout_s: float = Field(300, gt=0, description="Per-request timeout for an endpoint.")
    candidates: int = Field(4, gt=0, description="Answers sampled per prompt.")
    temperature: float = Field(0.6, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(1024, gt=0)

    @property
    def teacher_is_endpoint(self) -> bool:
        return self.teacher.startswith(("http://", "https://"))


class DataSection(Section):
    sources: list[Source] = Field(default_factory=lambda: [Source(n=4000)], min_length=1)
    eval_size: int = Field(200, gt=0, description="Held-out rows for evaluation (never trained on).")
    sft_size: int = Field(1000, ge=0, description="Rows of the cold-start SFT set (0: no SFT data).")
    max_prompt_chars: int = Field(2000, gt=0, description="Longer prompts are quarantined (TRL does not truncate them).")
    max_prompt_tokens: int | None = Field(
        None, gt=0, description="Token budget of the chat-formatted prompt, counted with model.name_or_path's "
                                "tokenizer (needs one); replaces max_prompt_chars.")
    system_prompt: str | None = Field(None, description="Optional system message before every question.")
    verifier: str = Field("math_answer_reward", description="Registered verifier that decides whether an answer "
                                                            "is correct (score 1.0): cold-start traces, pass rates.")
    dedup: DedupSection = DedupSection()
    decontamination: DecontaminationSection = DecontaminationSection()
    difficulty: DifficultySection = DifficultySection()
    cold_start: ColdStartSection = ColdStartSection()
    num_proc: int = Field(1, gt=0, description="Processes for validation, hashing and decontamination.")
    seed: int = 0


# ---------------------------------------------------------------- training
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
    enabled: bool = True
    trainer: dict[str, Any] = Field(default_factory=dict, description="Any TRL SFTConfig field.")
    launcher: Launcher = Launcher()


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
    threshold: float = Field(0.05, ge=0, description="Trips when the mean token entropy (nats) < threshold.")


class KLMonitor(_Monitor):
    threshold: float = Field(1.0, gt=0, description="Trips when kl > threshold (logged only when beta > 0).")


class CanaryMonitor(_Monitor):
    """Reward-hacking canary: greedy accuracy on GRPO rows held back from training."""

    every: int = Field(25, gt=0, description="Greedy-decode the canary rows every this many steps.")
    rows: int = Field(16, gt=0, description="Rows of the stage's selection held back from training for the canary.")
    reward: str = Field("math_answer_reward", description="Verifier that scores the canary completions.")
    max_drop: float = Field(0.15, gt=0, le=1, description="Trips when canary accuracy is this far below its best "
                                                         "while the training reward has risen since then.")


class Monitors(Section):
    """Health checks on the trainer's metrics at each logging step (docs/grpo.md#monitors)."""

    patience: int = Field(2, ge=1, description="Consecutive logging steps past a threshold before it trips.")
    zero_variance: ZeroVarianceMonitor = ZeroVarianceMonitor()
    truncation: TruncationMonitor = TruncationMonitor()
    entropy_collapse: EntropyMonitor = EntropyMonitor()
    kl_blowup: KLMonitor = KLMonitor()
    reward_hacking: CanaryMonitor = CanaryMonitor()


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
    trainer: dict[str, Any] = Field(default_factory=dict, description="Any TRL GRPOConfig field.")
    dynamic_sampling: DynamicSampling | None = Field(None, description="Empty: on for preset dapo, off otherwise.")
    lora: LoraSpec | None = Field(None, description="Empty: train all weights.")
    checkpoint_every: int = Field(50, gt=0, description="Save a resumable checkpoint every N steps (save_steps).")
    monitors: Monitors = Monitors()
    log_samples: int = Field(16, ge=0, description="Completions logged to MLflow as a table at each logging step.")
    launcher: Launcher = Launcher()


class GRPOSection(Section):
    stages: list[GRPOStage] = Field(default_factory=lambda: [GRPOStage()])

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages):
        names = [s.name for s in stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stage names must be unique; repeated: {dup}")
        return stages


# ---------------------------------------------------------------- evaluation, tracking
HELDOUT = "heldout"


class Benchmark(Section):
    """One benchmark; its metrics are logged as `<name>/<metric>`. The fields given pick the kind:
    `{name: heldout}` is the curated held-out split; with `path`, a project benchmark from any jsonl
    of questions and answers; otherwise an lm-eval task (`task`, default `name`) with its dataset
    from the hub or, with `data_files`, from local files. Held-out and jsonl benchmarks, and lm-eval
    tasks given a `verifier`, are scored by our verifier on k samples per prompt (pass_at_1,
    pass_at_k, no_answer); other lm-eval tasks keep their own prompt, filters and metrics."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$",
                      description="Metric prefix and lm-eval task name of this benchmark.")
    task: str | None = Field(None, description="lm-eval task to run: a registered name or a task YAML file. "
                                               "Empty: `name`.")
    data_files: dict[str, str] = Field(
        default_factory=dict, description="Split -> local json/jsonl file replacing the lm-eval task's dataset, "
                                          "e.g. {train: .../train.jsonl, test: .../test.jsonl}.")
    path: str | None = Field(None, description="A jsonl file of questions and answers (a project benchmark).")
    columns: dict[str, str] = Field(
        default_factory=dict, description="question/answer <- column of the rows, e.g. {question: problem}.")
    verifier: str | None = Field(None, description="Registered verifier that scores each sample. Empty: "
                                                   "math_answer_reward, or the lm-eval task's own metrics.")
    verifier_params: dict[str, Any] = Field(default_factory=dict)
    num_fewshot: int | None = Field(None, ge=0, description="lm-eval tasks only. Empty: the task's own.")
    limit: int | None = Field(None, gt=0, description="Evaluate at most this many rows. Empty: evaluation.limit.")
    samples: int | None = Field(None, gt=0, description="Verifier-scored only. Empty: evaluation.samples "
                                                        "(1 when greedy).")
    temperature: float | None = Field(None, ge=0, description="Empty: evaluation.temperature for verifier-scored "
                                                              "benchmarks, the task's own for lm-eval metrics.")
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, gt=0)
    chat_template: bool = Field(True, description="Wrap prompts in the tokenizer's chat template.")
    metric: str | None = Field(None, description="Headline metric in the comparison chart, e.g. "
                                                 "exact_match/strict-match. Empty: pass_at_1 or the task's first.")

    @property
    def kind(self) -> Literal["heldout", "jsonl", "lm_eval"]:
        if self.path:
            return "jsonl"
        return "heldout" if self.name == HELDOUT and not self.task else "lm_eval"

    @property
    def scored_by_verifier(self) -> bool:
        return self.kind != "lm_eval" or self.verifier is not None

    @model_validator(mode="after")
    def _fields_fit_kind(self):
        if self.path and (self.task or self.data_files):
            raise ValueError("a benchmark reads either `path` (a project jsonl) or an lm-eval `task` "
                             "(with optional `data_files`), not both")
        if self.name == HELDOUT and (self.path or self.data_files or self.task):
            raise ValueError("`heldout` is the curated held-out split; give a benchmark with its own data "
                             "another name")
        if self.kind != "lm_eval" and self.num_fewshot:
            raise ValueError(f"{self.name}: num_fewshot applies to lm-eval tasks (they have a few-shot split)")
        if not self.scored_by_verifier and (self.samples or self.verifier_params or self.columns):
            raise ValueError(f"{self.name}: samples/verifier_params/columns apply to verifier-scored benchmarks; "
                             "lm-eval's own metrics score one sample per prompt (set `verifier:` for k samples)")
        if set(self.columns) - {"question", "answer"}:
            raise ValueError(f"{self.name}: columns maps `question` and `answer` only, got {sorted(self.columns)}")
        if self.temperature == 0 and (self.samples or 1) > 1:
            raise ValueError(f"{self.name}: greedy decoding (temperature 0) gives identical samples: set samples to 1")
        return self


class VLLMOptions(Section):
    """lm-eval's vLLM backend (GPU, `pip install -e '.[gpu]'`); the model is loaded from its saved path."""

    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_model_len: int | None = Field(None, gt=0, description="Empty: the model's own context length.")
    tensor_parallel_size: int = Field(1, ge=1)


class EvaluationSection(Section):
    checkpoints: list[Literal["base", "sft", "grpo"]] = Field(
        default_factory=lambda: ["base", "sft", "grpo"],
        description="Which checkpoints to evaluate; 'grpo' means every GRPO stage.")
    benchmarks: list[Benchmark] = Field(
        default_factory=lambda: [Benchmark(name=HELDOUT)], min_length=1,
        description="What every checkpoint is evaluated on (docs/evaluation.md).")
    backend: Literal["hf", "vllm"] = Field("hf", description="hf: transformers (CPU or GPU); vllm: GPU only.")
    vllm: VLLMOptions = VLLMOptions()
    samples: int = Field(4, gt=0, description="Samples per prompt; pass@1 is their mean (DeepSeek-R1 protocol).")
    temperature: float = Field(0.6, ge=0, description="0 means greedy decoding (then samples must be 1).")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(64, gt=0)
    batch_size: int = Field(64, gt=0)
    limit: int | None = Field(None, gt=0, description="Evaluate at most this many rows of each benchmark.")
    seed: int = Field(1234, description="Seeds sampling and few-shot selection; recorded on every eval run.")
    primary_metric: str = Field("heldout/pass_at_1", description="`<benchmark>/<metric>` that decides promotion.")
    promotion_margin: float = Field(0.0, ge=0, description="Challenger must beat champion by more than this.")

    @model_validator(mode="after")
    def _greedy_single(self):
        if self.temperature == 0 and self.samples != 1:
            raise ValueError("greedy decoding (temperature 0) gives identical samples: set samples to 1")
        return self

    @model_validator(mode="after")
    def _benchmark_names(self):
        names = [b.name for b in self.benchmarks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"benchmark names must be unique; repeated: {dup}")
        bench = self.primary_metric.split("/")[0]
        if bench not in names or "/" not in self.primary_metric:
            raise ValueError(f"primary_metric {self.primary_metric!r} must be `<benchmark>/<metric>` with a "
                             f"benchmark of this section: {', '.join(names)}")
        return self


class TrackingSection(Section):
    runs_dir: str = Field("runs", description="Stage outputs, the MLflow store and artifacts live here.")
    tracking_uri: str | None = Field(None, description="Empty: sqlite:///<runs_dir>/mlflow.db.")
    experiment: str = "rlvr"
    registered_model: str = Field("rlvr-default", description="MLflow registered model name.")
    log_checkpoints: bool = Field(True, description="Log each stage's final model directory as run artifacts.")


class Recipe(Section):
    """A whole pipeline run: data -> cold-start SFT -> GRPO stages -> evaluation -> promotion."""

    name: str = "default"
    seed: int = 0
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    sft: SFTSection = SFTSection()
    grpo: GRPOSection = GRPOSection()
    evaluation: EvaluationSection = EvaluationSection()
    tracking: TrackingSection = TrackingSection()

    @model_validator(mode="after")
    def _checks_across_sections(self):
        if self.sft.enabled and self.data.sft_size == 0:
            raise ValueError("sft.enabled is true but data.sft_size is 0: set sft_size > 0 or disable SFT")
        if self.data.max_prompt_tokens and not self.model.name_or_path:
            raise ValueError("data.max_prompt_tokens counts tokens with model.name_or_path's tokenizer; a scratch "
                             "model has none before curation: set model.name_or_path or use data.max_prompt_chars")
        cold = self.data.cold_start
        if cold.mode == "rejection_sampling" and cold.teacher == "policy" and not self.model.name_or_path:
            raise ValueError("data.cold_start.teacher 'policy' means model.name_or_path, which is empty (a scratch "
                             "model cannot answer before training): name a teacher model or endpoint")
        return self

    def digest(self, *parts: str) -> str:
        """Stable hash of the named sections (e.g. "data", "sft"), for cache keys."""
        return stable_hash({p: _get_path(self.model_dump(mode="json"), p) for p in parts})


# ---------------------------------------------------------------- loading
def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _get_path(d: Any, path: str) -> Any:
    for part in path.split("."):
        d = d[int(part)] if isinstance(d, list) else d[part]
    return d


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b.0.c=value` overrides (value parsed as YAML) to a raw recipe dict."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not of the form key.path=value")
        path, value = item.split("=", 1)
        keys = path.strip().split(".")
        node = raw
        for k in keys[:-1]:
            if isinstance(node, list):
                node = node[int(k)]
            else:
                node = node.setdefault(k, {})
        last = keys[-1]
        node[int(last) if isinstance(node, list) else last] = _parse_value(value)
    return raw


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-5` as a float, as YAML 1.2 does (1.1 reads it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$"),
    list("-+0123456789"))


def _parse_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at `loc` (for 'did you mean')."""
    cls: Any = Recipe
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        cls = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if cls is None:
            return None
    return cls


def _did_you_mean(name: str, valid) -> str:
    close = difflib.get_close_matches(str(name), sorted(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _describe(err: dict) -> str:
    loc = tuple(err["loc"])
    path = ".".join(str(p) for p in loc) or "<recipe>"
    if err["type"] == "extra_forbidden":
        owner = _model_at(loc)
        valid = sorted(owner.model_fields) if owner else []
        return f"{path}: unknown key{_did_you_mean(loc[-1], valid)} Valid keys here: {', '.join(valid)}"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    return f"{path}: {err['msg']} (got {shown})"


def _check_trainer_keys(recipe: Recipe) -> list[str]:
    """Each `trainer:` map must hold fields of the installed TRL config and build a valid config."""
    import dataclasses
    import tempfile

    from trl import GRPOConfig, SFTConfig

    from tasks.grpo_presets import stage_trainer_fields

    problems = []
    maps = [("sft.trainer", SFTConfig, recipe.sft.trainer, recipe.sft.trainer)] + [
        (f"grpo.stages.{i}.trainer", GRPOConfig, s.trainer, stage_trainer_fields(s))
        for i, s in enumerate(recipe.grpo.stages)]
    for where, cls, trainer, settings in maps:  # settings: a GRPO preset's fields + the trainer map
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = [k for k in trainer if k not in fields]
        for k in unknown:
            problems.append(f"{where}.{k}: not a field of TRL {cls.__name__}{_did_you_mean(k, fields)}")
        if unknown or where == "sft.trainer" and not recipe.sft.enabled:
            continue
        try:  # the config's own cross-field checks (e.g. batch divisible by num_generations)
            with tempfile.TemporaryDirectory() as tmp:
                cls(**{"output_dir": tmp, "report_to": "none", "use_cpu": True, **settings})
        except (ValueError, TypeError) as e:
            problems.append(f"{where}: TRL {cls.__name__} rejects these settings: {e}")
    return problems


def _check_rewards(recipe: Recipe) -> list[str]:
    from tasks.verifiers import REWARDS, build_reward, reward_runtime_problem

    problems = []
    for i, stage in enumerate(recipe.grpo.stages):
        for j, spec in enumerate(stage.rewards):
            where = f"grpo.stages.{i}.rewards.{j}"
            if spec.name not in REWARDS:
                problems.append(f"{where}.name: unknown verifier {spec.name!r}{_did_you_mean(spec.name, REWARDS)}"
                                f" Valid: {', '.join(sorted(REWARDS))}")
                continue
            try:
                build_reward(spec.name, spec.params)
            except (ValueError, TypeError) as e:
                problems.append(f"{where}.params: {e}")
                continue
            if problem := reward_runtime_problem(spec.name, spec.params):  # e.g. no sandbox for code_reward
                problems.append(f"{where}.params.isolation: {problem}")
    if recipe.data.verifier not in REWARDS:
        problems.append(f"data.verifier: unknown verifier {recipe.data.verifier!r}"
                        f"{_did_you_mean(recipe.data.verifier, REWARDS)} Valid: {', '.join(sorted(REWARDS))}")
    elif problem := reward_runtime_problem(recipe.data.verifier):
        problems.append(f"data.verifier: {problem}")
    return problems


def _check_files(recipe: Recipe) -> list[str]:
    problems = []
    data = recipe.data
    listed = [(f"data.sources.{i}", s) for i, s in enumerate(data.sources)] + [
        (f"data.decontamination.benchmarks.{i}", s) for i, s in enumerate(data.decontamination.benchmarks)]
    for where, src in listed:
        if src.kind in ("jsonl", "parquet", "csv") and not Path(src.name).is_file():
            problems.append(f"{where}.name: file not found: {src.name}")
    models = [("data.difficulty.policy", data.difficulty.policy if data.difficulty.policy != "current" else None),
              ("data.cold_start.teacher", data.cold_start.teacher if data.cold_start.mode == "rejection_sampling"
               and data.cold_start.teacher != "policy" and not data.cold_start.teacher_is_endpoint else None)]
    for where, path in models:
        if path and (path.startswith((".", "/")) or Path(path).exists()) and not Path(path).is_dir():
            problems.append(f"{where}: model directory not found: {path}")
    path = recipe.model.name_or_path
    if path and (path.startswith((".", "/")) or Path(path).exists()) and not Path(path).is_dir():
        problems.append(f"model.name_or_path: directory not found: {path}")
    return problems


def _check_benchmarks(recipe: Recipe) -> list[str]:
    from tasks.benchmark_checks import check_benchmarks

    return check_benchmarks(recipe.evaluation)


def validate_recipe(raw: dict) -> Recipe:
    """A Recipe from a raw dict, or one RecipeError that lists every problem."""
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        lines = [_describe(err) for err in e.errors()]
        raise RecipeError("invalid recipe:\n  " + "\n  ".join(lines)) from None
    from tasks.grpo_presets import check_stages

    problems = (_check_files(recipe) + _check_benchmarks(recipe) + _check_rewards(recipe)
                + _check_trainer_keys(recipe) + check_stages(recipe))
    if problems:
        raise RecipeError("invalid recipe:\n  " + "\n  ".join(problems))
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe YAML; nothing is written or computed."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    return validate_recipe(apply_overrides(raw, overrides or []))
