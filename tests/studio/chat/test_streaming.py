"""BatchStreamer without a model: the reader gets the latest tokens at its own pace, and the whole answer last."""

import threading

import torch

from studio.chat.streaming import BatchStreamer, StopOnEvent


def _streamer(tokenizer, rows: int = 1) -> BatchStreamer:
    streamer = BatchStreamer(tokenizer, rows)
    streamer.put(torch.zeros(rows, 3, dtype=torch.long))  # generate hands over the prompt first
    return streamer


def _put(streamer: BatchStreamer, *row_tokens: int) -> None:
    streamer.put(torch.tensor(row_tokens))


def test_a_slow_reader_skips_to_the_latest_tokens_and_the_end_cuts_its_wait_short(tiny_tokenizer):
    ids = tiny_tokenizer.encode("你是谁？我是一个助手。")
    streamer = _streamer(tiny_tokenizer)
    for token in ids[:4]:
        _put(streamer, token)
    updates = streamer.updates(every_s=3600)
    assert next(updates)[0].tokens == 4  # every token so far in one update, not one update per token
    for token in ids[4:]:
        _put(streamer, token)
    streamer.end()
    final = []
    reader = threading.Thread(target=lambda: final.extend(updates))  # would sit out the hour without the end
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive() and len(final) == 1
    assert final[0][0].text == tiny_tokenizer.decode(ids) and final[0][0].tokens == len(ids) and final[0][0].done


def test_characters_split_across_tokens_are_held_back_until_whole(tiny_tokenizer):
    ids = tiny_tokenizer.encode("你是谁？🙂")
    streamer, texts = _streamer(tiny_tokenizer), []
    updates = streamer.updates(every_s=0)
    for token in ids:
        _put(streamer, token)
        texts.append(next(updates)[0].text)
    assert all("\ufffd" not in text for text in texts) and texts[-1] == "你是谁？🙂"


def test_rows_end_on_their_own_stop_token_and_keep_their_own_speed(tiny_tokenizer):
    eos, (a, b) = tiny_tokenizer.eos_token_id, tiny_tokenizer.encode("你好")[:2]
    streamer = _streamer(tiny_tokenizer, rows=2)
    _put(streamer, a, a)
    _put(streamer, eos, b)
    _put(streamer, a, b)  # what generate pads a finished row with is ignored
    streamer.end()
    *_, (first, second) = streamer.updates()
    assert (first.tokens, second.tokens) == (1, 3) and first.seconds <= second.seconds


def test_a_row_ends_at_an_end_token_the_engine_names_beyond_the_tokenizer_s(tiny_tokenizer):
    """A chat format's end token that is not the tokenizer's (Gemma's <end_of_turn>, Llama 3's <|eot_id|>) ends its
    row too, once the engine has said so: it is neither counted nor shown."""
    (a, b), end = tiny_tokenizer.encode("你好")[:2], tiny_tokenizer.convert_tokens_to_ids("<|im_start|>")
    streamer = _streamer(tiny_tokenizer, rows=2)
    streamer.stop_at({end})
    _put(streamer, a, a)
    _put(streamer, end, b)
    streamer.end()
    *_, (first, second) = streamer.updates()
    assert (first.tokens, second.tokens) == (1, 2) and first.text == tiny_tokenizer.decode([a])


def test_stop_on_any_event():
    stop, gone = threading.Event(), threading.Event()
    criterion = StopOnEvent(stop, gone)
    ids = torch.zeros(2, 4, dtype=torch.long)
    assert not criterion(ids, None).any()
    gone.set()
    assert criterion(ids, None).all()
