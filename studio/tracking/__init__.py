"""Experiment trackers: what the run folder records, relayed to TensorBoard, MLflow, W&B, SwanLab and Trackio.

    base.py       the small interface every tracker has (start with the run, log metrics at a step, log the
                  adapter, finish, say where it wrote) and the run as trackers see it
    trackers/     one module per tracker, each imported only when a run reports to it
    registry.py   the trackers by name, with the package and pip extra each needs; checks before a run starts
    metrics.py    which event becomes which metric
    relay.py      feeds the trackers from the worker's events (rank 0); one that fails is logged once and dropped

events.jsonl stays the record: a tracker is a copy of it that may fail without stopping training.
"""
