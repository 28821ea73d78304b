"""Datasets: the registry, file readers, format conversion, tokenisation and preview."""

from studio.data.registry import DataError

__all__ = ["DataError"]
