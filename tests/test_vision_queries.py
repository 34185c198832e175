"""Queries from video: label, appearance and motion per player; chunked still equals whole."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from conftest import RATE, TINY_CONFIG, make_tiny_model, noise, write_wav
from scenes import compose_scene
from vimss_cli.engine import separate_array
from vimss_cli.errors import InputError
from vimss_cli.media import probe, read_audio
from vimss_cli.vision.queries import plan_players

VISUAL_CONFIG = dataclasses.replace(TINY_CONFIG, appearance_dim=1280, motion_channels=2)


@pytest.fixture(scope="module")
def duet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two violins, the left one playing first, the right one second; 3 s of noise as sound."""
    path = tmp_path_factory.mktemp("duet") / "duet.mp4"
    compose_scene(path, ["vn", "vn"], active=[[(0.0, 1.5)], [(1.5, 3.0)]], seed=3)
    return path


def test_visual_model_gets_appearance_and_motion(duet: Path) -> None:
    plan = plan_players(probe(duet), "vn,vn")
    assert plan.analysis is None  # nothing is decoded until a model asks for it
    queries = plan.queries(VISUAL_CONFIG)
    assert [q.instrument for q in queries] == ["vn", "vn"]
    for query in queries:
        assert query.appearance.shape == (1280,)
        assert np.linalg.norm(query.appearance) == pytest.approx(1.0, abs=1e-5)
        assert query.motion.shape == (2, 30) and query.motion_rate == 10.0
    assert not np.allclose(queries[0].motion, queries[1].motion)


def test_label_only_model_gets_labels_and_a_note(duet: Path) -> None:
    plan = plan_players(probe(duet))  # auto: found and guessed
    assert len(plan.labels) == 2 and plan.analysis is not None
    queries = plan.queries(TINY_CONFIG)
    assert all(q.appearance is None and q.motion is None for q in queries)
    assert [q.instrument for q in queries] == plan.labels
    assert any("not used" in note for note in plan.notes)


def test_same_instrument_told_apart_and_chunked_equals_whole(duet: Path) -> None:
    """Two violins: only motion differs, so the stems differ; and tiles equal one pass."""
    queries = plan_players(probe(duet), "vn,vn").queries(VISUAL_CONFIG)
    model = make_tiny_model(VISUAL_CONFIG)
    audio = read_audio(duet, RATE)
    chunked = separate_array(model, audio, queries, tile=1000, batch_size=3)
    whole = separate_array(model, audio, queries, tile=None)
    assert chunked.shape == whole.shape == (2, audio.size)
    assert np.abs(chunked - whole).max() <= 1e-5
    assert np.abs(chunked[0] - chunked[1]).max() > 1e-4


def test_picture_options_on_audio_name_only_those_given(tmp_path: Path) -> None:
    info = probe(write_wav(tmp_path / "duet.wav", noise(1.0)))
    with pytest.raises(InputError, match=r"^--boxes needs a picture, and .*duet.wav has none"):
        plan_players(info, "vn,vc", boxes="0,0,10,10")
    with pytest.raises(InputError, match=r"^--players needs a picture"):
        plan_players(info, "vn,vc", players=2)
    with pytest.raises(InputError, match=r"^--players and --boxes need a picture"):
        plan_players(info, "vn,vc", players=2, boxes="0,0,10,10")


def test_counts_must_agree(duet: Path) -> None:
    info = probe(duet)
    with pytest.raises(InputError, match="--players 2 but --instruments names 3"):
        plan_players(info, "vn,vn,vc", players=2)
    with pytest.raises(InputError, match="--boxes gives 2 boxes but --instruments names 1"):
        plan_players(info, "vn", boxes="0,0,100,100;150,0,100,100")
    plan = plan_players(info, "vn,vn,vc")
    with pytest.raises(InputError, match=r"names 3 players but 2 were found.*--players 3"):
        plan.queries(dataclasses.replace(VISUAL_CONFIG, appearance_dim=0))
    # one player is not "1 players"
    with pytest.raises(InputError, match=r"--players 2 but --instruments names 1 player$"):
        plan_players(info, "vn", players=2)
    with pytest.raises(InputError, match=r"names 1 player but 2 were found"):
        plan_players(info, "vn").queries(dataclasses.replace(VISUAL_CONFIG, appearance_dim=0))


def test_appearance_size_must_match(duet: Path) -> None:
    plan = plan_players(probe(duet), "vn,vn")
    with pytest.raises(InputError, match="appearance vectors of 64 values"):
        plan.queries(dataclasses.replace(VISUAL_CONFIG, appearance_dim=64))


def test_more_players_than_a_run_takes_is_one_error_with_the_way_out(
    duet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: an orchestra photo gave 9 players, then 'at most 8 players at once'
    with no way out. Now the error names --players and --boxes."""
    from vimss_cli.vision import queries
    from vimss_cli.vision.analysis import Player, VideoAnalysis
    from vimss_cli.vision.instrument_guess import InstrumentGuess

    real = queries.analyse_video(duet)
    crowd = [
        Player(j + 1, (10 * j, 0, 10, 10), InstrumentGuess("vn", 0.5, "violin"), np.zeros(1280))
        for j in range(9)
    ]
    fake = VideoAnalysis(real.info, real.rate, crowd, real.grids, real.snapshot, "people")
    monkeypatch.setattr(queries, "analyse_video", lambda path, **options: fake)
    with pytest.raises(InputError, match=r"9 players seen in .*pass --players N \(1 to 8\)"):
        plan_players(probe(duet))
