"""Tiny random encoders with real tokenizers, written to a folder like any HF model.

2 layers, hidden size 32: a WordPiece model (BERT) and a byte-level BPE model (RoBERTa),
so that the suite proves nothing in skembed is BERT-specific. Weights are seeded, so the
same folder is byte-identical run to run.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

WORDS = (
    "the a an i you we they it is are was love like apples apple fruit dog cat chased "
    "bank card money transfer account my favourite red green blue sky sea hello world "
    "good bad day night what how when where why can not do does please help me with"
).split()

CORPUS = [
    "I love apples",
    "The dog chased the cat",
    "The cat chased the dog",
    "How do I transfer money to my bank account?",
    "My card was declined at the shop",
    "What a good day, the sky is blue",
    "Hello world! Can you help me with this?",
]


def build_bert(path: Path, *, max_position_embeddings: int = 64, seed: int = 0) -> Path:
    """Write a tiny random BERT with a WordPiece vocabulary to path and return path."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = specials + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in WORDS if w not in vocab]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    tokenizer.model_max_length = 512  # more than the position embeddings: they must cap it
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
    )
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(path)
    return path


def build_roberta(path: Path, *, seed: int = 0) -> Path:
    """Write a tiny random RoBERTa with a byte-level BPE vocabulary to path and return path."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS * 20 + [" ".join(WORDS)] * 20,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    model = json.loads(bpe.to_str())["model"]
    tokenizer = RobertaTokenizerFast(
        vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]]
    )
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(path)
    config = RobertaConfig(
        vocab_size=len(model["vocab"]),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=66,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    RobertaModel(config).eval().save_pretrained(path)
    return path
