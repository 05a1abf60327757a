"""Tiny random sentence-transformers folders, saved by sentence-transformers itself.

Each folder is a tiny random encoder (2 layers, hidden size 32, 4 heads, seeded, a real
tokenizer trained offline) wrapped in ST modules and written with
``SentenceTransformer(modules=[...]).save(folder)``, so that ``modules.json`` and every
module config are the files the installed sentence-transformers writes, not hand-made ones.

:func:`build_hf_encoder` writes the plain Hugging Face folder of an architecture;
:func:`build_st_model` wraps such a folder in one of :data:`PIPELINES` and saves it.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from tiny_models import CORPUS, WORDS, build_bert, build_roberta

ARCHITECTURES = ("bert", "mpnet", "roberta", "xlm-roberta", "distilbert", "modernbert", "qwen3")
"""Every architecture :func:`build_hf_encoder` can write."""

PIPELINES = ("cls_dense_normalize", "mean_prompts", "last_normalize")
"""ST pipelines after the transformer:

- ``cls_dense_normalize``: CLS pooling, Dense(32 -> 16, tanh), Normalize;
- ``mean_prompts``: mean pooling with ``include_prompt=False`` and the prompts
  ``{"query": "query: ", "document": "passage: "}``;
- ``last_normalize``: last-token pooling, Normalize.
"""

PROMPTS = {"query": "query: ", "document": "passage: "}

_LOCAL = {"local_files_only": True, "trust_remote_code": False}
_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
# RoBERTa-style ids and positions (numbered from padding_idx + 1): MPNet, XLM-R
_ROBERTA_LIKE = {
    "intermediate_size": 64,
    "max_position_embeddings": 66,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}


def _wordpiece_vocab(specials: list[str]) -> dict[str, int]:
    vocab = specials + list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab += ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in WORDS if w not in vocab]
    return {token: i for i, token in enumerate(vocab)}


def _training_texts() -> list[str]:
    # every letter, digit and sign once, so that no text of the tests is <unk>
    alphabet = " ".join(string.ascii_letters + string.digits + string.punctuation)
    return CORPUS * 20 + [" ".join(WORDS)] * 20 + ["query: passage: " + alphabet] * 5


def _bpe_tokenizer(specials: list[str], single: str):
    """Return a byte-level BPE ``tokenizers.Tokenizer`` whose post-processor is ``single``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        min_frequency=1,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_texts(), trainer=trainer)
    used = [s for s in specials if f"{s}" in single]
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(s, tok.token_to_id(s)) for s in used]
    )
    return tok


def _save_model(model_class, config, path: Path, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    model_class(config).eval().save_pretrained(path)


def _build_mpnet(path: Path, seed: int) -> None:
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizer

    vocab = _wordpiece_vocab(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"])
    tokenizer = MPNetTokenizer(vocab=vocab, do_lower_case=True)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(path)
    config = MPNetConfig(vocab_size=len(vocab), **_ROBERTA_LIKE, **_SIZES)
    _save_model(MPNetModel, config, path, seed)


def _build_distilbert(path: Path, seed: int) -> None:
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    vocab = _wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer = DistilBertTokenizerFast(vocab=vocab, do_lower_case=True)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(path)
    config = DistilBertConfig(
        vocab_size=len(vocab), dim=32, n_layers=2, n_heads=4, hidden_dim=64,
        max_position_embeddings=64, pad_token_id=0,
    )  # fmt: skip
    _save_model(DistilBertModel, config, path, seed)


def _build_xlm_roberta(path: Path, seed: int) -> None:
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer

    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(
        _training_texts(),
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        unk_token="<unk>",
        show_progress=False,
    )
    pieces = [tuple(p) for p in json.loads(unigram.to_str())["model"]["vocab"]]
    tokenizer = XLMRobertaTokenizer(vocab=pieces)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(path)
    config = XLMRobertaConfig(vocab_size=len(pieces), **_ROBERTA_LIKE, **_SIZES)
    _save_model(XLMRobertaModel, config, path, seed)


def _build_modernbert(path: Path, seed: int) -> None:
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = _bpe_tokenizer(specials, "[CLS] $A [SEP]")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    tokenizer.save_pretrained(path)
    config = ModernBertConfig(
        vocab_size=tok.get_vocab_size(),
        intermediate_size=64,
        max_position_embeddings=64,
        local_attention=16,
        global_attn_every_n_layers=2,
        pad_token_id=0,
        cls_token_id=2,
        sep_token_id=3,
        bos_token_id=2,
        eos_token_id=3,
        **_SIZES,
    )
    _save_model(ModernBertModel, config, path, seed)


def _build_qwen3(path: Path, seed: int) -> None:
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    # Qwen3 embedders append <|endoftext|> to every text and pad on the left
    tok = _bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "$A <|endoftext|>")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=512,
    )
    tokenizer.save_pretrained(path)
    eos = tok.token_to_id("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=tok.get_vocab_size(),
        intermediate_size=64,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
        pad_token_id=eos,
        eos_token_id=eos,
        bos_token_id=None,
        tie_word_embeddings=True,
        **_SIZES,
    )
    _save_model(Qwen3Model, config, path, seed)


def build_hf_encoder(path: Path, architecture: str, *, seed: int = 0) -> Path:
    """Write a tiny random Hugging Face folder of ``architecture`` to path and return path."""
    path.mkdir(parents=True, exist_ok=True)
    if architecture == "bert":
        return build_bert(path, seed=seed)
    if architecture == "roberta":
        return build_roberta(path, seed=seed)
    builders = {
        "mpnet": _build_mpnet,
        "xlm-roberta": _build_xlm_roberta,
        "distilbert": _build_distilbert,
        "modernbert": _build_modernbert,
        "qwen3": _build_qwen3,
    }
    if architecture not in builders:
        raise ValueError(f"architecture={architecture!r}; expected one of {ARCHITECTURES}")
    builders[architecture](path, seed)
    return path


def build_st_model(path: Path, hf_folder: Path, pipeline: str, *, seed: int = 0) -> Path:
    """Wrap the HF folder ``hf_folder`` in ST modules of ``pipeline``, save to path, return path.

    The folder is written by ``SentenceTransformer(modules=[...]).save(path)``: its
    config files are those of the installed sentence-transformers.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    transformer = Transformer(
        str(hf_folder), model_kwargs=_LOCAL, processor_kwargs=_LOCAL, config_kwargs=_LOCAL
    )
    dim = transformer.get_embedding_dimension()
    prompts = None
    if pipeline == "cls_dense_normalize":
        torch.manual_seed(seed)
        modules = [
            transformer,
            Pooling(dim, pooling_mode="cls"),
            Dense(dim, 16, activation_function=torch.nn.Tanh()),
            Normalize(),
        ]
    elif pipeline == "mean_prompts":
        modules = [transformer, Pooling(dim, pooling_mode="mean", include_prompt=False)]
        prompts = dict(PROMPTS)
    elif pipeline == "last_normalize":
        modules = [transformer, Pooling(dim, pooling_mode="lasttoken"), Normalize()]
    else:
        raise ValueError(f"pipeline={pipeline!r}; expected one of {PIPELINES}")
    model = SentenceTransformer(
        modules=modules,
        prompts=prompts,
        device="cpu",
        trust_remote_code=False,
        local_files_only=True,
    )
    model.save(str(path), create_model_card=False)
    return path
