"""The served page's own settings of Gradio that no browser test would notice going away."""

import gradio as gr

from app.server import PROGRESS_IDLE_S, QUEUE_IDLE_S, calm_queue


def test_an_idle_queue_polls_at_the_studios_pace():
    """Private attributes of Gradio's queue: a Gradio upgrade that renames them fails here, not silently."""
    with gr.Blocks() as demo:
        gr.Markdown("-")
    demo.queue()
    queue = demo._queue
    assert hasattr(queue, "sleep_when_free") and hasattr(queue, "progress_update_sleep_when_free")
    calm_queue(demo)
    assert queue.sleep_when_free == QUEUE_IDLE_S and queue.progress_update_sleep_when_free == PROGRESS_IDLE_S
