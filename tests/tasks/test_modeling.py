from tasks.data.curate import format_completion
from tasks.modeling import load_model


def test_tokenizer_keeps_reasoning_tags_when_skipping_special_tokens(tiny_model_dir):
    _, tok = load_model(tiny_model_dir)
    text = format_completion("12+7=19", "19")
    ids = tok(text)["input_ids"] + [tok.eos_token_id]
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_digits_are_single_tokens(tiny_model_dir):
    _, tok = load_model(tiny_model_dir)
    pieces = tok.convert_ids_to_tokens(tok("1234")["input_ids"])
    assert pieces == ["1", "2", "3", "4"]


def test_chat_template_does_not_prefill_think(tiny_model_dir):
    _, tok = load_model(tiny_model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Compute 1+2."}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and "<think>" not in text


def test_scratch_model_generates(tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    enc = tok.apply_chat_template([[{"role": "user", "content": "Compute 1+2."}]], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
