"""Smoke check of the text game's CUDA path: the paper preset's loading code on a tiny model.

    PYTHONPATH=. python scripts/gpu_check_text.py              # on a machine with CUDA
    PYTHONPATH=. python scripts/gpu_check_text.py --device cpu --oracle-quantization none

Builds a tiny Llama-architecture model (and a tiny BERT encoder) in a temporary folder,
makes ``FPO/TextRM-v0`` with the ``llama-3.2-1b`` preset pointed at them (policy in 4-bit nf4
through bitsandbytes, oracle in 8-bit, bf16 compute), trains ``fpo-relaxed`` with LoRA and
paged 8-bit AdamW for three rounds, checks that the LoRA gradients are non-zero after
generation and that the adapter moves, and prints each round's time and peak GPU memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym

import agents
import fpo_envs  # noqa: F401
from fpo_envs.lm.generation import chat_prompt_ids, response_ids
from tests.text_models import build_tiny_models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--oracle-quantization", default="int8", choices=["none", "int8"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="paper", help="text-game profile (paper, loop, gold)")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda":
        assert torch.cuda.is_available(), "no CUDA device"
        print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
    import bitsandbytes
    import peft
    import transformers

    print("bitsandbytes", bitsandbytes.__version__, "| peft", peft.__version__, "| transformers", transformers.__version__)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_models(Path(tmp))
        overrides = {
            **tiny,
            # The preset's sequence-classifier RM, as a tiny one-label classifier.
            "rm_encoder": str(Path(tiny["rm_encoder"]).parent / "tiny-bert-rm"),
            "oracle_model": tiny["policy_model"],
            "device": args.device,
            "oracle_quantization": args.oracle_quantization,
        }
        if args.profile != "gold":  # the gold profile brings its own prompts, which carry constraints
            overrides |= {"prompts_train": "builtin", "prompts_eval": "builtin"}
        env = gym.make("FPO/TextRM-v0", preset="llama-3.2-1b", profile=args.profile, **overrides)
        game = env.unwrapped
        kinds = {type(m).__name__ for m in game.policy_base.modules() if "Linear" in type(m).__name__}
        print(
            "policy linear layers:",
            sorted(kinds),
            "| oracle:",
            sorted({type(m).__name__ for m in game.oracle.model.modules() if "Linear" in type(m).__name__}),
        )
        optimizer = "paged_adamw_8bit" if args.device == "cuda" else "adamw"
        agent = agents.make("fpo-relaxed", env, seed=0, optimizer=optimizer, grad_accum=1, n_candidates=8, lr=1e-3)
        lora = {n: p.detach().clone() for n, p in agent.model.named_parameters() if p.requires_grad}
        agent.learn(1)  # warm-up round (kernels, caches)
        for r in range(args.rounds):
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            history = agent.learn(1)
            if args.device == "cuda":
                torch.cuda.synchronize()
            print(
                f"round {r + 1}: {time.perf_counter() - start:.3f} s, U = {history['true_utility'][0]:.3f}, "
                f"r = {history['proxy_reward'][0]:.4f}, sft loss = {history['sft_loss'][0]:.3f}"
            )
        moved = sum(int(not torch.equal(p.detach(), lora[n])) for n, p in agent.model.named_parameters() if p.requires_grad)
        # A generate, then one SFT loss by hand (no optimizer step), to read the LoRA gradients.
        prompt = agent._obs["prompt"]
        agent.candidates(prompt)
        tok = game.policy_tokenizer
        prompt_ids = chat_prompt_ids(tok, prompt, game.preset.prompt_max_tokens)
        ids = torch.tensor([prompt_ids + response_ids(tok, "a short answer") + [tok.eos_token_id]], device=args.device)
        agent.optimizer.zero_grad(set_to_none=True)
        agent.model(input_ids=ids, labels=ids).loss.backward()
        grads = [p.grad.abs().sum().item() for p in agent.model.parameters() if p.requires_grad and p.grad is not None]
        print(
            f"LoRA tensors moved by training: {moved}/{len(lora)}; non-zero LoRA gradients after generate: "
            f"{sum(g > 0 for g in grads)}/{len(grads)}"
        )
        if args.device == "cuda":
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
        # LoRA's B matrices start at zero, so only after training are all gradients non-zero.
        assert moved > 0 and grads and all(g > 0 for g in grads), "LoRA did not train"
        print("CUDA path OK" if args.device == "cuda" else "path OK")


if __name__ == "__main__":
    main()
