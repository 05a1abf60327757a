"""Fine-tuning: adapt an encoder to labelled texts or pairs, as a small update to its weights.

Two functions over a ``transformers`` encoder and arrays:

- :func:`fine_tune` trains a copy of the encoder on (text, label) rows and returns an
  :class:`Update`: the changed tensors as numpy arrays (low-rank factors,
  LoRA, or whole parameters), a fingerprint of base + update, and the loss
  history. The encoder it is given is shared and never modified.
- :func:`fine_tune_pairs` does the same on labelled pairs of texts.

:func:`apply_update` merges an update into an encoder's plain weights, so
that inference and ONNX export need nothing but the encoder class.

The default (``Settings()``): LoRA rank 8 on every linear layer of the encoder, a
cosine-softmax head initialised at the class means of the frozen vectors with a CosFace
margin of 0.1, 10 epochs but at most 320 steps, at 1e-3, batches of texts of similar
length: the setting that did best among those tried on Banking77 (docs/fine_tuning.md has
the runs and their commands).
"""

from __future__ import annotations

from ._finetune import ADAPTERS, METHODS, PAIR_LEARNING_RATE, Settings, fine_tune, fine_tune_pairs
from ._update import Update, apply_update

__all__ = [
    "ADAPTERS",
    "METHODS",
    "PAIR_LEARNING_RATE",
    "Settings",
    "Update",  # pickles and skops trust lists name it skembed.finetune.Update
    "apply_update",
    "fine_tune",
    "fine_tune_pairs",
]
