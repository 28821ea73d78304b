import pytest
from pydantic import ValidationError

from studio.runs.events import Aborted, Eval, Failed, Gpu, GpuReading, Step, dump_event, parse_event


def test_events_round_trip_through_json_lines():
    events = [
        Step(
            step=1,
            total_steps=10,
            epoch=0.1,
            loss=2.5,
            learning_rate=1e-4,
            grad_norm=None,
            tokens_per_second=100.0,
            elapsed_s=1.0,
            eta_s=9.0,
            rss_mib=300.0,
        ),
        Eval(step=5, epoch=0.5, eval_loss=2.0, best_eval_loss=2.0, patience_left=3),
        Gpu(gpus=[GpuReading(index=0, name="H100", used_mib=1000, total_mib=80000, utilization_pct=None)]),
        Failed(error="boom"),
        Aborted(step=3, checkpoint=None),
    ]
    for event in events:
        line = dump_event(event)
        assert line.endswith("\n") and "\n" not in line[:-1]
        assert parse_event(line) == event


def test_unknown_type_and_missing_fields_are_rejected():
    with pytest.raises(ValidationError):
        parse_event('{"type": "bogus", "time": 1}')
    with pytest.raises(ValidationError):
        parse_event('{"type": "step", "time": 1, "step": 1}')
