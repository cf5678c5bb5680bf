"""Losses of masked and predictive pre-training: MAE's pixel loss and I-JEPA's feature loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_losses._checks import check_tensor, compute_dtype

__all__ = ["IJEPALoss", "MAELoss"]

#: eps of the per-patch target normalisation, as the official MAE code.
NORM_PIX_EPS = 1e-6


class MAELoss(nn.Module):
    """MAE's pixel loss as the official code (facebookresearch/mae ``MaskedAutoencoderViT``).

    ::

        target = (x - mean(x)) / sqrt(var(x) + 1e-6)   per patch, if norm_pix_loss (unbiased var)
        loss   = sum_{n,l} mask[n, l] * mean_p (pred - target)^2 / sum_{n,l} mask[n, l]

    The mean squared error of each patch is averaged over the masked (removed) patches only; the
    target is detached. The loss is this rank's mean: under DDP the averaged gradient is that of the
    global batch when every rank masks the same number of patches (MAE's random masking does).

    Args:
        norm_pix_loss: Normalise each target patch by its own mean and variance (MAE's default
            for its best results).

    Example:
        >>> pred, target = torch.randn(2, 16, 48, requires_grad=True), torch.randn(2, 16, 48)
        >>> mask = torch.rand(2, 16) < 0.75  # True = masked (removed) patch
        >>> loss = MAELoss()(pred, target, mask)
    """

    def __init__(self, norm_pix_loss: bool = True) -> None:
        super().__init__()
        self.norm_pix_loss = bool(norm_pix_loss)

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return f"norm_pix_loss={self.norm_pix_loss}"

    def forward(
        self, pred: torch.Tensor, target_patches: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            pred: ``[N, L, P]`` decoder predictions of every patch's pixels.
            target_patches: ``[N, L, P]`` the image's patches (patchified pixels).
            mask: Bool ``[N, L]``, True where the patch was masked (removed from the encoder).

        Returns:
            Scalar loss, float32 for half-precision inputs.
        """
        owner = type(self).__name__
        check_tensor(owner, "pred", pred, 3, "[N, L, P]")
        check_tensor(owner, "target_patches", target_patches, 3, "[N, L, P]")
        if pred.shape != target_patches.shape:
            raise ValueError(
                f"{owner}: pred {tuple(pred.shape)} and target_patches "
                f"{tuple(target_patches.shape)} must have the same shape [N, L, P]; patchify the "
                "image with the decoder's patch size and predict every patch"
            )
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"{owner}: mask must be a bool tensor [N, L] (True = masked patch), got {got}; "
                "cast a 0/1 mask with .bool()"
            )
        if mask.shape != pred.shape[:2]:
            raise ValueError(
                f"{owner}: mask {tuple(mask.shape)} must be [N, L] = {tuple(pred.shape[:2])}, "
                "one entry per patch of pred"
            )
        if self.norm_pix_loss and pred.shape[2] < 2:
            raise ValueError(
                f"{owner}: norm_pix_loss needs at least 2 values per patch for a variance, got "
                f"P={pred.shape[2]}; pass norm_pix_loss=False"
            )
        count = mask.sum()
        if int(count) == 0:
            raise ValueError(
                f"{owner}: the mask has no masked patch; the loss is taken on masked patches "
                "only (True = masked), so mask at least one"
            )
        dtype = compute_dtype(pred, target_patches)
        target = target_patches.detach().to(dtype)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + NORM_PIX_EPS) ** 0.5
        per_patch = (pred.to(dtype) - target).pow(2).mean(dim=-1)  # [N, L]
        return (per_patch * mask).sum() / count


class IJEPALoss(nn.Module):
    """I-JEPA's loss on layer-normalised target features (Assran et al., CVPR 2023).

    ``targets`` are normalised over the feature dimension (``F.layer_norm`` without affine, as the
    official ``src/train.py``) and detached, then compared with ``predictions`` by the mean over
    all elements of the squared error (``loss_type="l2"``, the paper's L2 loss) or of
    ``F.smooth_l1_loss`` (``loss_type="smooth_l1"``, what the official code runs). The loss is
    this rank's mean (the official code only all-reduces it for logging): under DDP the averaged
    gradient is that of the global batch when every rank predicts as many target tokens.

    Args:
        loss_type: ``"l2"`` (mean squared error) or ``"smooth_l1"`` (Huber with beta 1).

    Example:
        >>> pred = torch.randn(8, 12, 32, requires_grad=True)  # [B * n_targets, tokens, D]
        >>> target = torch.randn(8, 12, 32)  # the EMA encoder's features of the same tokens
        >>> loss = IJEPALoss()(pred, target)
    """

    def __init__(self, loss_type: str = "l2") -> None:
        super().__init__()
        if loss_type not in ("l2", "smooth_l1"):
            raise ValueError(
                f"{type(self).__name__}: loss_type must be 'l2' (the paper) or 'smooth_l1' (the "
                f"official code), got {loss_type!r}"
            )
        self.loss_type = loss_type

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return f"loss_type={self.loss_type!r}"

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            predictions: ``[..., D]`` the predictor's outputs for the target tokens.
            targets: ``[..., D]`` the target encoder's features of the same tokens (raw: they are
                layer-normalised and detached here).

        Returns:
            Scalar loss, float32 for half-precision inputs.
        """
        owner = type(self).__name__
        for name, t in (("predictions", predictions), ("targets", targets)):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() < 1:
                got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t)
                raise ValueError(
                    f"{owner}: {name} must be a floating-point tensor [..., D], got {got}"
                )
        if predictions.shape != targets.shape:
            raise ValueError(
                f"{owner}: predictions {tuple(predictions.shape)} and targets "
                f"{tuple(targets.shape)} must have the same shape [..., D]; select the target "
                "encoder's features at the predicted tokens (and repeat them per context mask)"
            )
        if predictions.numel() == 0:
            raise ValueError(f"{owner}: got empty predictions; pass at least one target token")
        dtype = compute_dtype(predictions, targets)
        target = targets.detach().to(dtype)
        target = F.layer_norm(target, (target.shape[-1],))
        pred = predictions.to(dtype)
        if self.loss_type == "smooth_l1":
            return F.smooth_l1_loss(pred, target)
        return F.mse_loss(pred, target)
