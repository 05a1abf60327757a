"""Texts to token ids: the one tokenization path of skembed.

What the encoder sees of a text is decided here and nowhere else: the prompt put before it
and the folder's lower-casing (:func:`model_texts`), the Rust tokenizer called as
``transformers`` calls it with truncation to ``max_length`` (:func:`encode_batch`), long
texts tokenized from a prefix, and a memo of texts seen before (:func:`tokenize`); how
many leading tokens a prompt takes (:func:`prompt_tokens`), the special tokens
(:func:`special_ids`), where a truncated text was cut (:func:`truncation`). The
estimators, fine-tuning, static tables and ``skembed tokenize`` all call these.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._cache import Memo
from ._st_folder import prompt_length
from .exceptions import TruncationWarning

if TYPE_CHECKING:
    from ._models import LoadedModel


def warn_truncated(truncated: np.ndarray, max_length: int, stacklevel: int = 2) -> None:
    """Warn once with the count of truncated texts (a bool per text); nothing if none."""
    n = int(np.count_nonzero(truncated))
    if n:
        warnings.warn(TruncationWarning(n, len(truncated), max_length), stacklevel=stacklevel + 1)


@dataclass(frozen=True)
class Tokenization:
    """The tokens of one text as the encoder sees them."""

    text: str
    tokens: list[str]
    ids: list[int]
    truncated: bool


@dataclass
class TokenIds:
    """Token ids of each text after truncation, and which texts were truncated."""

    ids: list[np.ndarray]
    truncated: np.ndarray  # bool, one per text

    @property
    def lengths(self) -> np.ndarray:
        """Return the number of tokens of each text."""
        return np.fromiter((len(i) for i in self.ids), dtype=np.int64, count=len(self.ids))


# texts per call to the tokenizer: its per-text objects (offsets, token strings) take about
# 5 kB each, so 10,000 texts at once held 50 MB for a moment; 1,024 at a time hold 5 MB
TOKENIZE_SLICE = 1024


def model_texts(texts: Sequence[str], prompt: str, loaded: LoadedModel) -> list[str]:
    """Return the texts as the tokenizer gets them: prompted, lower-cased when the folder says.

    sentence-transformers puts the prompt before the text, then its Transformer module
    lower-cases both when its config says ``do_lower_case``.
    """
    return lowered([prompt + t for t in texts] if prompt else list(texts), lowercase(loaded))


def lowercase(loaded: LoadedModel) -> bool:
    """Return whether the folder's sentence-transformers config lower-cases texts."""
    return bool(loaded.pipeline.do_lower_case)


def lowered(texts: list[str], lowercase: bool) -> list[str]:
    """Return texts lower-cased when ``lowercase`` (the folder's ``do_lower_case``)."""
    return [t.lower() for t in texts] if lowercase else texts


def special_ids(tokenizer: Any) -> set[int]:
    """Return the ids of a tokenizer's special tokens ([CLS], [SEP], <s>, padding...)."""
    return {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}


def encode_batch(loaded: LoadedModel, texts: list[str], max_length: int) -> list:
    """Return the tokenizers Encoding of each text, truncated to max_length tokens.

    The same calls ``transformers`` makes for ``tokenizer(texts, truncation=True,
    max_length=...)``, on the Rust tokenizer directly.
    """
    with loaded.lock:  # the truncation setting is shared state
        loaded.tokenizer.enable_truncation(
            max_length,
            stride=0,
            strategy="longest_first",
            direction=loaded.truncation_side,
        )
        return loaded.tokenizer.encode_batch(texts, add_special_tokens=True)


def plain_ids(tokenizer: Any, texts: list[str], lowercase: bool) -> list[list[int]]:
    """Return each text's token ids without special tokens and without a length limit.

    What a static table is looked up by; ``tokenizer`` has truncation and padding off.
    """
    encodings = tokenizer.encode_batch_fast(lowered(texts, lowercase), add_special_tokens=False)
    return [e.ids for e in encodings]


# Token ids of texts seen before in this process, per (model, max_length): a grid search
# transforms the same texts 40 times, and tokenizing them again was a tenth of its time.
# Bounded: texts up to MEMO_TEXT_CHARS characters, MEMO_TEXTS of them per model (then the
# model's memo starts over), a few models. The arrays are read-only, as they are shared
# between calls.
_TOKEN_MEMO = Memo("token ids", limit=8)  # (fingerprint, max_length) -> {text: (ids, cut)}
MEMO_TEXTS = 200_000
MEMO_TEXT_CHARS = 2_000


