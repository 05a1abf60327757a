"""The losses fine-tuning minimises, on batches of unit-length vectors (PyTorch tensors).

- :func:`cosine_softmax`: a cosine-similarity classifier head with a CosFace margin and
  cross-entropy (labelled texts, the default);
- :func:`supcon`: the supervised contrastive loss (labelled texts);
- :func:`cosent`: CoSENT (labelled pairs), as sentence-transformers' ``CoSENTLoss``.
"""

from __future__ import annotations

from typing import Any


def cosine_softmax(vectors: Any, head: Any, targets: Any, scale: float, margin: float) -> Any:
    """Return the cross-entropy of ``scale * cos`` to each label's row of the head.

    ``margin`` is subtracted from the cosine of each text's own label first (CosFace), so
    that texts keep moving toward their label's row once they are classified correctly.
    """
    import torch

    weights = torch.nn.functional.normalize(head, dim=-1)
    cosines = vectors.float() @ weights.T
    if margin:
        cosines = cosines - margin * torch.nn.functional.one_hot(targets, cosines.shape[1])
    return torch.nn.functional.cross_entropy(scale * cosines, targets)


def supcon(vectors: Any, targets: Any, scale: float) -> Any:
    """Return the supervised contrastive loss of normalised vectors (Khosla et al. 2020)."""
    import torch

    vectors = vectors.float()
    n = vectors.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=vectors.device)
    similarity = (vectors @ vectors.T * scale).masked_fill(self_mask, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (targets[:, None] == targets[None, :]) & ~self_mask
    count = positives.sum(1)
    anchors = count > 0
    if not anchors.any():
        return vectors.sum() * 0.0
    summed = log_prob.masked_fill(~positives, 0.0).sum(1)
    return -(summed[anchors] / count[anchors]).mean()


def cosent(cosine: Any, labels: Any, scale: float) -> Any:
    """Return the CoSENT loss of pair cosines given their labels (higher label, higher cos).

    ``log(1 + sum(exp(scale * (cos_low - cos_high))))`` over every pair of pairs where one
    has the higher label (Su, 2022).
    """
    import torch

    difference = scale * (cosine[None, :] - cosine[:, None])  # [i, j]: cos_j - cos_i
    ordered = labels[:, None] > labels[None, :]  # pair i should beat pair j
    difference = difference.masked_fill(~ordered, float("-inf"))
    zero = torch.zeros(1, device=cosine.device, dtype=cosine.dtype)
    return torch.logsumexp(torch.cat((zero, difference.flatten())), 0)
