"""``python -m sqcodec.train --config X.yaml [--resume [CKPT]] [--set key=val ...] [--out DIR]``.

Also the entry point for multi-GPU runs: ``torchrun --nproc_per_node N -m sqcodec.train --config X.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sqcodec.train", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, type=Path, help="YAML training config")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CKPT",
        help="resume from the newest checkpoint in the exp dir (or from CKPT)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=100 data.train='wavs/*.flac'",
    )
    p.add_argument("--out", type=Path, default=None, help="experiment directory (default: train.exp_dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings on stderr")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.quiet:  # the exp dir's train.log still gets INFO
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import DataError
    from .trainer import train

    overrides = [o for group in args.overrides for o in group]
    try:
        exp = train(args.config, resume=args.resume, overrides=overrides, out_dir=args.out)
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":
        print(exp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
