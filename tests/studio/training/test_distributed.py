"""Data parallel on torchrun, on this CPU machine (gloo): real worker processes, no mocks.

Two processes with the same global batch train the same curve and the same adapter as one;
two "nodes" on 127.0.0.1 rendezvous and finish; a killed rank fails the whole run, named, and
the run resumes from its last checkpoint.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from studio.control.devices import plan_devices
from studio.control.launcher import other_node_commands
from studio.processes import children
from tests.support import free_port, wait_for

pytestmark = pytest.mark.distributed  # torchrun with several processes (gloo)

EXACT = {
    "quantization.method": "none",
    "training.precision": "fp32",
    "lora.dropout": "0",
    "training.max_steps": "4",
    "training.eval_steps": "2",
    "data.val_size": "0.2",
    "training.micro_batch_tokens": "64",  # several forward passes per step, not as many on every rank
}


def _events(service, run_id, kind):
    return [e for e in service.read_events(run_id)[0] if e.type == kind]


def _finished_on_two_processes(service, config) -> str:
    run = service.start(config)
    status = service.wait(run, timeout=300)
    assert status.state == "finished", service.folder(run).log_tail()
    assert status.processes == 2
    return run


def _adapter(service, run_id):
    return load_file(str(service.folder(run_id).adapter_dir / "adapter_model.safetensors"))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "fsdp+checkpointing"])
def test_two_processes_train_the_curve_and_adapter_of_one(service, tiny_config, strategy):
    """fsdp+checkpointing: layers recomputed in the backward pass gather their weights again (as on a GPU)."""
    both = {**EXACT, "training.gradient_checkpointing": "on" if "checkpointing" in strategy else "off"}
    one = service.start(tiny_config(**both, **{"training.devices": "1"}))
    assert service.wait(one, timeout=300).state == "finished"
    strategy = strategy.split("+")[0]
    two = service.start(tiny_config(**both, **{"training.devices": "2", "distributed.strategy": strategy}))
    status = service.wait(two, timeout=300)
    assert status.state == "finished", service.folder(two).log_tail()
    assert status.processes == 2 and status.device == "cpu×2"
    [started] = _events(service, two, "started")
    assert started.processes == 2
    losses = [[(s.step, s.loss, s.learning_rate) for s in _events(service, run, "step")] for run in (one, two)]
    assert [step for step, _, _ in losses[0]] == [step for step, _, _ in losses[1]] == [1, 2, 3, 4]
    for (_, a, lr_a), (_, b, lr_b) in zip(*losses):
        assert b == pytest.approx(a, rel=1e-4) and lr_b == lr_a
    evals = [[e.eval_loss for e in _events(service, run, "eval")] for run in (one, two)]
    assert evals[1] == pytest.approx(evals[0], rel=1e-4) and len(evals[0]) == 2
    single, parallel = _adapter(service, one), _adapter(service, two)
    assert single.keys() == parallel.keys()
    for name, weight in single.items():
        torch.testing.assert_close(parallel[name], weight, rtol=1e-4, atol=1e-5)
    assert not list(service.folder(two).path.glob("rank*"))  # one record: rank 0's
    if strategy == "fsdp":
        assert any(
            "FSDP: 2 decoder layers sharded over the 2 processes" in e.message for e in _events(service, two, "log")
        )


@pytest.mark.parametrize("stage", ["dpo", "kto"])
def test_fsdp_preference_stages_match_one_process(service, tiny_config, stage):
    """Pairs with shared prompts (DPO) and the KTO step's KL estimate make their own forward passes."""
    data = {"dpo": "[dpo_zh_demo]", "kto": "[kto_zh_demo]"}[stage]
    config = {**EXACT, "training.stage": stage, "data.datasets": data, "data.max_samples": "16"}
    runs = []
    for devices in ({"training.devices": "1"}, {"training.devices": "2", "distributed.strategy": "fsdp"}):
        runs.append(service.start(tiny_config(**config, **devices)))
        assert service.wait(runs[-1], timeout=300).state == "finished", service.folder(runs[-1]).log_tail()
    one, two = ([(s.step, s.loss) for s in _events(service, run, "step")] for run in runs)
    assert [step for step, _ in two] == [step for step, _ in one] == [1, 2, 3, 4]
    assert [loss for _, loss in two] == pytest.approx([loss for _, loss in one], rel=1e-4)
    margins = [[p.reward_margin for p in _events(service, run, "preference")] for run in runs]
    assert margins[0] and margins[1] == pytest.approx(margins[0], rel=1e-3, abs=1e-6)


def test_fsdp_checkpoints_resume_where_the_run_left_off(service, tiny_config):
    """A sharded run's checkpoint holds the whole adapter and optimizer; a resume slices them again."""
    fsdp = {**EXACT, "training.devices": "2", "distributed.strategy": "fsdp", "training.save_steps": "2"}
    whole = service.start(tiny_config(**fsdp))
    assert service.wait(whole, timeout=300).state == "finished", service.folder(whole).log_tail()
    checkpoint = service.folder(whole).checkpoints_dir / "checkpoint-2"
    assert (checkpoint / "optimizer.safetensors").is_file()
    resumed = service.start(tiny_config(**fsdp, **{"training.resume_from_checkpoint": str(checkpoint)}))
    assert service.wait(resumed, timeout=300).state == "finished", service.folder(resumed).log_tail()
    steps = [{s.step: s.loss for s in _events(service, run, "step")} for run in (whole, resumed)]
    assert sorted(steps[1]) == [3, 4]
    assert [steps[1][n] for n in (3, 4)] == pytest.approx([steps[0][n] for n in (3, 4)], rel=1e-4)
    for name, weight in _adapter(service, whole).items():
        torch.testing.assert_close(_adapter(service, resumed)[name], weight, rtol=1e-4, atol=1e-5)


