"""Reconstruction terms of the ELBO: the pooled decoder-variance MLE ("ARELBO") and a fixed-σ² Gaussian.

Notation for one batch (one optimisation step): predictions x̂ and targets x with B samples; an
optional mask marks unpadded elements.

    SSE = Σ_valid (x̂ − x)²          N = number of valid elements        D = N / B   (elements per sample)

**ARELBO** (SQ-VAE reference code, Lin et al. 2021): the Gaussian decoder variance is replaced by its
closed-form maximum-likelihood estimate σ̂² = SSE / N, ONE value pooled over the whole batch, and the
per-sample negative log-likelihood becomes, up to constants,

    J_rec = (D / 2) · log σ̂²                      (full NLL: (D/2) · (log 2πσ̂² + 1))

with gradient ∂J_rec/∂x̂ = (D/2) · 2(x̂ − x) / SSE = (N/B) · (x̂ − x) / SSE. A per-sample log,
mean_b (D_b/2) log(SSE_b/D_b), would weight each sample's error by 1/SSE_b, so a near-silent crop
would dominate the batch: this module never does that.

Under DDP (``torch.distributed`` initialised, world size R > 1), SSE, N and B are all-reduced to
SSE_g, N_g, B_g (D_g = N_g / B_g). The returned tensor has the value (D_g/2)·log(SSE_g/N_g) and, on
rank r, the gradient R·(D_g/2)·∇SSE_r / SSE_g; DDP averages gradients over ranks, which yields exactly
the gradient of the global objective (D_g/2)·∇SSE_g / SSE_g. Ranks with more or fewer samples are
handled (B_g is summed, not assumed R·B_r); the latent terms, which DDP also averages, need equal
per-rank batch sizes to be exact, as usual. The all-reduce happens only when a gradient is taken
(see :func:`arelbo`'s ``distributed``): evaluation under ``no_grad`` pools over the local batch.

**Fixed σ²** (VQ/RQ baselines; the SQ-VAE paper tuned VQ-VAE's σ² over {1e-2, 1e-1, 1, 10}):

    J_rec = SSE / (2σ² B)                          (full NLL adds (D/2) · log 2πσ²)

Both are computed in float32 (float64 inputs stay float64) with autocast disabled.

**Categorical data** (images as class maps: 256 grey levels, 19 face-mask classes; SQ-VAE App. E.3).
The target is the one-hot encoder input ``(B, C, *S)``; its argmax is the class map.

* ``categorical`` (the "naive" categorical decoder): the decoder emits ``C`` logits per position and
  ``J_rec = Σ_positions CE(logits, class) / B``;
* ``vmf_categorical``: the decoder emits ``F`` channels, normalised onto the sphere, scored by
  :class:`~sqcodec.quantize.VmfCategoricalLikelihood` (trainable κ, fixed class vectors, SQ-VAE eq. 14).

For both, ``sigma2`` / ``mse`` report the squared error of the predicted class index scaled to
``[0, 1]`` (``class / (C - 1)``: the grey-level MSE for 256-way pixels), and ``stats`` adds the pixel
``accuracy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ReconstructionResult:
    """loss: the scalar term to add to the objective. sse, count, batch: this rank's SSE, N and B
    (detached). sigma2: the pooled MLE σ̂² = SSE_g / N_g (global under DDP). mse: this rank's SSE / N."""

    loss: Tensor
    sse: Tensor
    count: Tensor
    batch: int
    sigma2: float
    mse: float
    stats: dict[str, float] = field(default_factory=dict)


