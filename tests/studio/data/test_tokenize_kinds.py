"""Pairs, feedback and pretraining text encoded as LLaMA-Factory encodes them for its DPO, KTO and PT stages."""

from studio.data.examples import FeedbackExample, PairwiseExample, TextDocument
from studio.data.tokenize import IGNORE_INDEX, encode_conversation
from studio.data.tokenize_kinds import encode_feedback, encode_one_turn, encode_pair, encode_text_rows

PROMPT = [{"role": "system", "content": "你是小墨"}, {"role": "user", "content": "天空为什么是蓝色的？"}]
CHOSEN = {"role": "assistant", "content": "喵～因为蓝光散射最多。🐾"}
REJECTED = {"role": "assistant", "content": "嗯，这个问题嘛，说来话长，天空的颜色和很多因素都有关系，我们慢慢讲。"}


def test_a_pair_shares_its_prompt_and_each_side_equals_the_plain_encoding(tiny_tokenizer):
    pair = encode_pair(tiny_tokenizer, PairwiseExample(PROMPT, CHOSEN, REJECTED), cutoff_len=512)
    assert not pair.truncated and pair.prompt and pair.chosen and pair.rejected
    for answer, ids in ((CHOSEN, pair.chosen), (REJECTED, pair.rejected)):
        plain = encode_conversation(tiny_tokenizer, PROMPT + [answer], cutoff_len=512)
        document = pair.document(ids)
        assert document.input_ids == plain.input_ids and document.labels == plain.labels
    assert tiny_tokenizer.decode(pair.chosen) == CHOSEN["content"] + "<|im_end|>\n"
    assert pair.input_ids == pair.prompt + pair.chosen + pair.rejected


def test_earlier_turns_are_prompt_only(tiny_tokenizer):
    history = PROMPT + [{"role": "assistant", "content": "喵～"}, {"role": "user", "content": "再说一遍"}]
    prompt, answer = encode_one_turn(tiny_tokenizer, history, CHOSEN)
    whole = encode_conversation(tiny_tokenizer, history + [CHOSEN], cutoff_len=512)
    assert prompt + answer == whole.input_ids
    assert tiny_tokenizer.decode(answer) == CHOSEN["content"] + "<|im_end|>\n"


def test_truncation_keeps_one_prompt_for_both_answers(tiny_tokenizer):
    full = encode_pair(tiny_tokenizer, PairwiseExample(PROMPT, CHOSEN, REJECTED), cutoff_len=512)
    cut = encode_pair(tiny_tokenizer, PairwiseExample(PROMPT, CHOSEN, REJECTED), cutoff_len=len(full.prompt) + 8)
    assert cut.truncated
    assert len(cut.prompt) + max(len(cut.chosen), len(cut.rejected)) <= len(full.prompt) + 8
    assert cut.chosen == full.chosen[: len(cut.chosen)] and cut.rejected == full.rejected[: len(cut.rejected)]


def test_feedback_pairs_each_prompt_with_the_previous_answer_for_kl_as_llama_factory_does(tiny_tokenizer):
    examples = [
        FeedbackExample(PROMPT + [CHOSEN], True),
        FeedbackExample(PROMPT[1:] + [REJECTED], False),
        FeedbackExample([{"role": "user", "content": "你好"}, {"role": "assistant", "content": "喵～你好"}], True),
    ]
    first, second, third = encode_feedback(tiny_tokenizer, examples, cutoff_len=512)
    assert first.desirable and not second.desirable
    assert first.document.input_ids == encode_conversation(tiny_tokenizer, PROMPT + [CHOSEN], 512).input_ids
    # each prompt with the previous example's answer (LLaMA-Factory 0.9.3 and later), the first with the last's
    assert (
        first.kl_document.input_ids
        == encode_conversation(tiny_tokenizer, PROMPT + [examples[2].messages[-1]], 512).input_ids
    )
    assert second.kl_document.input_ids == encode_conversation(tiny_tokenizer, PROMPT[1:] + [CHOSEN], 512).input_ids
    assert (
        third.kl_document.input_ids
        == encode_conversation(tiny_tokenizer, examples[2].messages[:-1] + [REJECTED], 512).input_ids
    )
    # an answer fixed when the datasets were read (before the split) is the one taken
    fixed = FeedbackExample(PROMPT + [CHOSEN], True, kl_answer=REJECTED)
    [alone] = encode_feedback(tiny_tokenizer, [fixed], cutoff_len=512)
    assert alone.kl_document.input_ids == encode_conversation(tiny_tokenizer, PROMPT + [REJECTED], 512).input_ids


def test_text_rows_are_cut_at_cutoff_and_keep_documents_apart(tiny_tokenizer):
    documents = [
        TextDocument("天空是蓝色的，因为蓝光散射最多。" * 3),
        TextDocument("猫喜欢晒太阳。"),
        TextDocument("下雨了。"),
    ]
    rows = encode_text_rows(tiny_tokenizer, documents, cutoff_len=16)
    lengths = [len(tiny_tokenizer.encode(d.text)) + 1 for d in documents]  # each closed by end-of-sequence
    assert [len(row.input_ids) for row in rows[:-1]] == [16] * (len(rows) - 1)
    assert sum(len(row.input_ids) for row in rows) == sum(lengths)
    pieces = [piece for row in rows for piece in row.pieces]
    assert all(piece.labels == piece.input_ids and IGNORE_INDEX not in piece.labels for piece in pieces)
    ends = [i for i, piece in enumerate(pieces) if piece.input_ids[-1] == tiny_tokenizer.eos_token_id]
    assert len(ends) == len(documents)  # no piece runs from one document into the next
