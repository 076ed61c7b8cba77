"""Negative log-likelihood of responses under an LM: the LM oracle's measure of quality
(:func:`sequence_nll`), one batched forward pass per call."""

from __future__ import annotations

import numpy as np

from fpo_envs.lm.generation import chat_prompt_ids, left_pad, response_ids
from fpo_envs.lm.loading import require


def sequence_nll(
    model, tokenizer, prompts: list[str], responses: list[str], scope: str, prompt_max_tokens: int | None = None
) -> np.ndarray:
    """Mean token negative log-likelihood of chat(prompt) + response + EOS under ``model``,
    over the whole sequence (``scope="sequence"``) or the response and EOS only, one value
    per (prompt, response) pair, shape ``(n,)``. The chat-formatted prompt is cut to
    ``prompt_max_tokens`` tokens (:func:`~fpo_envs.lm.generation.chat_prompt_ids`; the env's
    ``preset.prompt_max_tokens``). Several responses to one prompt share its forward pass."""
    if len(responses) > 1 and len(set(prompts)) == 1:
        return _shared_prompt_nll(model, tokenizer, prompts[0], responses, scope, prompt_max_tokens)
    return _padded_nll(model, tokenizer, prompts, responses, scope, prompt_max_tokens)


def _padded_nll(
    model, tokenizer, prompts: list[str], responses: list[str], scope: str, prompt_max_tokens: int | None
) -> np.ndarray:
    """:func:`sequence_nll` as one left-padded batch of whole sequences."""
    torch = require("torch", "torch")
    device = next(model.parameters()).device
    rows, starts = [], []
    for prompt, response in zip(prompts, responses):
        p = chat_prompt_ids(tokenizer, prompt, prompt_max_tokens)
        rows.append(p + response_ids(tokenizer, response) + [tokenizer.eos_token_id])
        starts.append(len(p))
    ids, mask = left_pad(rows, tokenizer.pad_token_id, device)
    width = ids.shape[1]
    # Only the scored positions' logits are needed; with left padding they are the last ones.
    keep = max(len(r) - (1 if scope == "sequence" else s) for r, s in zip(rows, starts)) + 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=keep).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)  # predicts tokens width-keep+1 .. width-1
    targets = ids[:, width - keep + 1 :]
    token_nll = -logp.gather(-1, targets[..., None])[..., 0]
    nll = []
    for i, (r, s) in enumerate(zip(rows, starts)):
        first = 1 if scope == "sequence" else s  # index in the row of the first scored token
        n = len(r) - first
        nll.append(token_nll[i, keep - 1 - n :].mean().item())
    return np.asarray(nll)


def _cache_argument(model) -> str:
    """The forward keyword of a key/value cache: ``cache`` in recent transformers, which
    deprecates ``past_key_values``."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def _shared_prompt_nll(
    model, tokenizer, prompt: str, responses: list[str], scope: str, prompt_max_tokens: int | None
) -> np.ndarray:
    """:func:`sequence_nll` of several responses to one prompt: the prompt (with the chat
    template and any system prompt) runs once and its key/value cache serves every response,
    instead of once per response (a round scores its N candidates and the reference this way)."""
    torch = require("torch", "torch")
    device = next(model.parameters()).device
    prefix = chat_prompt_ids(tokenizer, prompt, prompt_max_tokens)
    suffixes = [response_ids(tokenizer, r) + [tokenizer.eos_token_id] for r in responses]
    n, width, pad = len(suffixes), max(len(x) for x in suffixes), tokenizer.pad_token_id
    ids = torch.tensor([x + [pad] * (width - len(x)) for x in suffixes], device=device)  # right-padded
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in suffixes], device=device)
    with torch.inference_mode():
        head = model(input_ids=torch.tensor([prefix], device=device), use_cache=True)
        cache = getattr(head, "cache", None) or head.past_key_values
        cache.batch_repeat_interleave(n)
        full_mask = torch.cat([torch.ones((n, len(prefix)), dtype=mask.dtype, device=device), mask], dim=1)
        positions = torch.arange(len(prefix), len(prefix) + width, device=device).expand(n, -1)
        tail = model(input_ids=ids, attention_mask=full_mask, position_ids=positions, **{_cache_argument(model): cache})
        prefix_logp = torch.log_softmax(head.logits[0].float(), dim=-1)  # position i predicts prefix token i + 1
        tail_logp = torch.log_softmax(tail.logits.float(), dim=-1)  # (n, width, vocab)
    prefix_targets = torch.tensor(prefix[1:], device=device)
    prefix_nll = -prefix_logp[:-1].gather(-1, prefix_targets[:, None])[:, 0]  # the prompt's own tokens
    first_nll = -prefix_logp[-1][ids[:, 0]]  # each response's first token, predicted by the prompt's end
    rest_nll = -tail_logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]  # (n, width - 1)
    out = []
    for i, x in enumerate(suffixes):
        response_terms = torch.cat([first_nll[i : i + 1], rest_nll[i, : len(x) - 1]])
        terms = torch.cat([prefix_nll, response_terms]) if scope == "sequence" else response_terms
        out.append(terms.mean().item())
    return np.asarray(out)
