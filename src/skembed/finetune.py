"""Fine-tuning: adapt an encoder to labelled texts or pairs, as a small update to its weights.

Two functions over a ``transformers`` encoder and arrays:

- :func:`fine_tune` trains a copy of the encoder on (text, label) rows and returns an
  :class:`skembed._update.Update`: the changed tensors as numpy arrays (low-rank factors,
  :mod:`skembed._lora`, or whole parameters), a fingerprint of base + update, and the loss
  history. The encoder it is given is shared and never modified.
- :func:`fine_tune_pairs` does the same on labelled pairs of texts.

:func:`skembed._update.apply_update` merges an update into an encoder's plain weights, so
that inference and ONNX export need nothing but the encoder class.

The default (``Settings()``): LoRA rank 8 on every linear layer of the encoder, a
cosine-softmax head initialised at the class means of the frozen vectors with a CosFace
margin of 0.1, 10 epochs but at most :data:`skembed._schedule.DEFAULT_MAX_STEPS` steps, at
1e-3, batches of texts of similar length. On Banking77 (8 texts per label,
``benchmarks/finetune.py``) it scored 0.829 against the frozen encoder's 0.792 with
``LogisticRegression()``, 0.832 against 0.823 with the classifier's C chosen by
cross-validation; full fine-tuning, a supervised contrastive loss, other margins, scales,
rates and epochs were no better. See docs/fine_tuning.md.
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
