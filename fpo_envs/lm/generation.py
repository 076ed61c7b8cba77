"""Chat formatting and sampling for the text game's LMs: the token ids of a chat-formatted
prompt (:func:`chat_prompt_ids`) and of a response (:func:`response_ids`), left-padded
batches (:func:`left_pad`), batched generation (:func:`generate`), and the two contexts it
runs in: randomness from the caller's seeded generator (:func:`seeded_global_rng`) and a
model's PEFT adapters switched off (:func:`adapters_disabled`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import numbers

from fpo_envs.lm.loading import require


@contextlib.contextmanager
def adapters_disabled(model):
    """Run ``model`` as its frozen base: turn off every PEFT adapter layer injected into it."""
    if importlib.util.find_spec("peft") is None:
        yield
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    states = [m.disable_adapters for m in layers]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m, disabled in zip(layers, states):
            m.enable_adapters(not disabled)


@contextlib.contextmanager
def seeded_global_rng(generator, device):
    """Run code that draws from torch's global RNG (transformers' sampling, dropout, peft's
    init) on a seed drawn from ``generator``, restoring the global state afterwards: the
    randomness comes from the caller's seeded generator and leaks nowhere."""
    torch = require("torch", "torch")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        yield


# Chat formatting, generation, likelihood -----------------------------------------------------
def chat_prompt_ids(tokenizer, prompt: str, max_tokens: int | None = None) -> list[int]:
    """Token ids of the chat template for a user ``prompt``, ending where the assistant speaks
    (a tokenizer without a chat template: the prompt and a newline, with its special tokens).

    Args:
        tokenizer: a transformers tokenizer.
        prompt: the user's message.
        max_tokens: keep only the first this many ids (the preset's ``prompt_max_tokens``:
            the paper preset's 128, as its script truncates the formatted input); ``None``
            keeps them all. Every caller in the text game passes its env's
            ``preset.prompt_max_tokens``, so the policy and the oracle read the same input.
    """
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral) or max_tokens < 1
    ):
        raise ValueError(f"max_tokens must be a whole number of at least 1, or None for no cut; got {max_tokens!r}")
    if tokenizer.chat_template:
        out = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        ids = list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)
    else:
        ids = tokenizer(prompt + "\n", add_special_tokens=True)["input_ids"]
    return ids if max_tokens is None else ids[:max_tokens]


def response_ids(tokenizer, response: str) -> list[int]:
    """Token ids of a response as the model writes it after the prompt: no special tokens
    (the end-of-turn token is the caller's to add); none for an empty response."""
    return tokenizer(response, add_special_tokens=False)["input_ids"] if response else []


def left_pad(rows: list[list[int]], pad_id: int, device):
    """``(ids, attention_mask)``, two ``(len(rows), width)`` long tensors on ``device``: the
    rows of token ids right-aligned (``width`` the longest row) after ``pad_id`` padding
    that the mask zeroes, as a decoder-only LM continues a batch."""
    torch = require("torch", "torch")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def generate(
    model,
    tokenizer,
    prompts: list[str],
    generator,
    *,
    do_sample: bool,
    max_new_tokens: int,
    min_new_tokens: int,
    top_p: float,
    temperature: float,
    prompt_max_tokens: int | None = None,
) -> tuple[list[str], list[int]]:
    """Batched generation (left-padded) of an answer to each of ``prompts``, chat-formatted
    and cut to ``prompt_max_tokens`` tokens (:func:`chat_prompt_ids`; the env's
    ``preset.prompt_max_tokens``). Returns the texts (up to the first end-of-turn token,
    stripped) and their token counts.

    Sampling (``do_sample``, with ``top_p`` and ``temperature``) draws from ``generator``
    only (see :func:`seeded_global_rng`); without it the answer is greedy. The end of turn
    is blocked before ``min_new_tokens`` new tokens, and an answer stops at ``max_new_tokens``.
    """
    torch = require("torch", "torch")
    device = next(model.parameters()).device
    rows = [chat_prompt_ids(tokenizer, p, prompt_max_tokens) for p in prompts]
    ids, mask = left_pad(rows, tokenizer.pad_token_id, device)
    eos = tokenizer.eos_token_id
    with seeded_global_rng(generator, device), torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=do_sample,
            top_p=top_p if do_sample else None,
            temperature=temperature if do_sample else None,
            top_k=None,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
        )
    texts, lengths = [], []
    for row in out[:, ids.shape[1] :].tolist():
        # Pad may equal EOS: keep what precedes the first EOS rather than masking by pad id.
        cut = row.index(eos) if eos in row else len(row)
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        lengths.append(cut)
    return texts, lengths
