"""An LLM judge for the verifier audit (TinyV-style), at a user-given OpenAI-compatible endpoint.

    judge = Judge(url="http://127.0.0.1:8000/v1", model="qwen2.5-7b-instruct")
    judge.judge(question, gold, answer)   # True / False, or None (no answer, error, budget spent)

Off unless a recipe names an endpoint (`audit.judge.url`); nothing offline needs it. Each call
is one `POST {url}/chat/completions` with `timeout_s`, at most `max_calls` per stage or
evaluation; the API key, if any, is read from the environment variable `api_key_env` (never from
the recipe). The reply must start with True or False; anything else is no verdict. A judge
failure never fails the stage: the item stays undecided and the failure is counted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request

log = logging.getLogger(__name__)

PROMPT = """You are grading a math answer. Decide whether the student's final answer is mathematically
equivalent to the reference answer (formatting, units, equivalent forms and notation do not matter;
a different value does).

Question: {question}
Reference answer: {gold}
Student's final answer: {answer}

Reply with exactly one word: True if equivalent, False if not."""


class Judge:
    def __init__(self, url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 20.0,
                 max_calls: int = 64):
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.timeout_s, self.max_calls = model, timeout_s, max_calls
        self.key = os.environ.get(api_key_env) if api_key_env else None
        self.calls = self.failures = 0

    def judge(self, question: str, gold: str, answer: str) -> bool | None:
        if self.calls >= self.max_calls:
            return None
        self.calls += 1
        body = {"model": self.model, "temperature": 0.0, "max_tokens": 8, "messages": [
            {"role": "user", "content": PROMPT.format(question=question[-2000:], gold=gold, answer=answer[-1000:])}]}
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.key}"} if self.key else {})}
        req = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - the user's endpoint
                reply = json.loads(resp.read(1 << 20))["choices"][0]["message"]["content"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
            self.failures += 1
            log.warning("audit judge at %s failed: %s", self.url, e)
            return None
        m = re.match(r"\W*(true|false)\b", str(reply), re.IGNORECASE)
        return None if m is None else m.group(1).lower() == "true"


def build_judge(settings) -> Judge | None:
    """The judge a recipe's `audit.judge` names, or None when it names no endpoint."""
    if settings is None or not settings.url:
        return None
    return Judge(settings.url, settings.model, settings.api_key_env, settings.timeout_s, settings.max_calls)
