"""Regression of the shipped default on the bundled filmed duet, as open-unmix does.

``vimss separate examples/duet_vn_vn.mp4`` (auto mode: players found in the video) with the
default model; the SI-SDR of each stem against the example's reference stems must stay within
0.05 dB of the numbers stored for that model file in ``tests/data/regression.json``: the
network's two stems of one violin (``--no-pitch-voices``), refined three ways, and the
default, the pair split by pitch. A new default needs its numbers recorded: ``python
tests/test_regression.py --record``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "duet_vn_vn.mp4"
REFERENCES = [REPO / "examples" / "duet_vn_vn_reference" / f"0{j}_vn.flac" for j in (1, 2)]
STORED = Path(__file__).parent / "data" / "regression.json"
TOLERANCE_DB = 0.05


#: the stored scores of ``vimss separate`` with the pair unsplit (``--no-pitch-voices``): its
#: stems refined by harmonic masks, by plain soft masks (``--no-harmonic``) and the network's
#: own (``--no-refine``); and as it is (the mixture split by pitch: no network, no masks)
KEYS = {
    "--harmonic": "si_sdr_db_harmonic",
    "--no-harmonic": "si_sdr_db_refined",
    "--no-refine": "si_sdr_db",
    "--pitch-voices-default": "si_sdr_db_split",
}


def default_scores(out: Path, refine: str = "--harmonic") -> tuple[str, list[float]]:
    """The default model's sha256 and the SI-SDR (dB) of its two stems of the example."""
    from vimss_cli.checkpoint import file_sha256, resolve_checkpoint
    from vimss_cli.cli import app
    from vimss_cli.eval.metrics import si_sdr

    flags = [] if refine == "--pitch-voices-default" else [refine, "--no-pitch-voices"]
    command = ["separate", str(EXAMPLE), "-o", str(out), "--device", "cpu", *flags]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    stems = sorted((out / EXAMPLE.stem).glob("*.wav"))
    estimates = np.stack([soundfile.read(str(p), dtype="float32")[0] for p in stems])
    references = np.stack([soundfile.read(str(p), dtype="float32")[0] for p in REFERENCES])
    length = min(estimates.shape[1], references.shape[1])
    scores = si_sdr(references[:, :length], estimates[:, :length])
    digest = file_sha256(resolve_checkpoint("default").path)
    return digest, [round(float(s), 3) for s in scores]


@pytest.mark.parametrize("refine", list(KEYS))
def test_the_default_separates_the_example_as_recorded(tmp_path: Path, refine: str) -> None:
    sha256, scores = default_scores(tmp_path, refine)
    stored = json.loads(STORED.read_text())
    assert sha256 in stored, "the default model changed: record its numbers (--record)"
    expected = stored[sha256].get(KEYS[refine])
    assert expected is not None, f"no numbers recorded {refine} for this model (--record)"
    assert np.allclose(scores, expected, atol=TOLERANCE_DB), (scores, expected)


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    from vimss_cli.checkpoint import resolve_checkpoint

    table = json.loads(STORED.read_text()) if STORED.is_file() else {}
    name = resolve_checkpoint("default").path.stem
    for flag, key in KEYS.items():
        with tempfile.TemporaryDirectory() as folder:
            digest, measured = default_scores(Path(folder), flag)
        table.setdefault(digest, {"model": name})[key] = measured
        print(f"recorded {name} {flag}: {measured}")
    STORED.write_text(json.dumps(table, indent=1) + "\n")
