from studio.data.tokenize import IGNORE_INDEX, encode_conversation

TURNS = [
    {"role": "system", "content": "你是小墨"},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "喵～你好 🐾"},
    {"role": "user", "content": "再见"},
    {"role": "assistant", "content": "喵～再见 🐾"},
]


def _label_text(tokenizer, encoded):
    return tokenizer.decode([t for t, l in zip(encoded.input_ids, encoded.labels) if l != IGNORE_INDEX])


def test_only_answers_and_their_end_tokens_are_labelled(tiny_tokenizer):
    encoded = encode_conversation(tiny_tokenizer, TURNS[:3], cutoff_len=512)
    assert _label_text(tiny_tokenizer, encoded) == "喵～你好 🐾<|im_end|>\n"
    assert encoded.labels[: len(encoded.labels) - encoded.num_label_tokens] == [IGNORE_INDEX] * (
        len(encoded.labels) - encoded.num_label_tokens
    )


def test_multi_turn_labels_every_assistant_turn(tiny_tokenizer):
    encoded = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=512)
    assert _label_text(tiny_tokenizer, encoded) == "喵～你好 🐾<|im_end|>\n喵～再见 🐾<|im_end|>\n"


def test_train_on_everything(tiny_tokenizer):
    encoded = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=512, train_on_responses_only=False)
    assert encoded.labels == encoded.input_ids


def test_truncation_is_reported_and_empty_results_dropped(tiny_tokenizer):
    full = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=512)
    cut = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=len(full.input_ids) - 3)
    assert cut.truncated and len(cut.input_ids) == len(full.input_ids) - 3
    assert encode_conversation(tiny_tokenizer, TURNS, cutoff_len=16) is None  # the answer starts after 16 tokens
