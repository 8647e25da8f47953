"""``model.frozen``: the fixed-s^2 control of the self-annealing study holds s^2 at its initial value."""

from __future__ import annotations

import pytest
import torch

from sqcodec.model import build_model

CFG = {
    "encoder": {"type": "codec", "channels": 16, "frame_dilations": [1], "latent_dilations": [1]},
    "quantizer": {"type": "residual_sq", "dim": 8, "codebook_size": 16, "num_layers": 2},
}


def _step(model) -> None:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(4, 80, 16)
    model.train()
    model.set_step(0)
    model({"x": x}).loss.backward()
    opt.step()


def test_frozen_variance_stays_at_init_while_the_rest_trains() -> None:
    torch.manual_seed(0)
    model = build_model({**CFG, "frozen": ["quantizer.log_param_q"]})
    s2 = model.quantizer.log_param_q.detach().clone()
    book = model.quantizer.codebooks[0].detach().clone()
    _step(model)
    assert torch.equal(model.quantizer.log_param_q, s2)
    assert not torch.equal(model.quantizer.codebooks[0], book)


def test_trainable_variance_moves() -> None:
    torch.manual_seed(0)
    model = build_model(CFG)
    s2 = model.quantizer.log_param_q.detach().clone()
    _step(model)
    assert not torch.equal(model.quantizer.log_param_q, s2)


def test_unknown_frozen_prefix_is_an_error() -> None:
    with pytest.raises(ValueError, match="no parameter named"):
        build_model({**CFG, "frozen": ["quantizer.nope"]})
