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


def excerpts() -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Each of :data:`EXCERPTS`: its mixture ``(n,)``, references ``(K, n)`` and instruments."""
    pieces = {piece.folder.name: piece for piece in list_pieces(BACH10)}
    loaded = []
    for name in EXCERPTS:
        piece = pieces[name]
        mixture = soundfile.read(str(piece.mix_path), dtype="float32")[0]
        references = np.stack(
            [soundfile.read(str(path), dtype="float32")[0] for path in piece.stem_paths]
        )
        loaded.append((mixture, references, list(piece.name.instruments)))
    return loaded


@pytest.mark.skipif(not BACH10.is_dir(), reason="../shared/realval/bach10 is not beside the repo")
def test_the_default_separates_real_recordings_better_than_the_mixture() -> None:
    model = load_model("default").model
    improvements = []
    for mixture, references, codes in excerpts():
        queries = [Query(code) for code in codes]
        estimates = separate_array(model, mixture, queries)
        baseline = si_sdr(references, np.repeat(mixture[None], len(queries), axis=0))
        improvements.extend(si_sdr(references, estimates) - baseline)
    assert len(improvements) == 9
    assert float(np.mean(improvements)) > 0.0, np.round(improvements, 2)


@pytest.mark.skipif(not BACH10.is_dir(), reason="../shared/realval/bach10 is not beside the repo")
def test_harmonic_masks_refine_real_recordings_better_than_soft_masks() -> None:
    # the same nine stems: each refined by plain soft masks and by harmonic masks on the
    # mixture; the harmonic ones must be closer to the players on average (SI-SDR)
    from vimss_cli.soft_masks import refine

    model = load_model("default").model
    rate = model.config.sample_rate
    gains = []
    for mixture, references, codes in excerpts():
        estimates = separate_array(model, mixture, [Query(code) for code in codes])
        soft = refine(estimates, mixture)
        harmonic = refine(estimates, mixture, instruments=codes, sample_rate=rate)
        gains.extend(si_sdr(references, harmonic) - si_sdr(references, soft))
    assert len(gains) == 9
    assert float(np.mean(gains)) > 0.0, np.round(gains, 2)
