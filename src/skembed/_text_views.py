"""The texts of a SentenceEmbedder seen other than as one vector each: their tokens, their
token states, and the windows of long texts (what SemanticSearch indexes)."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _embedder_params, _encoding, _tokens, _windows
from ._input import check_texts, texts_under_policy
from ._tokens import Tokenization
from ._windows import Windows

__all__ = ["TextViewsMixin"]


class TextViewsMixin:
    """``tokenize``, ``token_embeddings`` and ``transform_windows`` of a SentenceEmbedder."""

    def _window_settings(self) -> tuple[int, int]:
        # a pickle of skembed before 0.2 has no window settings: resolve them now
        if "window_overlap_" not in self.__dict__:
            self.window_length_ = min(_windows.DEFAULT_LENGTH, self.max_length_)
            self.window_overlap_ = _embedder_params.choose_overlap(
                self._model(), self.window_length_, self.window_overlap, self.prompt_
            )
        return self.window_length_, self.window_overlap_

    def transform_windows(self, X, *, prompt: str | None = None) -> Windows:
        """Return every window of the texts: each one's vector, its text, and its characters.

        A text that fits in ``window_length_`` tokens is one window, its vector the one
        :meth:`transform` gives it (when it fits ``max_length_`` too); a longer one is cut
        into overlapping windows of ``window_length_`` tokens (``window_overlap_`` of its
        own tokens shared), each encoded as a text of its own, whatever ``long_texts``
        says. The first window of a long text is its truncated form. What
        :class:`~skembed.SemanticSearch` indexes with ``long_texts="windows"``.

        Parameters
        ----------
        X : list-like of str
            Texts.
        prompt : str or None, default=None
            A prompt instead of ``prompt_``, as for :meth:`transform`.

        Returns
        -------
        Windows
            ``vectors`` (n_windows, ``embedding_dim_``) float32, ``text`` (n_windows,) the
            index of each window's text in X, ``spans`` (n_windows, 2) the characters
            ``[start, end)`` of the text that it covers; windows in the order of X.

        Examples
        --------
        >>> from skembed import SentenceEmbedder
        >>> embedder = SentenceEmbedder(max_length=16).fit(["warm up"])
        >>> text = "Cats sleep most of the day. They hunt at night. Dogs like to play all day."
        >>> windows = embedder.transform_windows(["a short text", text])
        >>> windows.text.tolist(), windows.vectors.shape
        ([0, 1, 1], (3, 384))
        >>> for start, end in windows.spans[windows.text == 1].tolist():
        ...     print(text[start:end])
        Cats sleep most of the day. They hunt at night. Dogs like
        day. They hunt at night. Dogs like to play all day.
        """
        check_is_fitted(self)
        texts, zeroed = texts_under_policy(X, self.missing, stacklevel=2)
        loaded = self._model()
        rows = list(
            _windows.window_rows(
                loaded,
                texts,
                self._plan(loaded),
                length=self._window_settings()[0],
                overlap=self._window_settings()[1],
                prompt=self.prompt_ if prompt is None else prompt,
                memory=self.cache,
                cache_dir=self.cache_dir,
            )
        )
        vectors = np.concatenate([r.vectors for r in rows])
        text = np.concatenate([r.text for r in rows])
        vectors[np.isin(text, np.flatnonzero(zeroed))] = 0.0
        return Windows(vectors, text, np.concatenate([r.spans for r in rows]))

    def tokenize(self, X) -> list[Tokenization]:
        """Return the tokens and ids of each text, as the encoder sees them.

        Examples
        --------
        >>> from skembed import SentenceEmbedder
        >>> embedder = SentenceEmbedder().fit(["warm up"])
        >>> embedder.tokenize(["I love apples"])[0].tokens
        ['[CLS]', 'i', 'love', 'apples', '[SEP]']
        """
        check_is_fitted(self)
        return _tokens.tokenizations(self._model(), check_texts(X), self.prompt_, self.max_length_)

    def token_embeddings(self, X) -> list[np.ndarray]:
        """Return, per text, the token vectors (n_tokens, dim) that pooling would see.

        These are the states of the chosen ``layer`` (averaged over a tuple of layers), or
        the input embedding rows for ``pooling="static_mean"``; not normalized.
        """
        check_is_fitted(self)
        loaded = self._model()
        return _encoding.token_embeddings(loaded, check_texts(X), self._plan(loaded), self.prompt_)
