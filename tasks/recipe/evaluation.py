"""Recipe section of evaluation: benchmarks, sampling, backend, promotion metric."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tasks.recipe.audit import EvalAudit
from tasks.recipe.base import Section

HELDOUT = "heldout"


class Benchmark(Section):
    """One benchmark; its metrics are logged as `<name>/<metric>`. The fields given pick the kind:
    `{name: heldout}` is the curated held-out split; with `path`, a project benchmark from any jsonl
    of questions and answers; otherwise an lm-eval benchmark (`lm_eval`, default `name`) with its dataset
    from the hub or, with `data_files`, from local files. Held-out and jsonl benchmarks, and lm-eval
    benchmarks given a `verifier`, are scored by our verifier on k samples per prompt (pass_at_1,
    pass_at_k, no_answer); other lm-eval benchmarks keep their own prompt, filters and metrics."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$",
                      description="Metric prefix of this benchmark (and the name of the lm-eval task written for it).")
    lm_eval: str | None = Field(None, description="lm-eval benchmark to run: a registered name (lm-eval calls it a "
                                                  "task) or a task YAML file. Empty: `name`.")
    data_files: dict[str, str] = Field(
        default_factory=dict, description="Split -> local json/jsonl file replacing the lm-eval task's dataset, "
                                          "e.g. {train: .../train.jsonl, test: .../test.jsonl}.")
    path: str | None = Field(None, description="A jsonl file of questions and answers (a project benchmark).")
    columns: dict[str, str] = Field(
        default_factory=dict, description="question/answer <- column of the rows, e.g. {question: problem}.")
    verifier: str | None = Field(None, description="Registered verifier that scores each sample. Empty: "
                                                   "data.verifier for `heldout` (the curated rows' own verifier), "
                                                   "math_answer_reward for a jsonl benchmark, or the lm-eval "
                                                   "task's own metrics.")
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
        return "heldout" if self.name == HELDOUT and not self.lm_eval else "lm_eval"

    @property
    def scored_by_verifier(self) -> bool:
        return self.kind != "lm_eval" or self.verifier is not None

    @model_validator(mode="after")
    def _fields_fit_kind(self):
        if self.path and (self.lm_eval or self.data_files):
            raise ValueError("a benchmark reads either `path` (a project jsonl) or an `lm_eval` benchmark "
                             "(with optional `data_files`), not both")
        if self.name == HELDOUT and (self.path or self.data_files or self.lm_eval):
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
    audit: EvalAudit = Field(EvalAudit(), description="Re-check a sample of the verifier-scored samples "
                                                      "(docs/evaluation.md#verifier-audit).")

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

