"""What a sentence-transformers folder says about its pipeline after the transformer.

A sentence-transformers (ST) model folder lists its modules in ``modules.json``: the
transformer, then Pooling, then optionally Dense layers and Normalize. :func:`read_pipeline`
reads those files, without importing sentence-transformers and without running any code
from the folder (torch only for a Dense layer that ships ``pytorch_model.bin`` and no
``model.safetensors``, which NumPy reads), into a :class:`FolderPipeline` (its Dense layers are
:class:`skembed._head.DenseLayer`, which :class:`skembed._head.Head` applies);
:func:`prompt_length` and :func:`exclude_prompt` reproduce how ST leaves the prompt out of
pooling when the Pooling module says ``include_prompt=False``.

Two layouts are read:

- the old one (ST 2.x to 5.x, what hub folders carry): module types such as
  ``sentence_transformers.models.Pooling``, and ``1_Pooling/config.json`` with boolean flags
  ``pooling_mode_mean_tokens``, ``pooling_mode_cls_token``, ...;
- the ST 6 one: module types such as
  ``sentence_transformers.sentence_transformer.modules.pooling.Pooling`` and
  ``sentence_transformers.base.modules.dense.Dense``, and ``1_Pooling/config.json`` with a
  ``pooling_mode`` string (``"mean"``, ``"cls"``, ``"lasttoken"``, ...).

Only ST's own Transformer, Pooling, Dense and Normalize modules are read. Any other module
type is refused with :class:`UnsupportedFolderError`: skembed never runs code from a model
folder (``trust_remote_code`` is never set). Several pooling modes at once (ST concatenates
them) are refused too, with an error that says so.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._head import ACTIVATIONS, DenseLayer
from .exceptions import UnsupportedFolderError

__all__ = [
    "FolderPipeline",
    "UnsupportedFolderError",
    "exclude_prompt",
    "needs_remote_code",
    "prompt_length",
    "read_pipeline",
]

_NO_CODE = "skembed never runs code from a model folder (trust_remote_code is never set)"


# -- module types ----------------------------------------------------------------------------
# Every name under which ST's own modules appear in a modules.json, old and new: ST 2-5 write
# "sentence_transformers.models.Pooling"; ST 6 writes the class's module path plus its name,
# "sentence_transformers.sentence_transformer.modules.pooling.Pooling". Nothing is imported.


def _type_names(cls: str, file: str, packages: tuple[str, ...]) -> dict[str, str]:
    names = {f"sentence_transformers.models.{cls}": cls}
    names[f"sentence_transformers.models.{cls}.{cls}"] = cls  # ST 2-5 module file named as class
    for package in packages:
        names[f"sentence_transformers.{package}.{cls}"] = cls
        names[f"sentence_transformers.{package}.{file}.{cls}"] = cls
    return names


_BOTH = ("base.modules", "sentence_transformer.modules")
MODULE_TYPES: dict[str, str] = {
    **_type_names("Transformer", "transformer", _BOTH),
    **_type_names("Pooling", "pooling", ("sentence_transformer.modules",)),
    **_type_names("Dense", "dense", _BOTH),
    **_type_names("Normalize", "normalize", _BOTH),
}
"""The modules.json ``type`` strings skembed reads, each mapped to its ST class name."""

# ST 6 Pooling's mode names, then skembed's name for each (skembed._pooling.POOLING_FUNCTIONS)
_POOLING_NAMES = {
    "cls": "cls",
    "max": "max",
    "mean": "mean",
    "mean_sqrt_len_tokens": "mean_sqrt_len",
    "weightedmean": "weighted_mean",
    "lasttoken": "last",
}
# old-layout flags, in the order ST concatenates them
_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# where ST 2-6 look for the Transformer module's config, in this order
_TRANSFORMER_CONFIGS = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)


@dataclass(frozen=True)
class FolderPipeline:
    """What an ST folder does after its transformer, as read by :func:`read_pipeline`.

    Attributes
    ----------
    pooling : str or None
        skembed's pooling name (``"mean"``, ``"max"``, ``"cls"``, ``"mean_sqrt_len"``,
        ``"weighted_mean"``, ``"last"``); None when the folder has no ``modules.json``.
    include_prompt : bool
        ST Pooling's ``include_prompt``: False leaves the prompt's tokens out of pooling
        (see :func:`prompt_length` and :func:`exclude_prompt`).
    dense : tuple of DenseLayer
        The Dense modules, in order.
    normalize : bool
        Whether ``modules.json`` lists a Normalize module (its folder may be absent).
    prompts : dict of str to str
        ``prompts`` of ``config_sentence_transformers.json``.
    default_prompt_name : str or None
        The prompt ST uses when ``encode`` is given none.
    do_lower_case : bool
        The Transformer module's ``do_lower_case`` (old layout; ST 6 does not write it).
    max_seq_length : int or None
        The Transformer module's ``max_seq_length`` (old layout). None: the tokenizer's own
        ``model_max_length`` (ST 6 writes the limit there), capped by the position embeddings.
    similarity_fn_name : str or None
        ``similarity_fn_name`` of ``config_sentence_transformers.json``.
    output_dim : int or None
        The dimension after the Dense layers; None when there are none (the encoder's hidden
        size).
    files : tuple of str
        Relative posix paths of every ST file read that can change a vector: put them into
        the model's fingerprint.
    """

    pooling: str | None = None
    include_prompt: bool = True
    dense: tuple[DenseLayer, ...] = ()
    normalize: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    do_lower_case: bool = False
    max_seq_length: int | None = None
    similarity_fn_name: str | None = None
    output_dim: int | None = None
    files: tuple[str, ...] = ()


def _read_json(path: Path, folder: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UnsupportedFolderError(
            f"{folder}: cannot read {path.relative_to(folder).as_posix()} ({e})"
        ) from e


def _unsupported_type(folder: Path, type_name: str) -> UnsupportedFolderError:
    return UnsupportedFolderError(
        f"{folder}: modules.json lists a module of type {type_name!r}, which skembed does not "
        f"run: it reads only sentence-transformers' own Transformer, Pooling, Dense and "
        f"Normalize modules, and {_NO_CODE}"
    )


def _pooling(folder: Path, sub: str) -> tuple[str, bool, str]:
    """Return (skembed pooling name, include_prompt, config path) of a Pooling module."""
    rel = f"{sub}/config.json" if sub else "config.json"
    if not (folder / rel).is_file():
        raise UnsupportedFolderError(
            f"{folder}: modules.json lists a Pooling module but {rel} is missing"
        )
    config = _read_json(folder / rel, folder)
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:  # old layout: one boolean per mode; none set means mean (as ST does)
        modes = [mode for key, mode in _LEGACY_POOLING_FLAGS.items() if config.get(key)]
        modes = modes or ["mean"]
    if len(modes) > 1:
        raise UnsupportedFolderError(
            f"{folder}: {rel} asks for several pooling modes at once ({', '.join(modes)}), "
            "which sentence-transformers concatenates; skembed pools with one mode per model"
        )
    if modes[0] not in _POOLING_NAMES:
        raise UnsupportedFolderError(
            f"{folder}: {rel} has pooling mode {modes[0]!r}; "
            f"expected one of {tuple(_POOLING_NAMES)}"
        )
    return _POOLING_NAMES[modes[0]], bool(config.get("include_prompt", True)), rel


def _check_io_names(folder: Path, rel: str, config: dict, what: str) -> None:
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") not in ("sentence_embedding", None):
            raise UnsupportedFolderError(
                f"{folder}: {rel} has {key}={config[key]!r}; skembed reads only a {what} of the "
                "pooled sentence embedding"
            )


def _load_weights(folder: Path, sub: str) -> tuple[dict[str, np.ndarray], str]:
    """Return the state dict of a module's weights and its relative path, safetensors first."""
    safetensors = folder / sub / "model.safetensors"
    if safetensors.is_file():
        from safetensors.numpy import load_file

        return load_file(str(safetensors)), f"{sub}/model.safetensors"
    pytorch = folder / sub / "pytorch_model.bin"
    if pytorch.is_file():
        import torch  # only old folders without safetensors get here

        state = torch.load(str(pytorch), map_location="cpu", weights_only=True)
        weights = {k: v.detach().float().numpy() for k, v in state.items()}
        return weights, f"{sub}/pytorch_model.bin"
    raise UnsupportedFolderError(
        f"{folder}: the Dense module {sub!r} has neither model.safetensors nor pytorch_model.bin"
    )


