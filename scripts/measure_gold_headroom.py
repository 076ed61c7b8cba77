"""How much room the constraint judge leaves the base policy: mean, best-of-4 and best-of-8 scores.

Samples ``--samples`` answers of the ``smollm2`` preset's policy (SmolLM2-135M-Instruct, fp32
on the CPU) to ``--prompts`` training prompts of ``fpo_envs/lm/data/gold_prompts.jsonl``
(evenly spaced through the file, so every kind of prompt is in), and prints the judge's mean
score of a sample and of the best of the first k samples per prompt (by the judge). The rows:

- ``judge``: :class:`fpo_envs.models.judge.ConstraintJudge` (equal weights);
- ``guarded``: the judge times the fluency guard (:func:`fpo_envs.models.judge.guarded`) on
  the base LM's mean NLL per response token, with the preset's ``guard_floor`` and
  ``guard_width`` (the ``gold`` profile's ``U / utility_scale``), best-of-k by itself;
- one row per constraint family: that checker's value over the prompts carrying it, best-of-k
  by that checker alone (the family's own headroom).

Usage: ``python scripts/measure_gold_headroom.py [--prompts 12] [--samples 8] [--max-new-tokens 32]``
(about a minute on two CPU threads).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def best_of(scores: np.ndarray, k: int) -> float:
    """Mean over prompts (rows) of the best of the first ``k`` samples (columns)."""
    return float(scores[:, :k].max(axis=1).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=12, help="training prompts, evenly spaced (default 12)")
    parser.add_argument("--samples", type=int, default=8, help="samples per prompt (default 8)")
    parser.add_argument("--best-of", default="4,8", help="the k of best-of-k, comma-separated (default 4,8)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="answer length in tokens (default 32)")
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--show", action="store_true", help="print every sample with its score")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.best_of.split(",")]
    if any(k < 1 or k > args.samples for k in ks):
        raise SystemExit(f"--best-of values must lie in 1..--samples ({args.samples}), got {args.best_of!r}")

    import torch

    from fpo_envs.lm.generation import generate
    from fpo_envs.lm.loading import load_causal_lm, load_tokenizer
    from fpo_envs.lm.presets import make_preset
    from fpo_envs.lm.scoring import sequence_nll
    from fpo_envs.models.judge import CONSTRAINTS, ConstraintJudge, guarded, load_constrained_prompts

    torch.set_num_threads(args.threads)
    preset = make_preset("smollm2")
    tokenizer = load_tokenizer(preset.policy_model)
    model = load_causal_lm(preset.policy_model, preset.policy_quantization, preset.dtype, preset.device)
    rows = load_constrained_prompts(split="train")
    picked = [rows[i] for i in np.linspace(0, len(rows) - 1, args.prompts).round().astype(int)]
    generator = torch.Generator().manual_seed(args.seed)
    judge = ConstraintJudge()

    start = time.perf_counter()
    answers = []
    for prompt, _ in picked:
        texts, _ = generate(
            model,
            tokenizer,
            [prompt] * args.samples,
            generator,
            do_sample=True,
            max_new_tokens=args.max_new_tokens,
            min_new_tokens=preset.min_new_tokens,
            top_p=args.top_p,
            temperature=args.temperature,
            prompt_max_tokens=preset.prompt_max_tokens,
        )
        answers.append(texts)
    seconds = time.perf_counter() - start

    scores = np.array([[judge.score(y, c) for y in ys] for (_, c), ys in zip(picked, answers)])  # (prompts, samples)
    nll = np.stack(
        [
            sequence_nll(model, tokenizer, [x] * len(ys), ys, "response", preset.prompt_max_tokens)
            for (x, _), ys in zip(picked, answers)
        ]
    )
    safe = np.vectorize(lambda s, n: guarded(s, n, preset.guard_floor, preset.guard_width))(scores, nll)

    table = [("judge", len(picked), scores), ("guarded", len(picked), safe)]
    for family in CONSTRAINTS:
        carrying = [(c, ys) for (_, c), ys in zip(picked, answers) if any(n == family for n, _ in c)]
        if carrying:
            values = np.array([[np.mean([CONSTRAINTS[n](y, v) for n, v in c if n == family]) for y in ys] for c, ys in carrying])
            table.append((family, len(carrying), values))

    print(
        f"smollm2 policy, {len(picked)} train prompts x {args.samples} samples, {args.max_new_tokens} new tokens, "
        f"top-p {args.top_p}, temperature {args.temperature}, seed {args.seed} (sampling took {seconds:.0f} s)"
    )
    head = f"{'score':<12} {'prompts':>7} {'sample':>7}" + "".join(f" {f'best-of-{k}':>10}" for k in ks)
    print(head + "\n" + "-" * len(head))
    for name, n, values in table:
        print(f"{name:<12} {n:>7} {values.mean():>7.3f}" + "".join(f" {best_of(values, k):>10.3f}" for k in ks))
    print(f"mean NLL per response token {nll.mean():.2f} (guard floor {preset.guard_floor}, width {preset.guard_width})")
    if args.show:
        for (prompt, constraints), ys, row, nrow in zip(picked, answers, scores, nll):
            print(f"\n{prompt}\n  {constraints}")
            for y, s, n in zip(ys, row, nrow):
                print(f"  {s:.2f} nll {n:.2f}  {y!r}")


if __name__ == "__main__":
    main()
