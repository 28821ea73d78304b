"""The dpo stage's reference-free losses (orpo, simpo) against LLaMA-Factory's and TRL's, on fixed logits.

    bash bench/setup_llamafactory.sh                          # once: .bench-venvs/llamafactory (trl 0.24 included)
    .venv/bin/python bench/preference_loss_parity.py          # prints each side per pair and the largest differences
    .venv/bin/python bench/preference_loss_parity.py --write-fixture FILE   # the test's numbers:
                                            # FILE = tests/studio/training/fixtures/preference_losses.json

A batch of pairs (prompt masked with -100, answers of different lengths, some answers the logits make
near-certain, where the per-token log-probability is close to 0) gets fixed logits. In the LF venv:
- LLaMA-Factory: CustomDPOTrainer.get_batch_loss_metrics, its whole path (get_batch_logps, the per-token
  average for orpo/simpo, odds_ratio_loss / simpo_loss, pref_ftx, the rewards it logs), with a stand-in
  model whose forward returns the fixed logits;
- TRL: ORPOTrainer.get_batch_logps(average_log_prob=True) + odds_ratio_loss, and CPOTrainer's with
  loss_type simpo (cpo_alpha 0: SimPO without CPO's NLL term, no label smoothing). TRL has no pref_ftx,
  so its side is compared with the studio at ftx 0; its ORPO NLL term is the chosen tokens' mean over the
  whole batch (tokens weighted, not pairs), so per pair the NLL is taken as LLaMA-Factory and the paper do.
The studio (this venv): per-answer sums of the same logits through its label cross-entropy (fused and
plain), then studio.training.preference.pair_losses, dpo_tally and tally_metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LF_PYTHON = ROOT / ".bench-venvs" / "llamafactory" / "bin" / "python"
VOCAB, WIDTH = 40, 16
# (prompt tokens, chosen tokens, rejected tokens, boost): a boost raises the logit of each answer token
# (chosen, rejected) so the model is all but certain of it
ROWS = [(3, 5, 9, (0, 0)), (6, 9, 4, (0, 0)), (2, 13, 7, (9, 0)), (4, 3, 11, (0, 12)), (5, 8, 8, (14, 14))]
CASES = [
    {"loss": "orpo", "beta": 0.1, "ftx": 0.0},  # LLaMA-Factory's default beta
    {"loss": "orpo", "beta": 0.25, "ftx": 0.5},
    {"loss": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "ftx": 0.0},  # the SimPO paper's range
    {"loss": "simpo", "beta": 0.1, "simpo_gamma": 0.5, "ftx": 1.0},  # LLaMA-Factory's defaults, with ftx
    {"loss": "simpo", "beta": 2.5, "simpo_gamma": 1.4, "ftx": 0.0},
]


def batch() -> dict:
    """(2n, WIDTH) token ids, labels (prompt and padding -100) and logits: chosen rows, then rejected rows."""
    import torch

    generator = torch.Generator().manual_seed(0)
    ids, labels = [], []
    logits = 3 * torch.randn(2 * len(ROWS), WIDTH, VOCAB, generator=generator)
    for side in (0, 1):
        for row, (prompt, *answers, boosts) in enumerate(ROWS):
            index = side * len(ROWS) + row
            tokens = torch.randint(1, VOCAB, (prompt + answers[side],), generator=generator).tolist()
            ids.append(tokens + [0] * (WIDTH - len(tokens)))
            labels.append([-100] * prompt + tokens[prompt:] + [-100] * (WIDTH - len(tokens)))
            for position in range(prompt, len(tokens)):  # logits at position - 1 predict the token at position
                logits[index, position - 1, tokens[position]] += boosts[side]
    return {"input_ids": ids, "labels": labels, "logits": logits.tolist()}


# -- their side (the LF venv) -------------------------------------------------------------------------------


def their_side(in_file: str, out_file: str) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from llamafactory_side import stand_in_for_media_libraries

    stand_in_for_media_libraries()
    import torch

    data = json.loads(Path(in_file).read_text(encoding="utf-8"))
    logits, labels = torch.tensor(data["logits"]), torch.tensor(data["labels"])
    results = []
    for case in CASES:
        lf = llamafactory_losses(case, logits, labels, torch.tensor(data["input_ids"]))
        results.append({"case": case, "llamafactory": lf, "trl": trl_losses(case, logits, labels)})
    Path(out_file).write_text(json.dumps(results), encoding="utf-8")


def llamafactory_losses(case: dict, logits, labels, input_ids) -> dict:
    import types

    import torch
    from llamafactory.train.dpo.trainer import CustomDPOTrainer
    from llamafactory.train.trainer_utils import get_batch_logps

    trainer = object.__new__(CustomDPOTrainer)  # its loss methods only, not a training setup
    trainer.finetuning_args = types.SimpleNamespace(use_ref_model=False)
    trainer.accelerator = types.SimpleNamespace(device=torch.device("cpu"))
    trainer.loss_type, trainer.beta, trainer.ftx_gamma = case["loss"], case["beta"], case["ftx"]
    trainer.simpo_gamma, trainer.ld_alpha, trainer.bco_gemma = case.get("simpo_gamma", 0.5), None, 0.0

    def model(**inputs):  # the stand-in model: the fixed logits
        return types.SimpleNamespace(logits=logits.clone())

    seen = {}
    original = trainer.compute_preference_loss  # LF's own, wrapped to read its per-pair losses and rewards back

    def preference_loss(*args):  # LF then adds pref_ftx's term to these losses in place: they end as the totals
        seen["losses"], seen["chosen"], seen["rejected"] = original(*args)
        return seen["losses"], seen["chosen"], seen["rejected"]

    trainer.compute_preference_loss = preference_loss
    loss, metrics = trainer.get_batch_loss_metrics(model, {"input_ids": input_ids, "labels": labels.clone()})
    sums, counts = get_batch_logps(logits, labels)
    return {
        "sums": sums.tolist(),
        "counts": counts.tolist(),
        "losses": seen["losses"].tolist(),
        "loss": loss.item(),
        "rewards_chosen": seen["chosen"].tolist(),
        "rewards_rejected": seen["rejected"].tolist(),
        "metrics": {key: metrics[f"rewards/{key}"] for key in ("chosen", "rejected", "accuracies", "margins")},
    }


def trl_losses(case: dict, logits, labels) -> dict:
    import types

    import torch
    from trl.trainer.cpo_trainer import CPOTrainer
    from trl.trainer.orpo_trainer import ORPOTrainer

    accelerator = types.SimpleNamespace(device=torch.device("cpu"))
    n = len(logits) // 2
    if case["loss"] == "orpo":
        trainer = object.__new__(ORPOTrainer)
        trainer.beta, trainer.accelerator = case["beta"], accelerator
        averages = ORPOTrainer.get_batch_logps(logits, labels, average_log_prob=True)
        ratio_losses, chosen, rejected, _, _ = trainer.odds_ratio_loss(averages[:n], averages[n:])
        losses = -averages[:n] - ratio_losses  # TRL's loss is nll - mean(beta * log sigmoid(log odds))
    else:
        trainer = object.__new__(CPOTrainer)
        trainer.loss_type, trainer.beta, trainer.simpo_gamma = "simpo", case["beta"], case["simpo_gamma"]
        trainer.alpha, trainer.label_smoothing, trainer.accelerator = 0.0, 0.0, accelerator
        averages = CPOTrainer.get_batch_logps(logits, labels, average_log_prob=True)
        losses, chosen, rejected = trainer.cpo_loss(averages[:n], averages[n:])
    return {"losses": losses.tolist(), "rewards_chosen": chosen.tolist(), "rewards_rejected": rejected.tolist()}


# -- the studio's side (this venv) -------------------------------------------------------------------------


def studio_sums(data: dict, fused: bool):
    """Per-answer summed log-probabilities and token counts through the studio's label cross-entropy: the logits
    are the hidden states, the output layer the identity."""
    import torch

    from studio.training.label_loss import label_losses

    logits, labels = torch.tensor(data["logits"]), torch.tensor(data["labels"])
    targets = labels[:, 1:]
    rows = targets != -100
    head = torch.nn.Linear(VOCAB, VOCAB, bias=False)
    head.weight.data = torch.eye(VOCAB)
    losses = label_losses(logits[:, :-1][rows], head, targets[rows], chunk=VOCAB * 8 if fused else None)
    counts = rows.sum(1)
    owner = torch.repeat_interleave(torch.arange(len(counts)), counts)
    sums = -torch.zeros(len(counts)).index_add_(0, owner, losses)
    n = len(counts) // 2
    return torch.stack([sums[:n], sums[n:]], 1), torch.stack([counts[:n], counts[n:]], 1).float()


def studio_losses(case: dict, logps, counts) -> dict:
    from studio.config import PreferenceConfig
    from studio.training.preference import dpo_tally, pair_losses, tally_metrics

    config = PreferenceConfig(**case)
    losses, chosen, rejected = pair_losses(logps, counts, None, config)
    metrics = tally_metrics(dpo_tally(losses, chosen, rejected))
    return {
        "losses": losses.tolist(),
        "rewards_chosen": chosen.tolist(),
        "rewards_rejected": rejected.tolist(),
        "loss": metrics["loss"],
        "metrics": {
            "chosen": metrics["rewards_chosen"],
            "rejected": metrics["rewards_rejected"],
            "accuracies": metrics["reward_accuracy"],
            "margins": metrics["reward_margin"],
        },
    }


def largest(ours: dict, theirs: dict, keys: tuple[str, ...]) -> float:
    def values(side: dict, key: str) -> list[float]:
        value = side[key]
        return list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else [value]

    return max(abs(a - b) for key in keys for a, b in zip(values(ours, key), values(theirs, key), strict=True))


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-fixture")
    args = parser.parse_args()
    data = batch()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "in.json").write_text(json.dumps(data), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [str(LF_PYTHON), __file__, "--their-side", f"{tmp}/in.json", f"{tmp}/out.json"], check=True, env=env
        )
        results = json.loads(Path(tmp, "out.json").read_text(encoding="utf-8"))
    logps, counts = studio_sums(data, fused=True)
    plain, _ = studio_sums(data, fused=False)
    lf_sums = torch.tensor(results[0]["llamafactory"]["sums"])
    n = len(ROWS)
    print(f"{n} pairs; answer log-probability sums, largest difference to LLaMA-Factory's get_batch_logps:")
    fused_difference, plain_difference = ((sums.T.flatten() - lf_sums).abs().max() for sums in (logps, plain))
    print(f"  fused {fused_difference:.2e}, plain {plain_difference:.2e}")
    print(f"  per-token averages (chosen, rejected): {(logps / counts).tolist()}")
    worst = 0.0
    for result in results:
        case = result["case"]
        ours = studio_losses(case, logps, counts)
        ours_no_ftx = studio_losses({**case, "ftx": 0.0}, logps, counts)
        lf, trl = result["llamafactory"], result["trl"]
        to_lf = largest(ours, lf, ("losses", "rewards_chosen", "rewards_rejected", "loss", "metrics"))
        to_trl = largest(ours_no_ftx, trl, ("losses", "rewards_chosen", "rewards_rejected"))
        worst = max(worst, to_lf, to_trl)
        print(f"\n{case}")
        print(f"  studio losses        {[round(v, 6) for v in ours['losses']]}")
        print(f"  LLaMA-Factory losses {[round(v, 6) for v in lf['losses']]}   (mean {lf['loss']:.6f})")
        print(f"  TRL losses (ftx 0)   {[round(v, 6) for v in trl['losses']]}")
        print(f"  studio rewards/margin/accuracy {ours['metrics']}")
        print(f"  LLaMA-Factory logs             {lf['metrics']}")
        print(f"  largest difference: to LLaMA-Factory {to_lf:.2e}, to TRL {to_trl:.2e}")
    print(f"\nlargest difference over all cases: {worst:.2e}")
    if args.write_fixture:
        fixture = {
            "note": "written by bench/preference_loss_parity.py from LLaMA-Factory 0.9.5 and TRL 0.24 on fixed logits",
            "chosen_sums": lf_sums[:n].tolist(),
            "rejected_sums": lf_sums[n:].tolist(),
            "chosen_counts": results[0]["llamafactory"]["counts"][:n],
            "rejected_counts": results[0]["llamafactory"]["counts"][n:],
            "cases": [{k: r[k] for k in ("case", "llamafactory", "trl")} for r in results],
        }
        for case in fixture["cases"]:
            del case["llamafactory"]["sums"], case["llamafactory"]["counts"]
        Path(args.write_fixture).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write_fixture).write_text(json.dumps(fixture, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--their-side"]:
        their_side(sys.argv[2], sys.argv[3])
    else:
        main()