def _dense(folder: Path, sub: str) -> tuple[DenseLayer, list[str]]:
    rel = f"{sub}/config.json"
    if not (folder / rel).is_file():
        raise UnsupportedFolderError(
            f"{folder}: modules.json lists a Dense module but {rel} is missing"
        )
    config = _read_json(folder / rel, folder)
    _check_io_names(folder, rel, config, "Dense layer")
    if config.get("use_residual", False):
        raise UnsupportedFolderError(
            f"{folder}: {rel} has use_residual=true, "
            "a residual Dense layer skembed does not reproduce"
        )
    activation_path = config.get("activation_function", "torch.nn.modules.activation.Tanh")
    activation = None
    if isinstance(activation_path, str) and activation_path.startswith("torch."):
        activation = ACTIVATIONS.get(activation_path.rsplit(".", 1)[-1])
    if activation is None:
        raise UnsupportedFolderError(
            f"{folder}: {rel} has activation_function={activation_path!r}; skembed knows "
            f"torch.nn's {', '.join(ACTIVATIONS)}"
        )
    weights, weights_rel = _load_weights(folder, sub)
    if "linear.weight" not in weights:
        raise UnsupportedFolderError(f"{folder}: {weights_rel} has no 'linear.weight'")
    weight = np.ascontiguousarray(weights["linear.weight"], dtype=np.float32)
    bias = weights.get("linear.bias")
    if config.get("bias", True) and bias is None:
        raise UnsupportedFolderError(f"{folder}: {weights_rel} has no 'linear.bias'")
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=np.float32)
    return DenseLayer(weight=weight, bias=bias, activation=activation), [rel, weights_rel]


