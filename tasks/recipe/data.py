"""Recipe sections of the data stage: sources, dedup, decontamination, cold start, sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tasks.recipe.base import Section


class Source(Section):
    """One raw source. `kind` picks which other fields apply."""

    kind: Literal["synthetic", "jsonl", "parquet", "csv", "hf"] = "synthetic"
    name: str = Field("arithmetic", description="Generator name (synthetic), file path (jsonl, parquet, csv) "
                                                "or hub id (hf).")
    n: int | None = Field(None, gt=0, description="Rows to generate (synthetic) or to take at most.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the generator.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Canonical column <- source column, e.g. {question: problem}. "
                                          "Canonical: id, question (or messages), answer, reasoning, family, source.")
    format: Literal["canonical", "countdown", "mbpp", "humaneval", "apps", "livecodebench", "function_calling",
                    "spider", "bird"] = Field(
        "canonical", description="A dataset's native layout, read into question, answer and tests or database "
                                 "(tasks/data/formats.py, tasks/data/sql.py, docs/curation.md#dataset-formats).")
    database_dir: str | None = Field(None, description="spider/bird: the folder holding <db_id>/<db_id>.sqlite. "
                                                       "Empty: the `database` folder beside the file.")
    schema_sample_rows: int = Field(0, ge=0, le=20, description="spider/bird: rows of each table shown under its "
                                                                 "CREATE statement in the prompt.")
    answer_format: Literal["plain", "gsm8k", "boxed"] = Field(
        "plain", description="How the gold answer is written in the source's answer column.")
    family: str = Field("math", description="Task family of rows without a `family` column (math, code, ...: "
                                             "which verifiers apply).")
    config: str | None = Field(None, description="hf: the dataset configuration (subset) name.")
    split: str = Field("train", description="hf: the split to read.")
    streaming: bool = Field(False, description="hf: iterate the dataset without downloading it whole first.")
    revision: str | None = Field(None, description="hf: the dataset revision (a commit sha pins it). Empty: the "
                                                   "newest; curation re-runs when it changes upstream.")
    weight: float = Field(1.0, gt=0, le=1, description="Share of this source's rows to keep in the mixture "
                                                       "(each row kept with this probability, seeded).")

    @model_validator(mode="after")
    def _needs_n(self):
        if self.kind == "synthetic" and self.n is None:
            raise ValueError("a synthetic source needs `n`, the number of rows to generate")
        return self

    @property
    def database_path(self) -> Path:
        """spider/bird: the folder of the databases."""
        return Path(self.database_dir) if self.database_dir else Path(self.name).parent / "database"

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


class ColdStartSection(SamplingSettings):
    """Where the cold-start SFT traces come from. Every kept trace passes `data.verifier`."""

    mode: Literal["traces", "rejection_sampling"] = Field(
        "traces", description="traces: the sources' own worked solutions; rejection_sampling: a teacher "
                              "writes `candidates` answers per prompt and the first correct one is kept.")
    teacher: str = Field("policy", description="'policy' (model.name_or_path), a model directory or hub id, or "
                                               "an OpenAI-compatible base URL such as http://127.0.0.1:8000/v1.")
    candidates: int = Field(4, gt=0, description="Answers sampled per prompt.")
    temperature: float = Field(0.6, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(1024, gt=0)
    # Only read when the teacher is an endpoint: after the common settings in the form.
    teacher_model: str | None = Field(None, title="Advanced (endpoint): teacher model",
                                      description="Model name sent to an endpoint; empty: the first listed.")
    api_key_env: str = Field("OPENAI_API_KEY", title="Advanced (endpoint): API key variable",
                             description="Environment variable with the endpoint's key, if any.")
    timeout_s: float = Field(300, gt=0, title="Advanced (endpoint): timeout (s)",
                             description="Per-request timeout for an endpoint.")

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
    environment: str | None = Field(None, description="Registered environment (tasks/environments) whose tools "
                                                       "the model calls in multi-turn rollouts: GRPO, cold-start "
                                                       "traces and evaluation run its tools. Empty: single-turn.")
    environment_params: dict[str, Any] = Field(default_factory=dict, description="The environment's parameters "
                                               "(e.g. max_calls, max_seconds per rollout).")
    dedup: DedupSection = DedupSection()
    decontamination: DecontaminationSection = DecontaminationSection()
    cold_start: ColdStartSection = ColdStartSection()
    num_proc: int = Field(1, gt=0, description="Processes for validation, hashing and decontamination.")
    seed: int = 0

