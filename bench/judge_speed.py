"""The judge's prompts in batches (the studio's way) against one prompt at a time, same judge, same samples, one run.

    python bench/judge_speed.py                       # the embedded model judges its own answers against the references
    python bench/judge_speed.py --samples 17 --batch 32

The samples are the demo data's validation prompts; "base" answers are the references and "adapter" answers the
embedded model's own greedy answers, so the judge has real text to compare. Both sides judge every sample in
both orders with the same greedy settings (evaluation.judge_max_new_tokens), so the verdicts must be the same;
the script says how many are. One at a time is what a judge loop over an API-less model does; ours is
studio.evaluation.judge with predict's length-grouped batches (what Evaluate runs for judge: base or model).
Prints seconds per side and the ratio. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studio.chat import ChatEngine  # noqa: E402
from studio.config import RunConfig  # noqa: E402
from studio.data.prepare import load_conversations, split_conversations  # noqa: E402
from studio.evaluation.judge import judge  # noqa: E402
from studio.evaluation.predict import predict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded:SmolLM2-135M-Instruct")
    parser.add_argument("--samples", type=int, default=12, help="prompts from the demo data's validation split")
    parser.add_argument("--batch", type=int, default=32, help="ours: judge prompts per batch at most")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    config = RunConfig().with_overrides({"model.name_or_path": args.model, "quantization.method": "none"})
    engine = ChatEngine()
    engine.load(config.model, config.quantization, precision=args.precision)
    conversations = _conversations(config, args.samples)
    questions = [c[-2]["content"] for c in conversations]
    references = [c[-1]["content"] for c in conversations]
    generation = config.generation.model_copy(update={"temperature": 0.0, "max_new_tokens": 48})
    answers = predict(engine, [c[:-1] for c in conversations], [None], generation, args.batch, lambda d, t: None)[None]
    verdict = generation.model_copy(update={"max_new_tokens": config.evaluation.judge_max_new_tokens})

    def asker(batch: int):
        def ask(prompts: list[str]) -> list[str]:
            chats = [[{"role": "user", "content": p}] for p in prompts]
            return predict(engine, chats, [None], verdict, batch, lambda d, t: None)[None]

        return ask

    prompt = config.evaluation.judge_prompt
    sides = {}
    for name, batch in (("one at a time", 1), ("ours (batched)", args.batch)):
        started = time.perf_counter()
        report = judge(asker(batch), questions, references, references, answers, prompt)
        sides[name] = (time.perf_counter() - started, [v.votes for v in report.verdicts])
    (one_s, one_votes), (ours_s, ours_votes) = sides.values()
    same = sum(a == b for a, b in zip(one_votes, ours_votes))
    dtype = str(engine.plan.weight_dtype).removeprefix("torch.")
    print(f"{len(questions)} samples x 2 orders = {2 * len(questions)} judge prompts, greedy, {dtype}")
    print(f"  one at a time : {one_s:7.1f} s")
    print(f"  ours (batched): {ours_s:7.1f} s  -> {one_s / ours_s:.2f}x")
    print(f"  same verdicts in both orders: {same} of {len(questions)}")


def _conversations(config: RunConfig, count: int) -> list[list[dict]]:
    split = split_conversations(load_conversations(config.data), config.data.val_size, 42)
    return (split.val + split.train)[:count]


if __name__ == "__main__":
    main()
