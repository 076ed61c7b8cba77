"""Tiny language models built in the tests, saved as plain transformers folders, so the text
game's real loading code runs on them in seconds."""

from __future__ import annotations

from pathlib import Path

from fpo_envs.lm.prompts import BUILTIN, load_prompts

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_models(folder: Path) -> dict[str, str]:
    """A byte-level BPE tokenizer with a chat template, a 2-layer Llama and a 1-layer BERT.

    Returns the preset overrides that point ``FPO/TextRM-v0`` at them.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = load_prompts("builtin", "train") + load_prompts("builtin", "eval") + [BUILTIN.read_text()]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}

    torch.manual_seed(0)  # test fixture: fixed tiny weights
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=ids["<|im_start|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|im_end|>"],
            tie_word_embeddings=True,
        )
    )
    llama.generation_config.pad_token_id = ids["<|im_end|>"]
    bert_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 512,
        "pad_token_id": ids["<|im_end|>"],
    }
    bert = BertModel(BertConfig(**bert_config))
    # A one-label sequence classifier: the shape of a trained preference RM (the paper's DeBERTa-v3).
    classifier = BertForSequenceClassification(BertConfig(**bert_config, num_labels=1))
    llama_dir, bert_dir, classifier_dir = folder / "tiny-llama", folder / "tiny-bert", folder / "tiny-bert-rm"
    llama.save_pretrained(llama_dir)
    tokenizer.save_pretrained(llama_dir)
    bert.save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    classifier.save_pretrained(classifier_dir)
    tokenizer.save_pretrained(classifier_dir)
    return {
        "policy_model": str(llama_dir),
        "rm_encoder": str(bert_dir),
        "max_new_tokens": 8,
        "min_new_tokens": 2,
        "max_response_tokens": 16,
    }
