"""Builders of tiny random models and tokenizers, for tests and benchmarks only: the product never imports them
(tests/test_layering.py)."""
