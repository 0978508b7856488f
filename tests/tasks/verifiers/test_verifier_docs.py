"""docs/verifiers.md documents every registered verifier and every one of its parameters."""

import re
from pathlib import Path

import pytest

from tasks.verifiers import REWARDS, reward_param_names

DOC = Path(__file__).resolve().parents[3] / "docs" / "verifiers.md"


def _section(text: str, name: str) -> str:
    """The text from the heading that names the verifier to the next heading."""
    m = re.search(rf"^#+ .*`{name}`.*$", text, re.MULTILINE)
    assert m, f"no heading for {name} in {DOC}"
    rest = text[m.end():]
    nxt = re.search(r"^#+ ", rest, re.MULTILINE)
    return rest[: nxt.start()] if nxt else rest


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_every_verifier_and_param_is_documented(name):
    section = _section(DOC.read_text(), name)
    assert "**Scoring rule:**" in section, f"{name}: its section states no scoring rule"
    for param in reward_param_names(name):
        assert f"`{param}`" in section, f"parameter {param} of {name} is not documented in its section"