def tokenize(loaded: LoadedModel, texts: Sequence[str], max_length: int) -> TokenIds:
    """Tokenize texts in batched calls, truncating each to max_length tokens.

    A long text costs time in proportion to max_length, not to its length: only a prefix of
    it is tokenized when that provably gives the same ids and truncation flag as the whole
    text (see :func:`_tokenize_slice`). Texts tokenized before for the same model and
    max_length come from a memo (the tokenizer is part of the model's fingerprint).
    """
    memo = _TOKEN_MEMO.get_or_make((loaded.fingerprint, max_length), dict)
    ids: list[np.ndarray | None] = [None] * len(texts)
    truncated = np.zeros(len(texts), dtype=bool)
    todo = []
    for i, text in enumerate(texts):
        known = memo.get(text)
        if known is None:
            todo.append(i)
        else:
            ids[i], truncated[i] = known
    for start in range(0, len(todo), TOKENIZE_SLICE):
        rows = todo[start : start + TOKENIZE_SLICE]
        part_ids, part_truncated = _tokenize_slice(loaded, [texts[i] for i in rows], max_length)
        if len(memo) + len(rows) > MEMO_TEXTS:
            memo.clear()
        for i, row_ids, cut in zip(rows, part_ids, part_truncated, strict=True):
            row_ids.setflags(write=False)
            ids[i], truncated[i] = row_ids, cut
            if len(texts[i]) <= MEMO_TEXT_CHARS:
                memo[texts[i]] = (row_ids, bool(cut))
    return TokenIds(ids=ids, truncated=truncated)


# A text longer than twice this many characters per kept token is tokenized from a prefix:
# 8 is generous (English runs about 4-5 characters per WordPiece token), so the first
# prefix is almost always long enough
PREFIX_CHARS_PER_TOKEN = 8
PREFIX_MIN_CHARS = 1024
# where a prefix may end: before a run of whitespace that every pre-tokenizer splits at
# (WordPiece's, byte-level BPE's regex, Metaspace); no other Unicode spaces, whose
# handling differs between tokenizers
_CUT_SPACES = " \t\n\r"


