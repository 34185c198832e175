"""Music and performance of the generator: works, splits, ensembles, ranges, timing, files."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import mido
import numpy as np
import pytest

from vimss_cli.synth import performance, scores
from vimss_cli.synth.scores import RANGES, Note


def test_movements_and_numbered_pieces_share_a_work() -> None:
    assert scores.work_id("beethoven/opus18no1/movement3.mxl") == "beethoven/opus18no1"
    assert scores.work_id("bach/bwv66.6.mxl") == scores.work_id("bach/bwv66.1.mxl") == "bach/bwv66"
    assert scores.work_id("palestrina/Credo_97_a.krn") == scores.work_id(
        "palestrina/Credo_97_d.krn"
    )
    assert scores.work_id("palestrina/Credo_97_a.krn") != scores.work_id("palestrina/Credo_98.krn")


def test_splits_are_disjoint_by_work_and_all_nonempty() -> None:
    by_split = {
        split: {w.work_id for w in scores.works_for_split(split)} for split in scores.SPLITS
    }
    assert all(by_split.values())
    assert not by_split["train"] & by_split["valid"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["valid"] & by_split["test"]
    total = len({w.work_id for w in scores.corpus_works()} - scores.REAL_VALIDATION_WORKS)
    assert sum(len(s) for s in by_split.values()) == total
    assert len(by_split["train"]) > 4 * len(by_split["test"])  # 80/10/10 by hash


def test_bach10_chorales_are_in_the_corpus_and_in_no_split() -> None:
    corpus_ids = {w.work_id for w in scores.corpus_works()}
    assert len(scores.REAL_VALIDATION_WORKS) == 11  # ten chorales, one of them as two ids
    assert corpus_ids >= scores.REAL_VALIDATION_WORKS  # each name is a real work id
    drawn = {w.work_id for split in scores.SPLITS for w in scores.works_for_split(split)}
    assert not drawn & scores.REAL_VALIDATION_WORKS
    assert "bach/bwv273" in drawn  # "Christ, der du bist der helle Tag" is not Bach10's 03


def test_unknown_split_is_an_input_error() -> None:
    from vimss_cli.errors import InputError

    with pytest.raises(InputError, match="unknown split"):
        scores.works_for_split("dev")


def test_ensemble_sizes_follow_urmp_proportions_and_include_same_instrument_pairs() -> None:
    rng = np.random.default_rng(1)
    drawn = [scores.choose_ensemble(rng) for _ in range(4400)]
    sizes = Counter(len(e) for e in drawn)
    for size, weight in scores.SIZE_WEIGHTS.items():
        assert sizes[size] / len(drawn) == pytest.approx(weight / 44, abs=0.03)
    pairs = {e for e in drawn if len(e) == 2 and e[0] == e[1]}
    assert pairs == {("vn", "vn"), ("fl", "fl"), ("tpt", "tpt"), ("sax", "sax")}


@pytest.mark.parametrize(
    "pitches, low, high, expected",
    [
        ([60, 64, 67], 55, 100, 0),  # already inside: no shift
        ([40, 45, 50], 55, 100, 24),  # a bass line for a violin goes up two octaves
        ([84, 88, 91], 28, 58, -36),  # a soprano line for a tuba goes down three
    ],
)
def test_octave_shift(pitches: list[int], low: int, high: int, expected: int) -> None:
    shift = scores.octave_shift(pitches, low, high)
    assert shift == expected and shift % 12 == 0


def test_parts_go_to_instruments_by_register_and_within_range() -> None:
    soprano = [Note(i, 1.0, p) for i, p in enumerate([72, 74, 76, 79, 100])]
    bass = [Note(i, 1.0, p) for i, p in enumerate([40, 43, 45, 36, 48])]
    # track order puts the cello first: it must still get the bass line
    mapped, shifts, sources = scores.assign_parts([soprano, bass], ("vc", "fl"))
    assert sources == [1, 0]
    for notes, code in zip(mapped, ("vc", "fl"), strict=True):
        low, high = RANGES[code]
        assert all(low <= n.pitch <= high for n in notes)
    assert shifts == [0, -12]  # an octave down puts all five flute notes in range
    assert [n.pitch for n in mapped[1]] == [60, 62, 64, 67, 88]


def test_chorale_parts_are_monophonic_with_ties_merged() -> None:
    from music21 import corpus

    score = corpus.parse("bach/bwv66.6")
    for part in score.parts:
        notes = scores.monophonic_notes(part)
        assert len(notes) > 20
        for a, b in itertools.pairwise(notes):
            assert a.onset < b.onset and a.onset + a.duration <= b.onset + 1e-9
        tied = [n for n in part.flatten().notes if n.tie is not None and n.tie.type != "start"]
        assert len(notes) == len(part.flatten().notes) - len(tied)


def test_excerpt_every_player_plays_and_is_in_range() -> None:
    rng = np.random.default_rng(3)
    works = [w for w in scores.works_for_split("train") if w.composer == "bach"][:20]
    excerpt = scores.choose_excerpt(rng, works, ("vn", "va", "vc"), 12.0)
    assert len(excerpt.parts) == 3 and excerpt.work in works
    for notes, code in zip(excerpt.parts, excerpt.instruments, strict=True):
        assert len(notes) >= 4
        assert all(0 <= n.onset < 12.0 for n in notes)
        assert all(RANGES[code][0] <= n.pitch <= RANGES[code][1] for n in notes)


def test_register_shuffle_gives_parts_in_random_order_and_keeps_ranges() -> None:
    works = [w for w in scores.works_for_split("train") if w.composer == "bach"][:20]
    trio = ("vn", "cl", "bn")  # by register: soprano, middle, bass

    def draw(seed: int, shuffle: float) -> scores.Excerpt:
        return scores.choose_excerpt(
            np.random.default_rng(seed), works, trio, 12.0, register_shuffle=shuffle
        )

    plain = [draw(seed, 0.0) for seed in range(12)]
    assert all(e.by_register for e in plain)
    # at 0 nothing more is drawn: the same excerpts as before the option existed
    assert [e.parts for e in plain] == [
        scores.choose_excerpt(np.random.default_rng(seed), works, trio, 12.0).parts
        for seed in range(12)
    ]
    shuffled = [draw(seed, 1.0) for seed in range(12)]
    assert not any(e.by_register for e in shuffled)

    mean_pitch = [[float(np.mean([n.pitch for n in part])) for part in e.parts] for e in shuffled]
    assert any(pitches[0] < max(pitches[1:]) for pitches in mean_pitch)  # violin not highest
    for excerpt in shuffled:
        for notes, code in zip(excerpt.parts, excerpt.instruments, strict=True):
            assert all(RANGES[code][0] <= n.pitch <= RANGES[code][1] for n in notes)


def test_a_saxophone_part_takes_the_saxophone_of_its_register() -> None:
    assert scores.program_for("sax", [48, 50, 55]) == 66  # tenor (a tenor voice)
    assert scores.program_for("sax", [62, 64, 67]) == 65  # alto
    assert scores.program_for("sax", [74, 76, 79]) == 64  # soprano
    assert scores.program_for("vn", [40, 90]) == 40  # other instruments: one program
    low, high = scores.RANGES["sax"]
    assert low <= 44 and high >= 84  # a tenor's low notes are in range


def test_the_score_file_names_the_saxophone_that_plays(tmp_path: Path) -> None:
    import mido

    line = tuple(Note(float(i), 1.0, 50 + i % 3) for i in range(8))
    work = scores.Work("bach/bwv66.6.mxl", "bach/bwv66", "bach")
    excerpt = scores.Excerpt(work, 0.0, 8.0, ("vn", "sax"), (line, line), ("S", "T"), (0, 0))
    performance.write_score_midi(tmp_path / "score.mid", excerpt, 90.0)
    programs = [
        message.program
        for track in mido.MidiFile(tmp_path / "score.mid").tracks
        for message in track
        if message.type == "program_change"
    ]
    assert programs == [40, 66]


def test_assign_parts_follows_the_given_sources() -> None:
    high = [Note(0.0, 1.0, 84), Note(1.0, 1.0, 86)]
    low = [Note(0.0, 1.0, 48), Note(1.0, 1.0, 50)]
    _, _, by_register = scores.assign_parts([low, high], ("vn", "vc"))
    assert by_register == [1, 0]  # violin takes the high part
    parts, shifts, sources = scores.assign_parts([low, high], ("vn", "vc"), [0, 1])
    assert sources == [0, 1]
    assert [n.pitch for n in parts[0]] == [60, 62] and shifts[0] == 12  # the low part, raised
    assert [n.pitch for n in parts[1]] == [72, 74] and shifts[1] == -12  # the high part, lowered


def _excerpt() -> scores.Excerpt:
    line = tuple(Note(float(i), 1.0, 60 + i % 5) for i in range(24))
    work = scores.Work("bach/bwv66.6.mxl", "bach/bwv66", "bach")
    return scores.Excerpt(work, 0.0, 24.0, ("vn", "vc"), (line, line), ("S", "B"), (0, 0))


def test_players_vary_in_timing_and_dynamics_and_stay_inside_the_piece() -> None:
    played = performance.perform(_excerpt(), 90.0, 10.0, np.random.default_rng(0))
    first, second = played.players
    assert first and second
    assert [n.onset for n in first] != [n.onset for n in second]  # own lag and jitter
    assert [n.velocity for n in first] != [n.velocity for n in second]
    for notes in played.players:
        for a, b in itertools.pairwise(notes):
            assert a.onset + a.duration <= b.onset
        assert notes[-1].onset < 10.0 - performance.TAIL_SECONDS
        assert all(25 <= n.velocity <= 127 for n in notes)
    # at 90 bpm a quarter lasts about 2/3 s (rubato within 5 %)
    gaps = np.diff([n.onset for n in first])
    assert 0.55 < float(np.median(gaps)) < 0.78


def test_notes_f0_and_midi_files(tmp_path: Path) -> None:
    notes = (
        performance.PlayedNote(0.5, 0.25, 69, 80),
        performance.PlayedNote(1.0, 0.5, 81, 90),
    )
    lines = performance.notes_text(notes).splitlines()
    assert lines == ["0.500\t440.000\t0.250", "1.000\t880.000\t0.500"]
    f0 = [line.split("\t") for line in performance.f0_text(notes, 2.0).splitlines()]
    assert len(f0) == 200
    values = {row[0]: float(row[1]) for row in f0}
    assert values["0.400"] == 0.0 and values["0.600"] == 440.0 and values["1.200"] == 880.0
    path = tmp_path / "p.mid"
    vibrato = performance.Vibrato(rate=5.0, depth=20.0, delay=0.1)
    players = [
        performance.RenderPart(notes, np.full(20, 100), 40),
        performance.RenderPart(notes[:1], np.full(20, 90), 73, vibrato),
    ]
    performance.write_render_midi(path, players, 2.0)
    midi = mido.MidiFile(str(path))
    ons = [(m.channel, m.note) for m in midi if m.type == "note_on"]
    assert ons == [(0, 69), (0, 81), (1, 69)]
    assert midi.length == pytest.approx(2 * (2.0 + performance.RENDER_GAP), abs=1e-3)
    times, now = [], 0.0  # player 2 starts one stride (piece + gap) later
    for message in midi:
        now += message.time
        if message.type == "note_on":
            times.append(round(now, 3))
    assert times == [0.5, 1.0, 0.5 + 2.0 + performance.RENDER_GAP]


def test_vibrato_bends_the_pitch_wheel_and_the_f0s_alike(tmp_path: Path) -> None:
    vibrato = performance.Vibrato(rate=5.0, depth=20.0, delay=0.1)
    note = performance.PlayedNote(0.5, 1.0, 69, 80)
    rows = [line.split("\t") for line in performance.f0_text((note,), 2.0, vibrato).splitlines()]
    f0 = {round(float(t), 2): float(f) for t, f in rows}
    assert f0[0.55] == pytest.approx(440.0)  # straight tone before the delay
    inside = np.array([f for t, f in f0.items() if 0.8 <= t < 1.5])
    cents = 1200 * np.log2(inside / 440.0)
    assert 15 < cents.max() <= 20.01 and -20.01 <= cents.min() < -15  # f0s have 3 decimals
    assert f0[1.6] == 0.0
    path = tmp_path / "v.mid"
    performance.write_render_midi(
        path, [performance.RenderPart((note,), np.full(20, 100), 40, vibrato)], 2.0
    )
    bends = [m.pitch for m in mido.MidiFile(str(path)) if m.type == "pitchwheel"]
    assert len(bends) == 50  # every 20 ms over the 1 s note
    full_depth = round(20 / 200 * 8192)  # 20 cents of the +-200 cent wheel
    assert bends[0] == 0 and 0.9 * full_depth < max(bends) <= full_depth


def test_each_family_gets_its_kind_of_vibrato() -> None:
    line = tuple(Note(float(i), 1.0, 60) for i in range(8))
    work = scores.Work("bach/bwv66.6.mxl", "bach/bwv66", "bach")
    excerpt = scores.Excerpt(work, 0.0, 8.0, ("vn", "tpt"), (line, line), ("S", "B"), (0, 0))
    played = performance.perform(excerpt, 90.0, 6.0, np.random.default_rng(0))
    violin, trumpet = played.vibratos
    assert 8.0 <= violin.depth <= 30.0 and 0.0 <= trumpet.depth <= 6.0
