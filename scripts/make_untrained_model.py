"""Write the bundled placeholder ``models/vimss-untrained-v0.safetensors`` (seeded, reproducible).

It has the shape a first trained default will have but random weights: it exercises every
code path (loading, the engine, the CLI) and the CLI warns that its stems are not separations.

    python scripts/make_untrained_model.py
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch

from vimss_cli import __version__
from vimss_cli.checkpoint import INDEX_FILE, file_sha256, save_checkpoint
from vimss_cli.model import ModelConfig, WaveUNet

NAME = "vimss-untrained-v0"
MODELS = Path(__file__).resolve().parents[1] / "models"


def main() -> None:
    torch.manual_seed(0)
    config = ModelConfig(sample_rate=22050, levels=8, base_features=16, conditioning="film-all")
    model = WaveUNet(config)
    path = MODELS / f"{NAME}.safetensors"
    save_checkpoint(
        path,
        model,
        provenance={
            "trained": False,
            "description": "randomly initialised placeholder (seed 0); not a separator",
            "created": datetime.date.today().isoformat(),
            "code_version": __version__,
        },
    )
    index_path = MODELS / INDEX_FILE
    index = json.loads(index_path.read_text()) if index_path.exists() else {"models": {}}
    index["models"][NAME] = {
        "file": path.name,
        "sha256": file_sha256(path),
        "trained": False,
        "description": "UNTRAINED placeholder (random weights, label queries, 22.05 kHz)",
    }
    index.setdefault("default", NAME)
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
