"""Sampling answers for data curation: a local model (HF `generate`) or an OpenAI-compatible endpoint.

    sample = make_sampler("runs/.../model", settings, seed=0)      # or "http://127.0.0.1:8000/v1"
    completions = sample(prompts, n=8)     # prompts: chat message lists -> n texts per prompt

Used by the pass-rate filter (the current policy) and by rejection sampling (a teacher);
`judge` scores the samples with a registered verifier, as the GRPO reward would.
Local sampling is batched and seeded per batch, so the same settings give the same samples.
An endpoint is checked before any work and fails with a message saying what to start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tasks.modeling import load_model
from tasks.recipe import SamplingSettings
from tasks.stages import tag_stage_run
from tasks.verifiers import build_reward, sandbox_tags
from tasks.verifiers.rows import repeat_columns, reward_columns

log = logging.getLogger(__name__)

Sampler = Callable[[list[list[dict]], int], list[list[str]]]


class EndpointError(RuntimeError):
    """The OpenAI-compatible endpoint cannot be used (unreachable, or it answered an error)."""


def hf_sampler(model_path: str, cfg: SamplingSettings, seed: int) -> Sampler:
    """Sample with `model.generate` on a local model directory (or hub id)."""
    import torch

    model, tok = load_model(model_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()

    def sample(prompts: list[list[dict]], n: int) -> list[list[str]]:
        out: list[list[str]] = []
        for b, start in enumerate(range(0, len(prompts), cfg.batch_size)):
            chunk = prompts[start: start + cfg.batch_size]
            texts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in chunk]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            torch.manual_seed(seed + b)  # per batch: a resumed or partial run draws the same samples
            with torch.no_grad():
                ids = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                                     max_new_tokens=cfg.max_new_tokens, num_return_sequences=n,
                                     pad_token_id=tok.pad_token_id)
            decoded = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [decoded[i * n:(i + 1) * n] for i in range(len(chunk))]
        return out

    return sample


class EndpointSampler:
    """Chat completions from an OpenAI-compatible server (vLLM, TGI, SGLang, OpenAI)."""

    def __init__(self, base_url: str, cfg: SamplingSettings, seed: int, *, model: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 300, workers: int = 8):
        import requests

        self.base = base_url.rstrip("/")
        self.cfg, self.seed, self.timeout, self.workers = cfg, seed, timeout_s, workers
        self.session = requests.Session()
        key = os.environ.get(api_key_env)
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"
        self.model = model or self._first_model()

    def _request(self, method: str, path: str, **kwargs) -> dict:
        import requests

        url = f"{self.base}{path}"
        try:
            resp = self.session.request(method, url, timeout=kwargs.pop("timeout", self.timeout), **kwargs)
        except requests.ConnectionError as e:
            raise EndpointError(
                f"teacher endpoint {self.base} is unreachable ({type(e).__name__}). Start an OpenAI-compatible "
                f"server there (e.g. `vllm serve MODEL --port 8000`, then teacher: http://127.0.0.1:8000/v1), "
                f"or set data.cold_start.teacher to a model directory.") from None
        except requests.Timeout:
            raise EndpointError(f"teacher endpoint {url} did not answer within {self.timeout:g} s "
                                f"(data.cold_start.timeout_s)") from None
        if resp.status_code >= 400:
            raise EndpointError(f"teacher endpoint {url} answered HTTP {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def _first_model(self) -> str:
        models = self._request("GET", "/models", timeout=min(self.timeout, 10)).get("data") or []
        if not models:
            raise EndpointError(f"teacher endpoint {self.base} lists no models; set data.cold_start.teacher_model")
        return models[0]["id"]

    def _one(self, messages: list[dict], n: int, i: int) -> list[str]:
        body = {"model": self.model, "messages": messages, "n": n, "temperature": self.cfg.temperature,
                "top_p": self.cfg.top_p, "max_tokens": self.cfg.max_new_tokens, "seed": self.seed + i}
        choices = sorted(self._request("POST", "/chat/completions", json=body).get("choices", []),
                         key=lambda c: c.get("index", 0))
        return [(c.get("message") or {}).get("content") or "" for c in choices]

    def __call__(self, prompts: list[list[dict]], n: int) -> list[list[str]]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._one, prompts, [n] * len(prompts), range(len(prompts))))


def make_sampler(model_or_url: str, cfg: SamplingSettings, seed: int, **endpoint_kwargs) -> Sampler:
    """An endpoint sampler for an http(s) URL (checked now), else a local HF model sampler."""
    if model_or_url.startswith(("http://", "https://")):
        return EndpointSampler(model_or_url, cfg, seed, **endpoint_kwargs)
    return hf_sampler(model_or_url, cfg, seed)


def judge(verifier: str, rows: list[dict], prompts: list[list[dict]], samples: list[list[str]]) -> list[list[bool]]:
    """Whether each sample is correct: the verifier scores it 1.0 against its row's columns
    (`tasks.verifiers.rows.reward_columns`: the columns GRPO hands the reward)."""
    reward = build_reward(verifier)
    tag_stage_run(sandbox_tags([reward]))  # the isolation level, when the verifier runs code
    columns = repeat_columns(reward_columns(rows), [len(group) for group in samples])
    scores = reward(prompts=[p for p, group in zip(prompts, samples) for _ in group],
                    completions=[c for group in samples for c in group], **columns)
    out, i = [], 0
    for group in samples:
        out.append([scores[i + j] == 1.0 for j in range(len(group))])
        i += len(group)
    return out
