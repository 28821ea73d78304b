"""QLoRA Studio backend: config, data, training service, worker, monitoring."""

__version__ = "0.1.0"