def _tokenize_slice(
    loaded: LoadedModel, texts: list[str], max_length: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Return the ids and truncation flags of texts, tokenizing long texts from a prefix.

    Tokenizing 10 MB to keep 256 tokens took tens of seconds. A long text is first cut
    after about ``PREFIX_CHARS_PER_TOKEN * max_length`` characters, at the start of a
    whitespace run (no word, multi-byte character or byte-level "space + word" token is
    split). Its prefix is used only when the prefix overflows max_length and the token
    after the kept ones ends before a further whitespace, so that a whole word separates
    every kept token from the cut; otherwise the prefix is doubled, up to the whole text.
    Texts without whitespace, and models that truncate on the left (which keep the end of
    the text), are tokenized whole.
    """
    encodings: list = [None] * len(texts)
    size = max(PREFIX_CHARS_PER_TOKEN * max_length, PREFIX_MIN_CHARS)
    pending: dict[int, int] = {}  # index of a long text -> characters of its next prefix
    whole = []
    for i, text in enumerate(texts):
        if len(text) > 2 * size and loaded.truncation_side == "right":
            pending[i] = size
        else:
            whole.append(i)
    whole_encodings = encode_batch(loaded, [texts[i] for i in whole], max_length)
    for i, encoding in zip(whole, whole_encodings, strict=True):
        encodings[i] = encoding
    while pending:
        cuts = {i: prefix_cut(texts[i], n) for i, n in pending.items()}
        cuts = {i: cut for i, cut in cuts.items() if cut}  # no whitespace yet: a longer one
        heads = encode_batch(loaded, [texts[i][:cut] for i, cut in cuts.items()], max_length)
        retry = {}
        for (i, cut), encoding in zip(cuts.items(), heads, strict=True):
            if cut == len(texts[i]) or prefix_is_enough(encoding, texts[i], cut):
                encodings[i] = encoding
            else:
                retry[i] = 2 * pending[i]
        retry.update((i, 2 * n) for i, n in pending.items() if i not in cuts)
        pending = retry
    ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
    return ids, np.fromiter((bool(e.overflowing) for e in encodings), bool, len(encodings))


def prefix_cut(text: str, size: int) -> int:
    """Return where a prefix of about size characters may end, 0 if nowhere, or len(text)."""
    if 2 * size >= len(text):
        return len(text)
    head = text[:size]
    space = max(head.rfind(c) for c in _CUT_SPACES)
    return len(head[: max(space, 0)].rstrip(_CUT_SPACES))


def prefix_is_enough(encoding, text: str, cut: int) -> bool:
    """Tell whether a prefix's truncated encoding is the whole text's (see :func:`tokenize`)."""
    if not encoding.overflowing:
        return False  # the whole text may still overflow, or the kept tokens may change
    after = encoding.overflowing[0]
    content = [
        end
        for (_, end), special in zip(after.offsets, after.special_tokens_mask, strict=True)
        if not special
    ]
    if not content:
        return False
    return any(text.find(c, content[0], cut) >= 0 for c in _CUT_SPACES)


def prompt_tokens(loaded: LoadedModel, prompt: str) -> int:
    """Return how many leading tokens of a prompted text are the prompt's, as ST counts them.

    The prompt tokenized alone, with the special tokens, less a trailing special token
    (sentence-transformers' ``prompt_length``, :func:`skembed._st_folder.prompt_length`): a
    leading ``[CLS]`` counts as the prompt's.
    """
    if not prompt:
        return 0
    (prompt,) = model_texts([prompt], "", loaded)
    (encoding,) = encode_batch(loaded, [prompt], loaded.capacity)
    return prompt_length(encoding.ids, special_ids(loaded.tokenizer))


@dataclass(frozen=True)
class Cut:
    """Where a truncated text was cut: what :func:`truncation` returns."""

    position: int  # of the first token after the cut, among the text's tokens with specials
    kept: int  # tokens of the text (not special, not the prompt's) kept
    total: int  # tokens of the whole text
    end: int  # character of the text where the kept part ends
    tail: str  # the last characters kept (up to 30)


def tokenizations(
    loaded: LoadedModel, texts: list[str], prompt: str, max_length: int
) -> list[Tokenization]:
    """Return the tokens and ids of each text as the encoder sees them, prompt included."""
    token_ids = tokenize(loaded, model_texts(texts, prompt, loaded), max_length)
    token = loaded.tokenizer.id_to_token
    return [
        Tokenization(text, [token(i) for i in ids.tolist()], ids.tolist(), bool(cut))
        for text, ids, cut in zip(texts, token_ids.ids, token_ids.truncated, strict=True)
    ]


def truncation(loaded: LoadedModel, tokenized: Tokenization, prompt: str) -> Cut:
    """Return where a truncated text was cut, counted in the text's own tokens and characters.

    The text as the encoder sees it (lower-cased when the folder says) is tokenized whole,
    without special tokens, and compared with the kept ids (:func:`tokenizations`).
    """
    special = special_ids(loaded.tokenizer)
    n_prompt = len(_plain(loaded, model_texts([""], prompt, loaded)[0])) if prompt else 0
    text = model_texts([tokenized.text], "", loaded)[0]
    whole = _plain(loaded, text, offsets=True)
    positions = [i for i, token_id in enumerate(tokenized.ids) if token_id not in special]
    kept = max(len(positions) - n_prompt, 0)
    end = whole[kept - 1][1] if kept else 0
    position = positions[-1] + 1 if positions else 0
    return Cut(position, kept, len(whole), end, text[max(0, end - 30) : end])


def _plain(loaded: LoadedModel, text: str, offsets: bool = False) -> list:
    """Return a text's ids (or (start, end) offsets) without special tokens or truncation."""
    (encoding,) = plain_encodings(loaded, [text])
    return list(encoding.offsets) if offsets else list(encoding.ids)


def plain_encodings(loaded: LoadedModel, texts: list[str]) -> list:
    """Return the tokenizers Encoding of each text, without special tokens or truncation."""
    with loaded.lock:  # the truncation setting is shared state
        loaded.tokenizer.no_truncation()
        return loaded.tokenizer.encode_batch(texts, add_special_tokens=False)


def special_frame(loaded: LoadedModel) -> tuple[list[int], list[int]]:
    """Return the special-token ids the tokenizer puts before and after a text's own."""
    (framed,) = encode_batch(loaded, ["a"], loaded.capacity)
    own = [i for i, special in enumerate(framed.special_tokens_mask) if not special]
    if not own:
        return [], []
    return list(framed.ids[: own[0]]), list(framed.ids[own[-1] + 1 :])
