"""sqcodec: neural audio codec toolkit built on stochastically quantized VAEs (SQ-VAE, RSQ-VAE).

The quantizers live in :mod:`sqcodec.quantize`, the networks in :mod:`sqcodec.nets`, the codec
model and its ELBO objective in :mod:`sqcodec.model`, the trainer in :mod:`sqcodec.train`.
"""

__version__ = "0.1.0"
