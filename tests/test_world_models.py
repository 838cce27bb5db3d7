"""World models are trained with the tokenizer that HF/vLLM will load from the saved directory."""

from __future__ import annotations


def test_training_tokenizer_equals_what_loaders_see(tmp_path):
    from transformers import AutoTokenizer

    from rl_prm.world.cache import loaded_tokenizer

    tok = loaded_tokenizer(tmp_path)
    # what _save_model later writes: the tokenizer and a qwen2 config next to it
    tok.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "qwen2"}')
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Ivan has 13 - 1 = 12 books.\n\nThe answer is \\boxed{12}.\n\nIs the step correct (Yes/No)? Yes"
    assert tok.encode(text, add_special_tokens=False) == again.encode(text, add_special_tokens=False)
    assert tok.encode(" Yes", add_special_tokens=False)[0] != tok.encode(" No", add_special_tokens=False)[0]
    msgs = [{"role": "user", "content": "q"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        again.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
