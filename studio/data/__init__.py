"""Datasets: the registry, file readers, typed examples per kind, tokenisation, preview and registering new ones."""

from studio.data.registry import DataError

__all__ = ["DataError"]
