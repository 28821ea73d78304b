"""The training loop the worker runs: batching, schedule, checkpoints, early stopping."""
