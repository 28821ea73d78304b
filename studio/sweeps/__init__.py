"""Hyper-parameter sweeps: one queued run per combination of a few fields' values, ranked in Compare.

    spec = SweepSpec.from_sets(["training.learning_rate=1e-4,2e-4", "lora.rank=8,16"])   # what varies (spec.py)
    plan = plan_sweep(config, spec)               # one validated, named RunConfig per run (plan.py)
    sweep_id = start_sweep(service, plan)         # queued through the training service (launch.py)
    ranking = rank_sweep(info, comparison, "best_eval_loss")                                 # (ranking.py)

A sweep is recorded in its runs' folders (record.py), so it is found again after a restart.
"""