def test_two_nodes_on_localhost_rendezvous_and_finish(service, tiny_config):
    config = tiny_config(
        **EXACT,
        **{"training.devices": "1", "distributed.nnodes": "2", "distributed.master_port": str(free_port())},
    )
    run_id = service.start(config)
    [command] = other_node_commands(config, plan_devices(config), str(service.folder(run_id).path))
    assert "--node-rank 1" in command and "--nnodes 2" in command
    assert command.split("\n", 1)[1].startswith(f"{sys.executable} -m torch.distributed.run")  # not a bare `python`
    node1 = subprocess.Popen(
        command.split("\n", 1)[1], shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    status = service.wait(run_id, timeout=300)
    output = node1.communicate(timeout=60)[0]
    assert status.state == "finished", service.folder(run_id).log_tail() + output
    assert node1.returncode == 0, output
    [started] = _events(service, run_id, "started")
    assert started.processes == 2


def _rank_pid(launcher_pid: int, rank: int) -> int | None:
    for pid in children(launcher_pid):
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


def test_a_killed_rank_fails_the_whole_run_by_name_and_resume_continues(service, tiny_config):
    config = tiny_config(
        **{
            **EXACT,
            "training.devices": "2",
            "training.max_steps": "100000",
            "training.eval_steps": "1000",
            "training.save_steps": "3",
        },
    )
    run_id = service.start(config)
    wait_for(lambda: any(s.step >= 4 for s in _events(service, run_id, "step")), timeout=240, what="step 4")
    launcher = service.status(run_id).pid
    rank1 = wait_for(lambda: _rank_pid(launcher, 1), timeout=10, what="rank 1's process")
    os.kill(rank1, signal.SIGKILL)
    status = service.wait(run_id, timeout=120)
    assert status.state == "failed"
    assert "Rank 1" in status.message and "SIGKILL" in status.message, status.message
    assert not children(launcher)  # no rank is left hanging
    assert service.folder(run_id).checkpoints()
    plan = service.resume(run_id)
    wait_for(
        lambda: any(s.step > plan.step for s in _events(service, run_id, "step")), timeout=240, what="a resumed step"
    )
    service.abort(run_id)  # the ranks agree to stop at the same step; rank 0 checkpoints
    status = service.wait(run_id, timeout=120)
    assert status.state == "aborted", status.message
    assert [e.type for e in service.read_events(run_id)[0] if e.type in ("failed", "aborted")][-2:] == [
        "failed",
        "aborted",
    ]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_reward_model_on_two_processes_matches_one(service, tiny_config, strategy):
    """The value head is whole on every rank (never sharded): its gradients are summed with the whole weights'."""
    config = {**EXACT, "training.stage": "rm", "data.datasets": "[dpo_zh_demo]", "data.max_samples": "16"}
    runs = []
    for devices in ({"training.devices": "1"}, {"training.devices": "2", "distributed.strategy": strategy}):
        runs.append(service.start(tiny_config(**config, **devices)))
        assert service.wait(runs[-1], timeout=300).state == "finished", service.folder(runs[-1]).log_tail()
    one, two = ([s.loss for s in _events(service, run, "step")] for run in runs)
    assert len(one) == 4 and two == pytest.approx(one, rel=1e-4)
    heads = [load_file(str(service.folder(run).adapter_dir / "value_head.safetensors")) for run in runs]
    for name, weight in heads[0].items():
        torch.testing.assert_close(heads[1][name], weight, rtol=1e-4, atol=1e-5)


def test_grpo_on_two_processes_each_answering_its_share(service, tiny_config):
    config = {
        **EXACT,
        "training.stage": "grpo",
        "data.datasets": "[arithmetic_zh_demo]",
        "data.max_samples": "16",
        "training.batch_size": "4",
        "training.gradient_accumulation_steps": "1",
        "grpo.num_generations": "2",
        "generation.max_new_tokens": "6",
        "training.devices": "2",
    }
    run = _finished_on_two_processes(service, tiny_config(**config))
    train = [e for e in _events(service, run, "rewards") if e.split == "train"]
    assert len(train) == 4 and all(0 <= e.flat_groups <= 1 for e in train)
    steps = _events(service, run, "step")
    assert all(s.tokens_per_second > 0 for s in steps)  # both processes' answers counted


def test_ppo_on_two_processes_shares_its_kl_controller_and_score_statistics(service, tiny_config):
    """Each process answers its share; the KL controller and the score statistics are summed over both (a
    process with nothing to answer still joins), so one checkpointed state serves every rank."""
    reward = service.start(
        tiny_config(**EXACT, **{"training.stage": "rm", "data.datasets": "[dpo_zh_demo]", "data.max_samples": "8"})
    )
    assert service.wait(reward, timeout=300).state == "finished", service.folder(reward).log_tail()
    config = {
        **EXACT,
        "training.stage": "ppo",
        "ppo.reward_model": reward,
        "data.datasets": "[alpaca_zh_demo]",
        "data.max_samples": "12",
        "training.batch_size": "3",  # 3 prompts over 2 processes: shares of 2 and 1
        "training.gradient_accumulation_steps": "1",
        "training.save_steps": "2",
        "generation.max_new_tokens": "6",
        "training.devices": "2",
    }
    run = _finished_on_two_processes(service, tiny_config(**config))
    train = [e for e in _events(service, run, "rewards") if e.split == "train"]
    assert train and all(e.kl is not None for e in train)
    kept = json.loads((service.folder(run).latest_checkpoint() / "objective.json").read_text())
    assert kept["score_moments"][2] > 0 and kept["kl_coef"] > 0