def read_pipeline(path: Path | str) -> FolderPipeline:
    """Return what the ST folder at path does after its transformer.

    Parameters
    ----------
    path : Path or str
        A local model folder. Without ``modules.json`` it is a plain Hugging Face folder:
        the result has ``pooling=None`` and nothing else (the caller's default applies).

    Returns
    -------
    FolderPipeline

    Raises
    ------
    UnsupportedFolderError
        For a module type other than ST's own Transformer, Pooling, Dense and Normalize
        (listed in :data:`MODULE_TYPES`): skembed never runs code from a model folder; for a
        folder saved as another kind of ST model (``model_type`` ``"SparseEncoder"``, ...);
        for several pooling modes at once, a Dense layer after Normalize, an unknown Dense
        activation, a residual Dense layer, and missing or unreadable module files.

    Notes
    -----
    ``needs_remote_code`` is a separate check: this function reads the ST files only.
    """
    folder = Path(path)
    if not (folder / "modules.json").is_file():
        return FolderPipeline()
    modules = _read_json(folder / "modules.json", folder)
    files = ["modules.json"]
    settings: dict[str, Any] = {}
    st_config_path = folder / "config_sentence_transformers.json"
    if st_config_path.is_file():
        st_config = _read_json(st_config_path, folder)
        files.append("config_sentence_transformers.json")
        model_type = st_config.get("model_type", "SentenceTransformer")
        if model_type != "SentenceTransformer":
            raise UnsupportedFolderError(
                f"{folder}: config_sentence_transformers.json says model_type={model_type!r}; "
                "skembed reads SentenceTransformer folders only"
            )
        settings["prompts"] = dict(st_config.get("prompts") or {})
        settings["default_prompt_name"] = st_config.get("default_prompt_name")
        settings["similarity_fn_name"] = st_config.get("similarity_fn_name")

    kinds = []
    for entry in modules:
        type_name = entry.get("type", "")
        if type_name not in MODULE_TYPES:
            raise _unsupported_type(folder, type_name)
        kinds.append((MODULE_TYPES[type_name], str(entry.get("path", "")).strip("/")))
    if [k for k, _ in kinds[:1]] != ["Transformer"] or [k for k, _ in kinds].count(
        "Transformer"
    ) > 1:
        raise UnsupportedFolderError(
            f"{folder}: modules.json must list one Transformer module, first; it lists "
            f"{[k for k, _ in kinds]}"
        )
    pooling_at = [i for i, (k, _) in enumerate(kinds) if k == "Pooling"]
    if pooling_at != [1]:
        raise UnsupportedFolderError(
            f"{folder}: modules.json must list one Pooling module right after the Transformer; "
            f"it lists {[k for k, _ in kinds]}"
        )

    transformer_sub = kinds[0][1]
    for name in _TRANSFORMER_CONFIGS:
        rel = f"{transformer_sub}/{name}" if transformer_sub else name
        if (folder / rel).is_file():
            config = _read_json(folder / rel, folder)
            files.append(rel)
            settings["do_lower_case"] = bool(config.get("do_lower_case", False))
            settings["max_seq_length"] = config.get("max_seq_length")
            break

    pooling, include_prompt, rel = _pooling(folder, kinds[1][1])
    files.append(rel)
    dense: list[DenseLayer] = []
    normalize = False
    for kind, sub in kinds[2:]:
        if kind == "Dense":
            if normalize:
                raise UnsupportedFolderError(
                    f"{folder}: modules.json lists a Dense module after Normalize; skembed "
                    "applies Dense layers, then Normalize"
                )
            layer, layer_files = _dense(folder, sub)
            dense.append(layer)
            files += layer_files
        else:  # Normalize: hub folders list "2_Normalize" without writing the folder
            normalize = True
            rel = f"{sub}/config.json" if sub else "config.json"
            if sub and (folder / rel).is_file():
                _check_io_names(folder, rel, _read_json(folder / rel, folder), "Normalize")
                files.append(rel)
    return FolderPipeline(
        pooling=pooling,
        include_prompt=include_prompt,
        dense=tuple(dense),
        normalize=normalize,
        output_dim=dense[-1].out_features if dense else None,
        files=tuple(files),
        **settings,
    )


