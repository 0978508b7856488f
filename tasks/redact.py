"""Secrets never leave the process: what a recipe holds under a secret-named key, and the
credentials inside URLs, are replaced before anything is logged or sent to a server.

    redact({"trainer": {"hub_token": "hf_x"}})        # {"trainer": {"hub_token": "<redacted>"}}
    redact_text("https://user:pw@host/v1")            # "https://<redacted>@host/v1"
    redact_logs(secret_values(raw_recipe))            # every log record, of every logger

A key names a secret when one of its `_`-separated words is token, secret, password, passwd,
credential(s), key or apikey (`hub_token`, `api_key`, `aws_secret_access_key`), except the
tokenizer's special-token settings (`pad_token`, `eos_token`, ...) and references to an
environment variable (`*_env`, e.g. `api_key_env`): the way to keep a secret out of YAML.
Only string values are secrets (`max_new_tokens: 256` is a number).
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "<redacted>"
_SECRET_WORDS = {"token", "secret", "password", "passwd", "credential", "credentials", "key", "apikey"}
_NOT_SECRET = re.compile(r"^(pad|eos|bos|unk|sep|cls|mask)_token$|_env$")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/@\s:]*(?::[^/@\s]*)?)@")


def is_secret_key(key: Any) -> bool:
    name = str(key).lower()
    return not _NOT_SECRET.search(name) and bool(_SECRET_WORDS & set(re.split(r"[_\-.]", name)))


def redact_text(text: str) -> str:
    """`scheme://user:password@host` -> `scheme://<redacted>@host`."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)


def redact(obj: Any, key: Any = None) -> Any:
    """A copy of a JSON-like value with secret-named string values and URL credentials replaced."""
    if isinstance(obj, dict):
        return {k: redact(v, k) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return REDACTED if obj and key is not None and is_secret_key(key) else redact_text(obj)
    return obj


def redact_override(override: str) -> str:
    """A `key.path=value` override as it may be recorded: the value redacted when the last key is
    secret-named, URL credentials redacted in any value."""
    key, sep, value = override.partition("=")
    if not sep:
        return override
    secret = value.strip() and is_secret_key(key.strip().rsplit(".", 1)[-1])
    return f"{key}={REDACTED if secret else redact_text(value)}"


def secret_values(obj: Any, key: Any = None) -> set[str]:
    """The literal secrets a JSON-like value holds (secret-named strings, URL credentials)."""
    if isinstance(obj, dict):
        return set().union(*(secret_values(v, k) for k, v in obj.items()))
    if isinstance(obj, list | tuple):
        return set().union(*(secret_values(v) for v in obj))
    if not isinstance(obj, str) or not obj:
        return set()
    if key is not None and is_secret_key(key):
        return {obj}
    return {m["cred"] for m in _URL_CREDENTIALS.finditer(obj) if m["cred"]}


def redact_logs(secrets: set[str]) -> None:
    """Every log record made from now on, by any logger (Prefect's included), has these values
    and any URL credentials replaced before a handler sees it."""
    make = logging.getLogRecordFactory()
    if getattr(make, "_rlvr_secrets", None) is not None:
        make._rlvr_secrets |= secrets
        return
    values = set(secrets)

    def factory(*args, **kwargs):
        record = make(*args, **kwargs)
        text = redact_text(record.getMessage())
        for value in sorted(values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        record.msg, record.args = text, None
        return record

    factory._rlvr_secrets = values
    logging.setLogRecordFactory(factory)
