"""QLoRA Studio web UI (Gradio). Imports `studio`; `studio` never imports this package."""
