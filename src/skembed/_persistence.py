"""How a fitted SentenceEmbedder pickles, and finds its model again once unpickled.

By reference (the default): the pickle holds the parameters, the fitted attributes and the
model's identity, under 1 MB; the model is found again on the loading machine and checked
file by file (:func:`skembed._models.reopen`), so a changed or missing model is never used
silently. With ``pickle_weights=True`` the pickle also carries the model's files
(:mod:`skembed._bundle`). Pickles of skembed 0.1.0 keep loading: they get the parameters
added since, at the values that give the vectors they were fitted to give.
"""

from __future__ import annotations

from sklearn.utils.validation import check_is_fitted

from . import _models


class ModelReference:
    """The pickling of an estimator that runs a loaded model (``_loaded``) it can re-open."""

    def __getstate__(self):
        # a copy: object.__getstate__ may hand back the live __dict__ itself
        state = dict(super().__getstate__())
        state.pop("_loaded", None)
        if self.pickle_weights and "fingerprint_" in state and "_model_files" not in state:
            base = getattr(self, "base_fingerprint_", None) or self.fingerprint_
            path, spec = self._model().path, str(self.model)
            state["_model_files"] = _models.pack(path, spec, base, self.model_files_)
        return state

    def __setstate__(self, state):
        # older pickles lack the parameters and fitted attributes added since: they keep the
        # vectors they were fitted to give (0.1.0's pooling, no prompt, no Dense layers)
        for name, value in _ADDED_SINCE.items():
            state.setdefault(name, value)
        if "fingerprint_" in state and "pooling_" not in state:
            state.update(pooling_=state["pooling"], normalize_=bool(state["normalize"]))
            state.update(prompt_="", prompts_={}, dense_layers_=0)
        self.__dict__.update(state)

    def _model(self) -> _models.LoadedModel:
        """Return the loaded model, loading it again (and checking it) after unpickling."""
        loaded = getattr(self, "_loaded", None)
        if loaded is None:
            expected = getattr(self, "model_files_", None)  # None: pickled by skembed 0.1.0
            base = getattr(self, "base_fingerprint_", None) or self.fingerprint_
            packed, update = getattr(self, "_model_files", None), getattr(self, "update_", None)
            loaded, found = _models.reopen(self.model, self.device, base, expected, packed, update)
            if expected is None:  # caches and later pickles key on the whole folder
                self.fingerprint_, self.model_files_ = found.fingerprint, dict(found.files)
                self.__dict__.pop("_model_files", None)
            self._loaded = loaded
        return loaded


# skembed 0.1.0 lacks all of these; main at 6743d60 lacks fine_tune_steps
_ADDED_SINCE = {
    "fine_tune_steps": None,
    **dict.fromkeys(("prompt", "prompt_name", "truncate_dim", "fine_tune")),
    **{"fine_tune_adapter": "lora", "fine_tune_epochs": None, "fine_tune_learning_rate": None},
    **{"fine_tune_batch_size": 32, "random_state": 0, "missing": "error"},
    **{"long_texts": "truncate", "window_length": None, "window_overlap": None},  # before 0.2
}


def loaded_model(embedder: ModelReference) -> _models.LoadedModel:
    """Return the model a fitted SentenceEmbedder runs (loaded again after unpickling).

    A documented internal, for the command line and tests: the tokenizer, sizes and
    sentence-transformers pipeline of :class:`skembed._models.LoadedModel`.
    """
    check_is_fitted(embedder)
    return embedder._model()
