"""Write ``examples/duet_vn_vn.mp4``: a generated violin duet, filmed, with its mixture as sound.

Two violins are the case a label cannot separate: only the picture says which one plays. The
piece comes from ``vimss data synth`` (validation split, so never trained on), the mixture is
muxed into the video as AAC, and the two reference stems go beside it as FLAC so the demo's
output can be compared with the truth.

    python scripts/make_video_example.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from vimss_cli.ffmpeg_io import ffmpeg_executable
from vimss_cli.urmp import list_pieces

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OUT = EXAMPLES / "duet_vn_vn.mp4"
SEED = 11


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "piece"
        subprocess.run(
            [sys.executable, "-m", "vimss_cli", "data", "synth", "-o", str(tree), "-n", "1",
             "--split", "valid", "--seed", str(SEED), "--seconds", "15", "--sample-rate",
             "22050", "--video-size", "320x180", "--ensemble", "vn,vn"],
            check=True,
        )  # fmt: skip
        piece = list_pieces(tree)[0]
        subprocess.run(
            [ffmpeg_executable(), "-v", "error", "-y", "-i", str(piece.video_path), "-i",
             str(piece.mix_path), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
             "-b:a", "96k", "-shortest", str(OUT)],
            check=True,
        )  # fmt: skip
        references = EXAMPLES / "duet_vn_vn_reference"  # named as `separate` names its stems
        references.mkdir(exist_ok=True)
        for number, stem in enumerate(piece.stem_paths, start=1):
            audio, rate = soundfile.read(stem, dtype="float32")
            reference = references / f"{number:02d}_vn.flac"
            soundfile.write(reference, np.asarray(audio), rate, subtype="PCM_16")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB) and its two reference stems")


if __name__ == "__main__":
    main()
