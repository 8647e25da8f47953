"""The codec model: encoder + quantizer + decoder, trained on the ELBO (reconstruction + latent terms).

    h = encoder(x)                    (B, d_b + log_var_channels, *S)
    z, log_var = h[:, :d_b], h[:, d_b:]   (the variance head only for Gaussian SQ types II-IV)
    q = quantizer(z, log_var, latent_mask)
    x̂ = decoder(q.quantized, speaker)
    loss = J_rec(x̂, target) + q.loss

``J_rec`` is the pooled-σ̂² ARELBO term or a fixed-σ² Gaussian (:mod:`sqcodec.objective`); ``q.loss``
holds the quantizer's per-sample latent terms. Both are per-sample, batch-averaged quantities.
Networks: :mod:`sqcodec.nets`; quantizers: :mod:`sqcodec.quantize`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .nets import build_decoder, build_encoder
from .objective import ReconstructionLoss, build_reconstruction
from .quantize.temperature import TemperatureSchedule


@dataclass
class ModelOutput:
    """loss: scalar objective. reconstruction: decoder output x̂ (same shape as ``target``). target:
    the features x̂ is scored against (``x[..., 1:-1]`` for the speech nets, else ``x``). terms: named
    scalar parts of ``loss`` (``"reconstruction"`` plus the quantizer's terms). stats: floats, the
    quantizer's telemetry plus ``"sigma2"`` (pooled MLE σ̂² = SSE/N, global under DDP) and ``"mse"``
    (this rank's SSE/N over unpadded elements). codes: the quantizer's deterministic argmax codes."""

    loss: Tensor
    reconstruction: Tensor
    target: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    codes: Tensor | None = None


class CodecModel(nn.Module):
    """Encoder + quantizer + decoder with the ELBO objective.

    ``forward(batch)`` is the training/validation objective: stochastic in training mode (Gumbel
    sampling, jitter), deterministic in eval mode. ``encode``/``decode``/``reconstruct`` are the
    deterministic inference path: they run every submodule in eval mode (BatchNorm running stats,
    argmax codes, no jitter) and restore the previous train/eval flags afterwards.
    """

    def __init__(
        self,
        encoder: nn.Module,
        quantizer: nn.Module,
        decoder: nn.Module,
        reconstruction: ReconstructionLoss | None = None,
        temperature: TemperatureSchedule | None = None,
        config: dict | None = None,
    ) -> None:
        super().__init__()
        d_b, lv = quantizer.dim, quantizer.log_var_channels
        multi = hasattr(quantizer, "groups")  # the hierarchical quantizers take bottom-up feature lists
        if multi != bool(getattr(encoder, "multi_resolution", False)):
            raise ValueError(
                "a hierarchical quantizer needs a multi-resolution encoder (type hqvae, resolutions > 1), "
                "and a flat quantizer a single-output encoder"
            )
        if multi:
            want = [g.feature_channels for g in quantizer.groups]
            if list(encoder.feature_channels) != want:
                raise ValueError(
                    f"encoder features have {list(encoder.feature_channels)} channels; the quantizer's "
                    f"feature_channels are {want}"
                )
        elif encoder.out_channels != d_b + lv:
            raise ValueError(
                f"encoder outputs {encoder.out_channels} channels; the quantizer needs d_b + log_var_channels"
                f" = {d_b} + {lv}"
            )
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.reconstruction_loss = reconstruction or ReconstructionLoss("arelbo")
        self.temperature_schedule = temperature or TemperatureSchedule()
        self.config = copy.deepcopy(config) if config is not None else None
        self.step = 0
        self.set_step(0)

    # ------------------------------------------------------------------ training
    def set_step(self, step: int) -> float:
        """Set the Gumbel-softmax temperature for optimisation step ``step``; returns it."""
        self.step = int(step)
        tau = self.temperature_schedule(self.step)
        self.quantizer.set_temperature(tau)
        return tau

    def _split(self, h: Tensor | list[Tensor]) -> tuple[Tensor | list[Tensor], Tensor | None]:
        d_b = self.quantizer.dim
        if self.quantizer.log_var_channels and isinstance(h, Tensor):
            return h[:, :d_b], h[:, d_b:]
        return h, None

    def _speaker(self, speaker: Tensor | None) -> Tensor | None:
        return speaker if getattr(self.decoder, "uses_speaker", False) else None

    def forward(self, batch: dict) -> ModelOutput:
        """``batch["x"]``: features, ``(B, 80, T)`` (speech: ``T + 2`` input frames) or ``(B, 1, 80, T)``;
        optional ``batch["mask"]`` ``(B, T)`` valid frames (over the input frames or the target frames)
        and ``batch["speaker"]`` ``(B,)`` long."""
        x = batch["x"]
        mask = batch.get("mask")
        speaker = self._speaker(batch.get("speaker"))

        h = self.encoder(x)
        z, log_var = self._split(h)
        target = self.encoder.target(x)
        target_mask = latent_mask = lengths = None
        if mask is not None:
            target_mask = self.encoder.target_mask(mask.to(torch.bool), x)
            latent_mask = self.encoder.latent_mask(target_mask, tuple(z.shape[2:]))
            lengths = target_mask.sum(-1)

        q = self.quantizer(z, log_var=log_var, mask=latent_mask)
        y = self.decoder(q.quantized, speaker=speaker, lengths=lengths)
        y = y[..., : target.shape[-1]]
        want = (target.shape[0], self.reconstruction_loss.output_channels(target.shape[1]), *target.shape[2:])
        if tuple(y.shape) != want:
            raise RuntimeError(f"decoder output {tuple(y.shape)} does not match target {tuple(target.shape)}")

        rec = self.reconstruction_loss(y, target, target_mask)
        loss = rec.loss + q.loss
        terms = {"reconstruction": rec.loss, **q.terms}
        stats = {**q.stats, "sigma2": rec.sigma2, "mse": rec.mse, **rec.stats}
        stats["z_power"] = _latent_power(z if isinstance(z, Tensor) else q.encoded[-1], latent_mask)
        return ModelOutput(
            loss=loss, reconstruction=y, target=target, terms=terms, stats=stats, codes=q.codes
        )

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        flags = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            yield
        finally:
            for m, flag in flags:
                m.training = flag

    def encode(self, x: Tensor, layers: int | None = None) -> Tensor:
        """Deterministic codes ``(B, L', *S)`` for features ``x`` (the first ``layers`` layers)."""
        with self._eval_mode():
            z, log_var = self._split(self.encoder(x))
            return self.quantizer.encode(z, log_var=log_var, layers=layers)

    def decode(self, codes: Tensor, speaker: Tensor | None = None, length: int | None = None) -> Tensor:
        """Features from codes ``(B, L', *S)`` (any number of leading layers); ``length`` crops the time
        axis (e.g. to the original ``T`` after the codec's ``ceil(T/2)`` latents)."""
        with self._eval_mode():
            y = self.decoder(self.quantizer.decode(codes), speaker=self._speaker(speaker))
        return y if length is None else y[..., :length]

    def reconstruct(self, x: Tensor, layers: int | None = None, speaker: Tensor | None = None) -> Tensor:
        """``decode(encode(x, layers))`` cropped to the target length (deterministic)."""
        length = self.encoder.target(x).shape[-1]
        return self.decode(self.encode(x, layers=layers), speaker=speaker, length=length)


def _latent_power(z: Tensor, mask: Tensor | None) -> float:
    """Mean squared encoder output per dimension over valid positions: the scale that s^2 is relative to
    (logits and the continuous term depend only on ||z - b||^2 / s^2)."""
    with torch.no_grad():
        sq = z.detach().float().pow(2).mean(1)
        if mask is None:
            return float(sq.mean())
        m = mask.to(sq.dtype)
        return float((sq * m).sum() / m.sum().clamp_min(1.0))


def build_model(cfg: dict) -> CodecModel:
    """Build a :class:`CodecModel` from a config dict::

        {"encoder": {"type": "speech" | "urbansound" | "codec" | "image" | "hqvae", **kwargs},
         "quantizer": {"type": "gaussian_sq" | "vmf_sq" | "residual_sq" | "vq" | "residual_vq"
                               | "hierarchical_sq" | "hierarchical_vq", ...},
         "decoder": {"type": ..., **kwargs},            # optional, defaults to the encoder's type
         "reconstruction": {"type": "arelbo"} | {"type": "mse", "sigma2": 1.0}     # optional
                           | {"type": "categorical" | "vmf_categorical", "num_classes": C, ...},
         "temperature": {"tau0": 1.0, "decay": 1e-5, "tau_min": 0.0},              # optional
         "frozen": ["quantizer.log_param_q"]}      # optional: parameter-name prefixes kept fixed

    ``d_b`` is plumbed from the quantizer: the encoder outputs ``quantizer.dim +
    quantizer.log_var_channels`` channels and the decoder takes ``quantizer.dim``.
    """
    from .quantize import build_quantizer

    known = {"encoder", "quantizer", "decoder", "reconstruction", "temperature", "frozen"}
    if unknown := set(cfg) - known:
        raise ValueError(f"unknown model config keys: {sorted(unknown)}")
    quantizer = build_quantizer(dict(cfg["quantizer"]))
    enc_cfg = dict(cfg["encoder"])
    dec_cfg = dict(cfg.get("decoder") or {"type": enc_cfg["type"]})
    dec_cfg.setdefault("type", enc_cfg["type"])
    encoder = build_encoder(enc_cfg, quantizer.dim, quantizer.log_var_channels)
    decoder = build_decoder(dec_cfg, quantizer.dim)
    reconstruction = build_reconstruction(cfg.get("reconstruction"))
    temperature = TemperatureSchedule(**(cfg.get("temperature") or {}))
    model = CodecModel(encoder, quantizer, decoder, reconstruction, temperature, config=cfg)
    freeze_parameters(model, cfg.get("frozen") or [])
    return model


def freeze_parameters(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Hold the parameters whose names start with any of ``prefixes`` at their initial values
    (``requires_grad = False``; e.g. ``quantizer.log_param_q`` for the fixed-s^2 control of the
    self-annealing study). Returns the frozen names; a prefix that matches nothing is an error."""
    frozen = []
    for prefix in prefixes:
        names = [n for n, _ in model.named_parameters() if n == prefix or n.startswith(prefix + ".")]
        if not names:
            raise ValueError(f"frozen: no parameter named {prefix!r}")
        frozen += names
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    return frozen