def prompt_length(prompt_ids: Sequence[int], special_ids: Collection[int]) -> int:
    """Return how many leading token positions ST leaves out of pooling for a prompt.

    ST (``Transformer._get_prompt_length``) tokenizes the prompt alone, exactly as it
    tokenizes texts (with the special tokens), takes the length of its ``input_ids`` and
    subtracts one when the last id is a special token (the trailing ``[SEP]``/``</s>``/EOS
    that is not there when a text follows). A leading ``[CLS]``/``<s>`` is counted, so it is
    left out of pooling too.

    Parameters
    ----------
    prompt_ids : sequence of int
        ``tokenizer(prompt)["input_ids"]``, special tokens added as for the texts.
    special_ids : collection of int
        ``tokenizer.all_special_ids``.

    Returns
    -------
    int
        The count for :func:`exclude_prompt`; 0 leaves nothing out (as ST does).

    Examples
    --------
    >>> prompt_length([101, 23, 24, 102], special_ids={0, 100, 101, 102})  # [CLS] q : [SEP]
    3
    >>> prompt_length([23, 24, 151643], special_ids={151643})  # q : <|endoftext|>
    2
    """
    n = len(prompt_ids)
    if n and prompt_ids[-1] in set(special_ids):
        n -= 1
    return n


def exclude_prompt(mask, n_prompt: int):
    """Return a copy of the attention mask with the prompt's positions set to 0, as ST does.

    In each row the first ``n_prompt`` positions from the first real token are zeroed:
    positions ``0 .. n_prompt - 1`` with right padding, and the left padding plus the next
    ``n_prompt`` positions with left padding (ST's ``Pooling._exclude_prompt_from_mask``).

    Parameters
    ----------
    mask : ndarray or torch.Tensor of shape (batch, tokens)
        The attention mask (1 for real tokens).
    n_prompt : int
        :func:`prompt_length` of the prompt; 0 returns an unchanged copy.

    Returns
    -------
    ndarray or torch.Tensor, like ``mask``

    Examples
    --------
    >>> exclude_prompt(np.array([[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]]), 2)
    array([[0, 0, 1, 1, 0],
           [0, 0, 0, 1, 1]])
    """
    out = mask.clone() if hasattr(mask, "clone") else np.array(mask, copy=True)
    if not n_prompt:
        return out
    first_real = np.asarray(out != 0).argmax(axis=1)
    for row, start in enumerate(first_real.tolist()):
        out[row, : start + n_prompt] = 0
    return out


def needs_remote_code(path: Path | str) -> str | None:
    """Return why the folder at path would need code of its own to run, or None.

    A folder needs its own code (``trust_remote_code`` switched on in transformers and ST) when
    ``config.json`` or ``tokenizer_config.json`` has an ``auto_map`` (the architecture or
    tokenizer class is a Python file in the folder), or when ``modules.json`` lists a module
    type outside the ``sentence_transformers.`` namespace. skembed never runs such code:
    the caller refuses the folder with this reason.

    Parameters
    ----------
    path : Path or str
        A local model folder.

    Returns
    -------
    str or None
        A sentence naming the file and the entry, ending with what skembed does; None when
        no code of the folder is needed.
    """
    folder = Path(path)
    for name in ("config.json", "tokenizer_config.json"):
        file = folder / name
        if not file.is_file():
            continue
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # an unreadable config fails later, with its own error
        if isinstance(config, dict) and config.get("auto_map"):
            return (
                f"{folder}: {name} has an auto_map entry ({config['auto_map']!r}): the model "
                f"needs Python code shipped in its folder, and {_NO_CODE}; use a model whose "
                "architecture transformers ships"
            )
    modules = folder / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        for entry in entries if isinstance(entries, list) else []:
            type_name = str(entry.get("type", ""))
            if not type_name.startswith("sentence_transformers."):
                return (
                    f"{folder}: modules.json lists a module of type {type_name!r}, code of "
                    f"the folder's own, and {_NO_CODE}"
                )
    return None
