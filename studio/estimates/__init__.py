"""Will it fit, and how long: a run's memory against what its devices have free, and its duration, before Start.

free_memory.py   what each device of a run has free now (GPU: torch or nvidia-smi; CPU: RAM within cgroup limits)
data_tokens.py   the training split's token count and lengths, tokenised as the worker does (sampled when large)
fit.py           FitReport: the memory estimate per device against its free memory, and what would make it fit
duration.py      TimeEstimate: tokens to train over a measured rate (the last comparable run, or a measurement)
measure.py       "Measure speed": a few real steps in a scratch folder, killed at the time limit
auto_batch.py    training.auto_batch_size: the largest micro-batch that fits, picked by the worker
"""
