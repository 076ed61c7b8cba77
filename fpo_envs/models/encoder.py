"""The text game's reward model: a frozen text encoder with a trainable linear head."""

from __future__ import annotations

import numpy as np

from fpo_envs.core.numerics import adam_step, sigmoid
from fpo_envs.lm.loading import require


class EncoderRewardModel:
    """A frozen text encoder with a trainable linear head, trained by Bradley-Terry steps.

    ``r(x, y) = w . e(x, y) + b`` with ``e`` the encoder's mean-pooled embedding of the
    (prompt, response) pair. The head's parameters are ``params = [w, b]`` (shape ``(h + 1,)``)
    and their gradient for a response is exactly the feature vector ``[e, 1]``: the FPO
    penalties need no autograd. Embeddings are memoized per pair (the encoder is frozen).
    The follower step on ``(y, y_ref, p)`` minimizes the binary cross-entropy between
    ``sigmoid(r(y) - r(y_ref))`` and the soft preference ``p`` with Adam; ``opt_state`` is
    its state, ``{"exp_avg", "exp_avg_sq", "step"}`` (``torch.optim.Adam``'s names; zeros when ``None``).
    """

    loss_kind = "bradley-terry"
    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(
        self,
        encoder,
        tokenizer,
        params: np.ndarray,
        lr: float,
        max_length: int,
        opt_state: dict | None = None,
        rm_type: str = "encoder",
        rm_input: str = "prompt-response",
    ):
        self.encoder, self.tokenizer = encoder, tokenizer
        self.rm_type, self.rm_input = rm_type, rm_input
        self.params = np.asarray(params, dtype=np.float64)
        self.lr, self.max_length = lr, max_length
        self.opt_state = opt_state or {"exp_avg": np.zeros_like(self.params), "exp_avg_sq": np.zeros_like(self.params), "step": 0}
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def features(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """``[e(x, y), 1]`` per pair, shape ``(n, h + 1)`` (one encoder pass for the new ones)."""
        torch = require("torch", "torch")
        missing = sorted({(p, r) for p, r in zip(prompts, responses)} - set(self._cache))
        if missing:
            device = next(self.encoder.parameters()).device
            texts = (
                ([p for p, _ in missing], [r for _, r in missing])
                if self.rm_input == "prompt-response"
                else ([r for _, r in missing],)
            )
            batch = self.tokenizer(*texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(
                device
            )
            with torch.inference_mode():
                if self.rm_type == "sequence-classifier":
                    pooled = self._classifier_input(batch).double().cpu().numpy()
                else:
                    hidden = self.encoder(**batch).last_hidden_state
                    mask = batch["attention_mask"][..., None].to(hidden.dtype)
                    pooled = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).double().cpu().numpy()
            for key, e in zip(missing, pooled):
                self._cache[key] = np.append(e, 1.0)
            if len(self._cache) > 50_000:
                self._cache.clear()
        return np.stack([self._cache[(p, r)] for p, r in zip(prompts, responses)])

    def _classifier_input(self, batch):
        """What the sequence classifier's ``classifier`` head receives: its features."""
        captured = []
        hook = self.encoder.classifier.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        try:
            self.encoder(**batch)
        finally:
            hook.remove()
        features = captured[0]
        if features.ndim != 2:
            raise ValueError(f"the classifier head's input has shape {tuple(features.shape)}; expected (batch, hidden)")
        return features

    def reward(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """``r(x, y)`` per pair, shape ``(n,)``."""
        return self.features(prompts, responses) @ self.params

    def grad_params(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """``grad_params r(x, y) = [e(x, y), 1]`` per pair, shape ``(n, h + 1)``."""
        return self.features(prompts, responses)

    def loss(self, prompt: str, response: str, reference: str, preference: float) -> float:
        """Bradley-Terry cross-entropy of ``sigmoid(r(y) - r(y_ref))`` against ``preference``."""
        r, r_ref = self.reward([prompt, prompt], [response, reference])
        z = r - r_ref
        return float(np.logaddexp(0.0, -z) * preference + np.logaddexp(0.0, z) * (1 - preference))

    def loss_grad(self, prompt: str, response: str, reference: str, preference: float) -> np.ndarray:
        """``(sigmoid(r(y) - r(y_ref)) - p) * ([e(y), 1] - [e(y_ref), 1])``, shape ``(h + 1,)``."""
        f, f_ref = self.features([prompt, prompt], [response, reference])
        z = (f - f_ref) @ self.params
        return (sigmoid(z) - preference) * (f - f_ref)

    def _adam(self, grad: np.ndarray) -> tuple[np.ndarray, dict]:
        """One step of the head's Adam (:func:`fpo_envs.core.numerics.adam_step`, no weight decay)."""
        return adam_step(self.params, self.opt_state, grad, self.lr, betas=self.betas, eps=self.eps)

    def preview_update(self, prompt: str, response: str, reference: str, preference: float) -> np.ndarray:
        """The head's parameters after the follower step, without applying it."""
        return self._adam(self.loss_grad(prompt, response, reference, preference))[0]

    def update(self, prompt: str, response: str, reference: str, preference: float) -> None:
        """Take the follower step in place."""
        self.params, self.opt_state = self._adam(self.loss_grad(prompt, response, reference, preference))
