"""A pane's history with pictures read back into a conversation: placeholders before the next user turn."""

from app import chat_pictures


def test_pictures_become_placeholders_before_the_question_they_go_with():
    history = [
        chat_pictures.message("/cache/a.png"),
        {"role": "user", "content": "图中有什么？"},
        {"role": "assistant", "content": "一个圆。"},
        {"role": "user", "content": [{"file": {"path": "/cache/b.png"}, "type": "file"}]},
        {"role": "user", "content": [{"file": {"path": "/cache/c.png"}, "type": "file"}]},
        {"role": "user", "content": [{"text": "这两张呢？", "type": "text"}]},
    ]
    kept, pictures = chat_pictures.split(history)
    assert pictures == ["/cache/a.png", "/cache/b.png", "/cache/c.png"]
    assert [m["content"] for m in kept] == ["<image>图中有什么？", "一个圆。", "<image><image>这两张呢？"]


def test_a_history_without_pictures_is_unchanged():
    history = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]
    assert chat_pictures.split(history) == (history, [])


def test_a_new_picture_puts_its_placeholder_before_the_question_unless_written():
    turns = [{"role": "user", "content": "看图"}]
    assert chat_pictures.with_new_picture(turns)[-1]["content"] == "<image>看图"
    assert (
        chat_pictures.with_new_picture([{"role": "user", "content": "这张<image>呢"}])[-1]["content"] == "这张<image>呢"
    )
