"""The record of a run, read and written by both processes: the folder's layout and atomic writes (`folder`), the
event protocol (`events`), checkpoint verification (`checkpoints`), the history folded from the events
(`history`), the events as text (`text`) and runs side by side (`compare`). Imports nothing above `studio.config`."""
