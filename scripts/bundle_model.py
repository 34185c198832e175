"""Bundle a trained checkpoint under ``models/`` and list it in ``models/index.json``.

    python scripts/bundle_model.py runs/first/best.safetensors NAME "description" [--default]

The file is re-read through the real loader first (config, weights sha256), so a broken
checkpoint is never bundled; the index records the file's sha256, checked on every load.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from vimss_cli.checkpoint import INDEX_FILE, file_sha256, load_checkpoint

MODELS = Path(__file__).resolve().parents[1] / "models"
LIMIT_BYTES = 50 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("name")
    parser.add_argument("description")
    parser.add_argument("--default", action="store_true", help="make it the default model")
    args = parser.parse_args()
    loaded = load_checkpoint(args.checkpoint)
    if args.checkpoint.stat().st_size > LIMIT_BYTES:
        raise SystemExit(f"{args.checkpoint} is over 50 MB: too large to bundle")
    target = MODELS / f"{args.name}.safetensors"
    shutil.copyfile(args.checkpoint, target)
    index_path = MODELS / INDEX_FILE
    index = json.loads(index_path.read_text())
    index["models"][args.name] = {
        "file": target.name,
        "sha256": file_sha256(target),
        "trained": loaded.trained,
        "description": args.description,
    }
    if args.default:
        index["default"] = args.name
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    print(f"bundled {target} ({target.stat().st_size / 1e6:.1f} MB) as {args.name!r}")


if __name__ == "__main__":
    main()
