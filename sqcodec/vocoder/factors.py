"""HiFi-GAN upsampling factors for any hop length.

The generator's upsampling factors must multiply to the preset's hop (:class:`~sqcodec.vocoder.hifigan.
HifiGanVocoder` refuses anything else). :data:`~sqcodec.vocoder.hifigan.GENERATOR_CONFIGS` is written for
hop 256 (``codec16k``, ``urbansound``); the other paper presets have hop 300 (``vctk``) and 160
(``zerospeech``). :func:`generator_config_for_hop` keeps a size's channels and residual blocks and, only
when the product differs from the hop, spreads the hop's prime factors over the same number of
upsampling stages (:func:`upsample_factors_for_hop`) with transposed-conv kernels of twice each factor,
plus one for an odd factor (HiFi-GAN's ``k = 2u`` rule; with SpeechBrain's padding ``(k - u) // 2`` an odd
``u`` needs ``k = 2u + 1`` for a stage to return exactly ``u * T`` samples). ParallelWaveGAN's vctk
HiFi-GAN uses ``[5, 5, 4, 3]`` for hop 300.
"""

from __future__ import annotations

import copy
import math
from typing import Any

__all__ = ["generator_config_for_hop", "prime_factors", "upsample_factors_for_hop"]


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n >= 1`` with multiplicity, ascending (``[]`` for 1)."""
    if int(n) != n or n < 1:
        raise ValueError(f"need a positive integer, got {n!r}")
    n = int(n)
    out = []
    p = 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def upsample_factors_for_hop(hop: int, stages: int) -> list[int]:
    """``stages`` integer factors whose product is ``hop``, as even as a greedy split makes them.

    The prime factors of ``hop`` are taken largest first, each multiplied onto the stage whose product is
    currently the smallest (the first such stage on ties); the result is sorted descending, as HiFi-GAN
    orders its stages (largest upsampling first). Stages left without a prime factor get 1.
    ``256, 3 -> [8, 8, 4]``, ``300, 4 -> [5, 5, 4, 3]``, ``160, 3 -> [8, 5, 4]``.
    """
    if int(stages) != stages or stages < 1:
        raise ValueError(f"need at least one upsampling stage, got {stages!r}")
    factors = [1] * int(stages)
    for p in sorted(prime_factors(hop), reverse=True):
        i = min(range(len(factors)), key=lambda k: factors[k])
        factors[i] *= p
    return sorted(factors, reverse=True)


def generator_config_for_hop(size: str, hop: int) -> dict[str, Any]:
    """``GENERATOR_CONFIGS[size]`` (a copy) with upsampling for ``hop``.

    Unchanged when its ``upsample_factors`` already multiply to ``hop``; otherwise ``upsample_factors``
    becomes :func:`upsample_factors_for_hop` over the same number of stages and ``upsample_kernel_sizes``
    ``2u`` for an even factor ``u`` and ``2u + 1`` for an odd one, so that every stage returns exactly
    ``u * T`` samples and the generator ``T * hop``.
    """
    from .hifigan import GENERATOR_CONFIGS

    if size not in GENERATOR_CONFIGS:
        raise ValueError(f"unknown HiFi-GAN size {size!r} (choose from {sorted(GENERATOR_CONFIGS)})")
    cfg = copy.deepcopy(GENERATOR_CONFIGS[size])
    if math.prod(cfg["upsample_factors"]) == int(hop):
        return cfg
    factors = upsample_factors_for_hop(int(hop), len(cfg["upsample_factors"]))
    cfg["upsample_factors"] = factors
    cfg["upsample_kernel_sizes"] = [2 * u + u % 2 for u in factors]
    return cfg
