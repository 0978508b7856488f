"""The audit of an evaluation, on lm-eval's per-sample records (the shape `simple_evaluate` returns)."""

from tasks.eval.audit import EvaluationAudit
from tasks.recipe import EvaluationSection


def _cfg(**audit):
    return EvaluationSection.model_validate({
        "primary_metric": "arith/pass_at_1", "audit": {"sample_rate": 1.0, "max_seconds_per_batch": 60.0, **audit},
        "benchmarks": [{"name": "arith", "path": "/unused.jsonl"},
                       {"name": "mix", "path": "/unused.jsonl", "verifier": "family_reward"},
                       {"name": "gsm8k_local", "lm_eval": "gsm8k"}]})


def _samples(docs):
    """Two filters per document, as lm-eval keeps them: each document must be audited once."""
    return {"arith": [{"doc_id": i, "filter": f, "doc": doc, "resps": [[c] for c in comps]}
                      for f in ("samples", "none") for i, (doc, comps) in enumerate(docs)]}


def test_each_document_is_audited_once_per_benchmark_with_rates_per_benchmark():
    audit = EvaluationAudit(_cfg())
    docs = [({"question": "Compute 600+400.", "answer": "1000"},
             ["<think>x</think><answer>1000</answer>", "<think>x</think> The answer is 1,000.",
              "<think>x</think><answer>999</answer>"])]
    audit.add_benchmark("arith", _samples(docs))
    m = audit.metrics()
    # the verifier misses "The answer is 1,000" (no answer tag): a false negative by the audit's re-parse
    assert (m["audit/negatives_checked"], m["audit/false_negatives"], m["audit/positives_checked"]) == (2, 1, 1)
    assert m["arith/audit/false_negative_rate"] == 0.5
    assert audit.report()["disagreements"][0]["form"] == "phrase"


def test_rows_of_unauditable_families_and_lm_eval_metrics_are_left_alone():
    audit = EvaluationAudit(_cfg())
    code = {"question": "Write f.", "answer": None, "family": "code", "tests": "[]"}
    audit.add_benchmark("mix", {"mix": [{"doc_id": 0, "filter": "samples", "doc": code, "resps": [["```python\n```"]]}]})
    audit.add_benchmark("gsm8k_local", {"gsm8k_local": [{"doc_id": 0, "filter": "strict", "doc": {}, "resps": [["4"]]}]})
    m = audit.metrics()
    assert m["mix/audit/negatives_checked"] == 0 and "gsm8k_local/audit/negatives_checked" not in m


def test_disabled_audit_reports_nothing():
    audit = EvaluationAudit(_cfg(enabled=False))
    audit.add_benchmark("arith", _samples([({"question": "q", "answer": "1"}, ["<answer>1</answer>"])]))
    assert audit.metrics() == {}