def element_mask(mask: Tensor | None, like: Tensor) -> Tensor | None:
    """Broadcast a mask to ``like``'s shape as float weights.

    Accepts an element mask of ``like``'s shape, or a ``(B, T)`` frame mask over ``like``'s LAST axis
    (``(B, C, T)`` or ``(B, 1, F, T)`` features), or anything broadcastable to ``like``.
    """
    if mask is None:
        return None
    if mask.shape != like.shape and mask.dim() == 2 and like.dim() > 2:
        if mask.shape != (like.shape[0], like.shape[-1]):
            raise ValueError(
                f"frame mask {tuple(mask.shape)} does not match features {tuple(like.shape)} (B, ..., T)"
            )
        mask = mask.reshape(mask.shape[0], *([1] * (like.dim() - 2)), mask.shape[1])
    return mask.to(like.dtype).expand_as(like)


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def sum_squared_error(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(SSE, N)`` over the valid elements, in float32 or wider, autocast disabled."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        dtype = _compute_dtype(pred)
        err = (pred.to(dtype) - target.to(dtype)) ** 2
        w = element_mask(mask, err)
        if w is None:
            return err.sum(), torch.tensor(float(err.numel()), dtype=dtype, device=err.device)
        return (err * w).sum(), w.sum()


def _distributed(group, pred: Tensor, distributed: bool | None) -> bool:
    if distributed is False:
        return False
    ddp = dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1
    if distributed is None:
        # auto: only where a gradient will flow. Evaluation under no_grad (possibly on one rank
        # only) must not enter a collective, and then pools over this rank's batch.
        return ddp and torch.is_grad_enabled() and pred.requires_grad
    if not ddp:
        raise RuntimeError("distributed=True but torch.distributed is not initialised with world size > 1")
    return True


def arelbo(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    group=None,
    distributed: bool | None = None,
) -> ReconstructionResult:
    """ARELBO reconstruction term ``(D/2) · log(SSE/N)`` with one σ̂² pooled over the batch (and over
    ranks under DDP, see the module docstring). ``mask``: ``(B, T)`` frame mask or element mask.

    ``distributed``: ``None`` (auto) all-reduces over ``group`` when ``torch.distributed`` is
    initialised with world size > 1 AND a gradient is being taken (grad mode on, ``pred`` requires
    grad), so every rank must call it in the same training steps; under ``no_grad`` (validation,
    possibly on rank 0 only) it pools over the local batch and enters no collective. ``True`` forces
    the all-reduce, ``False`` disables it.
    """
    batch = pred.shape[0]
    sse, count = sum_squared_error(pred, target, mask)
    tiny = torch.finfo(sse.dtype).tiny
    with torch.autocast(device_type=pred.device.type, enabled=False):
        if not _distributed(group, pred, distributed):
            # an all-masked batch gives N = 0 and a zero loss (clamps avoid 0/0 and log 0)
            sigma2 = sse / count.clamp_min(1)
            loss = 0.5 * (count / batch) * torch.log(sigma2.clamp_min(tiny))
            s2 = float(sigma2.detach())
            return ReconstructionResult(loss, sse.detach(), count, batch, s2, s2)
        world = dist.get_world_size(group)
        b_local = torch.tensor(float(batch), dtype=sse.dtype, device=sse.device)
        totals = torch.stack([sse.detach(), count, b_local])
        dist.all_reduce(totals, op=dist.ReduceOp.SUM, group=group)
        sse_g, n_g, b_g = totals.unbind()
        half_d = 0.5 * n_g / b_g
        sigma2_g = sse_g / n_g.clamp_min(1)
        value = half_d * torch.log(sigma2_g.clamp_min(tiny))
        loss = value + world * half_d * (sse - sse.detach()) / sse_g.clamp_min(tiny)
        mse = float(sse.detach() / count.clamp_min(1))
        return ReconstructionResult(loss, sse.detach(), count, batch, float(sigma2_g), mse)


def fixed_variance(
    pred: Tensor, target: Tensor, sigma2: float = 1.0, mask: Tensor | None = None
) -> ReconstructionResult:
    """Fixed-σ² Gaussian term ``SSE / (2σ² B)`` (constants omitted). Per-sample, batch-averaged, so
    DDP's gradient averaging is already exact (for equal per-rank batch sizes)."""
    if sigma2 <= 0:
        raise ValueError(f"sigma2 must be positive, got {sigma2}")
    batch = pred.shape[0]
    sse, count = sum_squared_error(pred, target, mask)
    with torch.autocast(device_type=pred.device.type, enabled=False):
        loss = sse / (2.0 * sigma2 * batch)
    mse = float(sse.detach() / count.clamp_min(1))
    return ReconstructionResult(loss, sse.detach(), count, batch, mse, mse)


def _class_result(loss: Tensor, pred_class: Tensor, labels: Tensor, num_classes: int) -> ReconstructionResult:
    """Result of a categorical term: the class-index squared error (scaled to [0, 1]) and accuracy."""
    with torch.no_grad():
        scale = float(max(num_classes - 1, 1))
        err = ((pred_class.double() - labels.double()) / scale).pow(2)
        sse, count = err.sum(), torch.tensor(float(err.numel()), dtype=torch.float64)
        mse = float(sse / count)
        acc = float((pred_class == labels).double().mean())
    return ReconstructionResult(loss, sse, count, labels.shape[0], mse, mse, {"accuracy": acc})


def categorical(logits: Tensor, target: Tensor) -> ReconstructionResult:
    """Naive categorical decoder: ``Σ CE(logits, argmax target) / B``, one-hot ``target`` ``(B, C, *S)``."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and one-hot target {tuple(target.shape)} differ")
    labels = target.argmax(1)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        ce = F.cross_entropy(logits.float(), labels, reduction="sum") / logits.shape[0]
    return _class_result(ce, logits.detach().argmax(1), labels, logits.shape[1])


class ReconstructionLoss(nn.Module):
    """Config-selected reconstruction term: ``kind="arelbo"``, ``"mse"`` (fixed ``sigma2``),
    ``"categorical"`` or ``"vmf_categorical"`` (``num_classes`` classes, see the module docstring).

    The result's ``sigma2`` is the pooled MLE σ̂² = SSE/N (global under DDP for ARELBO), which
    is the telemetry worth logging in either Gaussian mode; the fixed σ² of the "mse" mode is
    ``self.sigma2``. ``vmf`` holds the trainable vMF likelihood (its κ is a model parameter).
    """

    KINDS = ("arelbo", "mse", "categorical", "vmf_categorical")

    def __init__(
        self,
        kind: str = "arelbo",
        sigma2: float = 1.0,
        distributed: bool | None = None,
        num_classes: int | None = None,
        vmf: dict | None = None,
    ) -> None:
        super().__init__()
        self.distributed = distributed
        if kind not in self.KINDS:
            raise ValueError(f"unknown reconstruction type {kind!r}; expected one of {self.KINDS}")
        self.kind = kind
        self.sigma2 = float(sigma2)
        self.num_classes = int(num_classes) if num_classes else None
        if kind in ("categorical", "vmf_categorical") and not self.num_classes:
            raise ValueError(f"reconstruction type {kind!r} needs num_classes")
        self.vmf = None
        if kind == "vmf_categorical":
            from .quantize.vmf import VmfCategoricalLikelihood

            self.vmf = VmfCategoricalLikelihood(self.num_classes, **(vmf or {}))

    @property
    def categorical(self) -> bool:
        return self.num_classes is not None

    def output_channels(self, target_channels: int) -> int:
        """Channels the decoder must emit for targets with ``target_channels`` channels."""
        return self.vmf.feature_dim if self.vmf is not None else target_channels

    def predict(self, pred: Tensor) -> Tensor:
        """The decoder output as data: ``pred`` itself (Gaussian) or the class map ``(B, *S)`` (long)."""
        if self.vmf is not None:
            return self.vmf.predict(pred)
        return pred.argmax(1) if self.categorical else pred

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> ReconstructionResult:
        if self.kind == "arelbo":
            return arelbo(pred, target, mask, distributed=self.distributed)
        if self.kind == "mse":
            return fixed_variance(pred, target, self.sigma2, mask)
        if mask is not None:
            raise ValueError("the categorical reconstruction terms take no padding mask")
        if self.kind == "categorical":
            return categorical(pred, target)
        labels = target.argmax(1)
        loss = self.vmf(pred, labels)
        res = _class_result(loss, self.vmf.predict(pred.detach()), labels, self.num_classes)
        res.stats["kappa_x"] = float(self.vmf.kappa().detach())
        return res

    def extra_repr(self) -> str:
        extra = f", sigma2={self.sigma2}" if self.kind == "mse" else ""
        extra += f", num_classes={self.num_classes}" if self.categorical else ""
        return f"kind={self.kind!r}{extra}"


def build_reconstruction(cfg: dict | None) -> ReconstructionLoss:
    """``{"type": "arelbo"}`` (default when ``cfg`` is None), ``{"type": "mse", "sigma2": 1.0}``,
    ``{"type": "categorical", "num_classes": 256}`` or ``{"type": "vmf_categorical", "num_classes": 19,
    "class_vectors": "onehot", "log_kappa_inv_init": -4.6}``."""
    cfg = dict(cfg or {"type": "arelbo"})
    kind = cfg.pop("type", "arelbo")
    sigma2 = cfg.pop("sigma2", 1.0)
    num_classes = cfg.pop("num_classes", None)
    vmf = {k: cfg.pop(k) for k in ("class_vectors", "log_kappa_inv_init") if k in cfg}
    if cfg:
        raise ValueError(f"unknown reconstruction options: {sorted(cfg)}")
    if vmf and kind != "vmf_categorical":
        raise ValueError(f"options {sorted(vmf)} belong to the vmf_categorical reconstruction")
    return ReconstructionLoss(kind, sigma2, num_classes=num_classes, vmf=vmf or None)
