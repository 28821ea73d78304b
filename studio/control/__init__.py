"""The supervisor — the web server's and the CLI's side of a run: the service (start, queue, reap, resume, abort),
the launcher, devices and their locks, the checks made before a run starts, and following a run from a terminal.
It reaches the worker only through `python -m studio.worker RUN_DIR` and the run folder, so it never imports
worker, training or model-loading code (tests/test_layering.py), and starting it loads no torch."""
