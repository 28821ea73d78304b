"""Loading base models and tokenizers, the embedded default, LoRA attachment."""
