"""Model configs shared by several test files (imported as ``from tiny_models import ...``)."""

#: a tiny codec-type RSQ model: 3 layers of K = 16, d_b = 8 (builds in milliseconds)
TINY_CODEC = {
    "encoder": {
        "type": "codec",
        "channels": 16,
        "in_kernel": 5,
        "frame_dilations": [1],
        "latent_dilations": [1, 3],
    },
    "decoder": {
        "type": "codec",
        "channels": 16,
        "out_kernel": 5,
        "frame_dilations": [1],
        "latent_dilations": [1, 3],
    },
    "quantizer": {"type": "residual_sq", "dim": 8, "codebook_size": 16, "num_layers": 3},
}
