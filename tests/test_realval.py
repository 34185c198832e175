"""The shipped default on real recordings: three Bach10 excerpts of ``../shared/realval``.

A duet, a trio and a quartet (violin, clarinet, saxophone, bassoon, recorded separately), with
label queries. The default must return each player better than the mixture does, on average
over the nine stems (SI-SDR improvement > 0 dB). It is a floor, not the quality figure: that is
``benchmarks/bench_realval.py`` on all 36 excerpts (the model cards). The realval set is for
validation and model choice only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from vimss_cli.checkpoint import load_model
from vimss_cli.conditioning import Query
from vimss_cli.engine import separate_array
from vimss_cli.eval.metrics import si_sdr
from vimss_cli.urmp import list_pieces

BACH10 = Path(__file__).resolve().parents[2] / "shared" / "realval" / "bach10"
EXCERPTS = ("01_Bach10P2x01_vn_cl", "13_Bach10P3x01_vn_cl_sax", "36_Bach10P4x12_vn_cl_sax_bn")


@pytest.mark.skipif(not BACH10.is_dir(), reason="../shared/realval/bach10 is not beside the repo")
def test_the_default_separates_real_recordings_better_than_the_mixture() -> None:
    model = load_model("default").model
    pieces = {piece.folder.name: piece for piece in list_pieces(BACH10)}
    improvements = []
    for name in EXCERPTS:
        piece = pieces[name]
        mixture = soundfile.read(str(piece.mix_path), dtype="float32")[0]
        references = np.stack(
            [soundfile.read(str(path), dtype="float32")[0] for path in piece.stem_paths]
        )
        queries = [Query(code) for code in piece.name.instruments]
        estimates = separate_array(model, mixture, queries)
        baseline = si_sdr(references, np.repeat(mixture[None], len(queries), axis=0))
        improvements.extend(si_sdr(references, estimates) - baseline)
    assert len(improvements) == 9
    assert float(np.mean(improvements)) > 0.0, np.round(improvements, 2)
