"""Multi-layer perceptrons for projectors, predictors and probes."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "identity": nn.Identity,
}
_NORMS = ("batch", "layer", None)


def _norm(kind: str | None, features: int, affine: bool = True) -> nn.Module | None:
    if kind is None:
        return None
    if kind == "batch":
        return nn.BatchNorm1d(features, affine=affine)
    if kind == "layer":
        return nn.LayerNorm(features, elementwise_affine=affine)
    raise ValueError(f"Unknown norm {kind!r}; use one of {_NORMS}.")


class MLP(nn.Sequential):
    """``Linear -> norm -> activation`` per hidden layer, then a last ``Linear``.

    Args:
        in_features: Input features.
        hidden: Width of the hidden layer(s): an int or a list (empty list: a single Linear).
        out_features: Output features.
        norm: ``"batch"``, ``"layer"`` or ``None`` after each hidden Linear (the Linear then has
            no bias when a norm follows it).
        activation: One of ``relu``, ``gelu``, ``silu``, ``tanh``, ``leaky_relu``, ``elu``,
            ``identity``.
        dropout: Dropout probability after each hidden activation.
        last_norm: Optional norm after the last Linear (SimSiam's projector: ``"batch"``).
        last_norm_affine: Whether that last norm has learnable scale and shift.

    Example:
        >>> projector = MLP(512, [2048, 2048], 128)
        >>> projector.out_features
        128
    """

    def __init__(
        self,
        in_features: int,
        hidden: int | Sequence[int],
        out_features: int,
        norm: str | None = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        last_norm: str | None = None,
        last_norm_affine: bool = True,
    ) -> None:
        if norm not in _NORMS or last_norm not in _NORMS:
            raise ValueError(
                f"Unknown norm {norm if norm not in _NORMS else last_norm!r}; use {_NORMS}."
            )
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {activation!r}; use one of {', '.join(_ACTIVATIONS)}."
            )
        widths = [hidden] if isinstance(hidden, int) else list(hidden)
        layers: list[nn.Module] = []
        previous = in_features
        for width in widths:
            layers.append(nn.Linear(previous, width, bias=norm is None))
            norm_layer = _norm(norm, width)
            if norm_layer is not None:
                layers.append(norm_layer)
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            previous = width
        layers.append(nn.Linear(previous, out_features, bias=last_norm is None))
        final_norm = _norm(last_norm, out_features, affine=last_norm_affine)
        if final_norm is not None:
            layers.append(final_norm)
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = out_features
