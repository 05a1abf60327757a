"""``skembed similarity``, ``tokenize`` and ``info``: look at texts and at the model."""

from __future__ import annotations

from pathlib import Path

from .common import UsageError, add_command, fitted_embedder, flat


def add_similarity(subparsers, common) -> None:
    """Declare ``skembed similarity``."""
    p = add_command(
        subparsers,
        common,
        "similarity",
        run_similarity,
        help="print the cosine similarity matrix of two or more sentences",
        description="Embed each TEXT and print the matrix of their cosine similarities.",
    )
    p.add_argument("texts", nargs="+", metavar="TEXT", help="two or more texts")


def run_similarity(args) -> int:
    """Run ``skembed similarity``; return the exit status."""
    from .._vectors import unit_rows

    if len(args.texts) < 2:
        raise UsageError("similarity compares texts: give two or more, e.g. 'a cat' 'a dog'")
    X = unit_rows(fitted_embedder(args, args.texts).transform(args.texts), "vectors")
    S = X @ X.T
    for i, text in enumerate(args.texts):
        print(f"[{i}] {flat(text)}")
    width = max(6, len(f"[{len(S) - 1}]"))
    print("\n" + " " * width + "".join(f"{f'[{j}]':>8}" for j in range(len(S))))
    for i, row in enumerate(S):
        print(f"{f'[{i}]':<{width}}" + "".join(f"{s:8.3f}" for s in row))
    return 0


def add_tokenize(subparsers, common) -> None:
    """Declare ``skembed tokenize``."""
    p = add_command(
        subparsers,
        common,
        "tokenize",
        run_tokenize,
        help="show the tokens and ids the model sees, and where a long text is cut",
        description="Print the tokens and ids of each TEXT as the encoder sees them; for a "
        "text longer than --max-length, where it is truncated.",
    )
    p.add_argument("texts", nargs="+", metavar="TEXT", help="one or more texts")


def run_tokenize(args) -> int:
    """Run ``skembed tokenize``: the tokens the encoder sees, and where a long text is cut."""
    from .._persistence import loaded_model
    from .._tokens import truncation

    embedder = fitted_embedder(args, args.texts)
    loaded = loaded_model(embedder)
    for number, tok in enumerate(embedder.tokenize(args.texts)):
        if number:
            print()
        print(f"text: {tok.text!r}")
        print(f"{len(tok.tokens)} tokens (max_length {embedder.max_length_})")
        cut = truncation(loaded, tok, embedder.prompt_) if tok.truncated else None
        width = max(len(str(i)) for i in tok.ids)
        for position, (token, token_id) in enumerate(zip(tok.tokens, tok.ids, strict=True)):
            if cut is not None and position == cut.position:
                print(
                    f"  --- truncated here: {cut.total - cut.kept:,} of {cut.total:,} text tokens "
                    f"dropped; the kept text ends at character {cut.end:,}: ...{cut.tail!r}"
                )
            print(f"  {position:>5}  {token_id:>{width}}  {token}")
    return 0


def add_info(subparsers, common) -> None:
    """Declare ``skembed info``."""
    add_command(
        subparsers,
        common,
        "info",
        run_info,
        help="show the model: folder, architecture, pooling, prompts, dense layers, "
        "normalisation, dimension, max length, fingerprint, device",
        description="Load the model chosen by the model options and describe it.",
    )


def run_info(args) -> int:
    """Run ``skembed info``: what the model options load, described."""
    from .._devices import choose_device
    from .._models import architecture
    from .._persistence import loaded_model

    embedder = fitted_embedder(args, ["info"])
    pipeline = loaded_model(embedder).pipeline
    include = "" if pipeline.include_prompt else ", prompt tokens left out"
    dense = [f"{d.weight.shape[1]} -> {d.out_features} {d.activation}" for d in pipeline.dense]
    rows = [
        ("model", args.model),
        ("folder", embedder.model_path_),
        ("found as", embedder.model_origin_),
        ("architecture", architecture(Path(embedder.model_path_))),
        ("dimension", embedder.embedding_dim_),
        ("max length", f"{embedder.max_length_} tokens"),
        ("layers", f"{embedder.n_layers_} (0 is the embedding output)"),
        ("pooling", f"{embedder.pooling_}{include}"),
        ("dense", "; ".join(dense) or "none"),
        ("normalize", "unit length" if embedder.normalize_ else "no"),
        ("prompt", repr(embedder.prompt_) if embedder.prompt_ else "none"),
        (
            "prompts",
            ", ".join(f"{k}={v!r}" for k, v in sorted(embedder.prompts_.items())) or "none",
        ),
        ("fingerprint", f"sha256 {embedder.fingerprint_}"),
        ("device", choose_device(embedder.device)),
    ]
    for key, value in rows:
        print(f"{key:<13} {value}")
    return 0


COMMANDS = (add_similarity, add_tokenize, add_info)
