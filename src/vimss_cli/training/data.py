"""Training excerpts from a URMP-layout tree, with the augmentation separation training uses.

Each excerpt is generated from its global index alone (``numpy.random.default_rng([seed,
index])``), so a run resumes exactly at any step, worker processes need no shared state, and
distributed ranks draw disjoint indices (:class:`StepSampler`).

An excerpt is a mixture window of the model's input length and K queries with their target
stems over the output span:

* per-stem gain, uniform in ±``gain_db``; the whole excerpt's level, down to
  ``-mixture_gain_db`` dB;
* per-stem colouring (``colour_db``): random low/high shelves and a peak, standing for the
  instrument maker, microphone and room (:func:`colour`);
* per-stem rooms (``reverb_probability``): the player heard through a random synthetic room
  response (:mod:`vimss_cli.training.rooms`);
* remixing: with ``remix_probability`` the players come from several pieces of the split;
* dropping players: each extra player is left out of the mix with ``drop_player_probability``;
* absent instruments: a query for an instrument that is not playing, whose target is silence;
* same-instrument pairs (video models): two players of one instrument, both queried;
* label-only excerpts (video models): queries without appearance or motion.

A video model is one that takes appearance vectors or motion or both; a label-only model takes
neither (``appearance_dim == 0`` and ``motion_channels == 0``). It cannot tell two players of
one instrument apart, so for it (and for a video model's label-only excerpts) the target of a
label is the sum of all players of that instrument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vimss_cli.conditioning import Query, motion_at_samples, motion_frames_window
from vimss_cli.errors import InputError, MediaError, VimssError
from vimss_cli.instruments import INSTRUMENT_CODES, NUM_INSTRUMENTS, instrument_index
from vimss_cli.media import read_audio
from vimss_cli.model import motion_encoder_context, motion_window_frames
from vimss_cli.synth.real_solos import REAL_SOLO_TITLE
from vimss_cli.training.config import DataConfig, TrainConfig
from vimss_cli.training.rooms import reverberate, room_response
from vimss_cli.training.visual_cache import PlayerVisuals, piece_visuals
from vimss_cli.urmp import DATASETS, SYNTH_MANIFEST_NAME, Piece, list_pieces
from vimss_cli.voices import mean_pitch, read_notes, voice_numbers

WarningCallback = Callable[[str], None]

#: A stem whose peak (after the downmix to mono) is at most this is silent.
SILENT_PEAK = 1e-6


@dataclass
class PieceAudio:
    """The stems of one piece in memory: ``stems (players, samples)`` float32 at model rate,
    and the players' visual features when the model takes them."""

    name: str
    instruments: tuple[str, ...]
    stems: np.ndarray
    visuals: PlayerVisuals | None = None
    #: each player's notes ``(N, 3)`` (onset s, end s, MIDI pitch; :func:`read_notes`), or
    #: ``None`` where its ``Notes_*`` file is missing or unreadable: what voice ranks read
    notes: tuple[np.ndarray | None, ...] | None = None

    @property
    def samples(self) -> int:
        return int(self.stems.shape[1])


#: One query of an excerpt: instrument code, target ``(T_out,)``, the player it is (piece,
#: player, first input sample; ``None`` for a summed or absent query) and the voice asked for.
QueryRow = tuple[str, np.ndarray, tuple[PieceAudio, int, int] | None, int]


def split_folders(root: Path) -> tuple[Path, Path | None]:
    """``root/train`` and ``root/valid`` when present, else ``root`` and no validation folder."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root is not a directory: {root}")
    train = root / "train"
    if train.is_dir():
        valid = root / "valid"
        return train, valid if valid.is_dir() else None
    return root, None


def check_dataset_kind(
    dataset: str | None, folders: list[Path], warn: WarningCallback | None = None
) -> None:
    """Check the split ``folders`` against what ``dataset`` says they are.

    ``urmp``: real recordings, so a folder holding the generator's ``vimss_synth.json`` is
    refused; ``synth``: made by ``vimss data synth``, so a folder without that manifest (whose
    generator settings the run cannot record) is warned about; ``None``: not checked.
    """
    if dataset is None:
        return
    if dataset not in DATASETS:
        raise InputError(f"unknown --dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    for folder in folders:
        generated = (folder / SYNTH_MANIFEST_NAME).is_file()
        if dataset == "urmp" and generated:
            raise InputError(
                f"--dataset urmp: {folder} was made by `vimss data synth` (it holds "
                f"{SYNTH_MANIFEST_NAME}); pass --dataset synth"
            )
        if dataset == "synth" and not generated and warn is not None:
            warn(
                f"--dataset synth: no {SYNTH_MANIFEST_NAME} in {folder}, so the run cannot "
                "record the generator's settings"
            )


def load_pieces(
    folder: Path,
    sample_rate: int,
    warn: WarningCallback | None = None,
    motion_channels: int = 0,
    visual_cache: Path | None = None,
    motion_features: str = "bands",
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[PieceAudio], list[str]]:
    """Read every piece's stems (and, with ``visual_cache``, its players' visual features).

    Pieces with unreadable audio, or whose video cannot be analysed when visual features are
    wanted, are skipped with a warning. Returns the pieces and the list of skipped files.
    ``progress`` hears ``{"stage": "reading" | "visual features", "piece": name, "done": n,
    "total": pieces}`` as each piece's step starts.
    """
    pieces: list[PieceAudio] = []
    skipped: list[str] = []
    listed = list_pieces(folder)

    def tell(stage: str, piece: Piece, index: int) -> None:
        if progress is not None:
            event = {"piece": piece.folder.name, "done": index, "total": len(listed)}
            progress({"stage": stage, **event})

    for index, piece in enumerate(listed):
        tell("reading", piece, index)
        stems = _read_stems(piece, sample_rate, skipped, warn)
        if stems is None:
            continue
        visuals = None
        if visual_cache is not None:
            tell("visual features", piece, index)
            try:
                channels = max(1, motion_channels)
                visuals = piece_visuals(piece, channels, visual_cache, motion_features)
            except VimssError as error:
                skipped.append(str(piece.video_path))
                if warn is not None:
                    warn(f"skipping piece {piece.folder.name}: {error}")
                continue
        notes = tuple(_read_notes(piece.notes_path(p)) for p in range(1, len(stems) + 1))
        pieces.append(PieceAudio(piece.folder.name, piece.name.instruments, stems, visuals, notes))
    if not pieces:
        raise InputError(f"no readable pieces under {folder}")
    return pieces, skipped


def _read_stems(
    piece: Piece, sample_rate: int, skipped: list[str], warn: WarningCallback | None
) -> np.ndarray | None:
    stems = []
    for path in piece.stem_paths:
        try:
            stems.append(read_audio(path, sample_rate))
        except (MediaError, InputError) as error:
            skipped.append(str(path))
            if warn is not None:
                warn(f"skipping piece {piece.folder.name}: {error}")
            return None
    for path, stem in zip(piece.stem_paths, stems, strict=True):
        if warn is not None and not np.abs(stem).max(initial=0.0) > SILENT_PEAK:
            warn(
                f"{path.name} of piece {piece.folder.name} is silent (a stereo file whose "
                "channels cancel is silent in mono too): its player is learnt as absent"
            )
    length = max(stem.size for stem in stems)
    shortest = min(stem.size for stem in stems)
    if warn is not None and length - shortest > max(0.1 * sample_rate, 0.01 * length):
        warn(
            f"the stems of piece {piece.folder.name} differ in length ({shortest / sample_rate:.2f}"
            f" to {length / sample_rate:.2f} s): the shorter are padded with silence"
        )
    return np.stack([np.pad(stem, (0, length - stem.size)) for stem in stems])


def _read_notes(path: Path) -> np.ndarray | None:
    """A player's notes for voice ranks; ``None`` when its ``Notes_*`` file is missing or
    unreadable (real solos have none: their excerpts are never ranked)."""
    try:
        return read_notes(path)
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class ExcerptShape:
    """Window geometry: input samples, output samples, and the offset of output in input."""

    input_length: int
    output_length: int
    context: int


def _window(stem: np.ndarray, start: int, length: int) -> np.ndarray:
    """``stem[start : start + length]`` with zeros outside the stem."""
    out = np.zeros(length, dtype=np.float32)
    lo, hi = max(start, 0), min(start + length, stem.size)
    if hi > lo:
        out[lo - start : hi - start] = stem[lo:hi]
    return out


def _window_at_speed(
    stem: np.ndarray,
    start: int,
    length: int,
    speed: float,
    lead: int = 0,
    warp: np.ndarray | None = None,
) -> np.ndarray:
    """``length`` samples of ``stem`` read from ``start`` at ``speed`` (1: as recorded; 2: an
    octave up and twice as fast), linearly interpolated, zeros outside the stem, after
    ``lead`` more samples read the same way before them (``(lead + length,)``). The read is
    centred on the window's middle, so the output span stays in the stem where it was.
    ``warp`` ``(lead + length,)``, if given, is added to the read positions (samples): a
    vibrato (:func:`vibrato_warp`)."""
    middle = start + (length - 1) / 2
    positions = middle + (np.arange(-lead, length) - (length - 1) / 2) * speed
    if warp is not None:
        positions = positions + warp
    first = int(np.floor(positions[0]))
    source = _window(stem, first, int(np.ceil(positions[-1])) - first + 2)
    return np.interp(positions - first, np.arange(source.size), source).astype(np.float32)


def vibrato_warp(count: int, cents: float, cycles_per_sample: float, phase: float) -> np.ndarray:
    """``(count,)`` read-position offsets (samples) of a sinusoidal vibrato: read with them,
    the speed is ``1 + cents * ln 2 / 1200 * sin(2 pi f n + phase)``, within 0.2 % of
    ``2 ** (cents * sin(...) / 1200)`` up to 100 cents, so the pitch swings by ``cents``
    either way. The offsets swing about zero (at most ``cents * ln 2 / 1200 / (2 pi f)``
    samples: 1 ms at 40 cents and 4.5 Hz), so the read stays where it was on average."""
    amplitude = cents * np.log(2) / 1200 / (2 * np.pi * cycles_per_sample)
    angle = 2 * np.pi * cycles_per_sample * np.arange(count) + phase
    return -amplitude * np.cos(angle)


#: the rates (Hz) a vibrato is drawn between: string and wind players' usual range
VIBRATO_HZ = (4.5, 7.0)


class ExcerptDataset(Dataset):
    """Map-style dataset: ``dataset[index]`` -> dict of tensors for one excerpt.

    Keys: ``mixture (1, T_in)``, ``labels (K,)`` int64, ``targets (K, T_out)``, ``ensemble
    (NUM_INSTRUMENTS,)`` float32 (players of each instrument in the mixture, queried or not),
    and for models that take them ``appearance (K, A)`` and ``motion (K, M, T_in)`` (the motion on
    the mixture window's samples; zeros for absent instruments). ``appearance_dim`` and
    ``motion_channels`` are the model's: with both 0 it is a label-only model.
    """

    def __init__(
        self,
        pieces: list[PieceAudio],
        shape: ExcerptShape,
        config: DataConfig,
        *,
        seed: int,
        augment: bool = True,
        appearance_dim: int = 0,
        motion_channels: int = 0,
        sample_rate: int = 0,
        motion_window: tuple[float, int, int] | None = None,
        voices: int = 0,
    ) -> None:
        self.pieces = pieces
        self.shape = shape
        self.config = config
        self.seed = seed
        self.augment = augment
        self.appearance_dim = appearance_dim
        self.motion_channels = motion_channels
        self.sample_rate = sample_rate
        #: a model with a motion encoder: its frame rate, context and frames per window
        self.motion_window = motion_window
        #: voices of one instrument the model tells apart (``ModelConfig.voices``)
        self.voices = voices
        #: instrument code -> ``(piece index, player)`` of its players, for codes with two or
        #: more (the candidates of same-instrument pairs)
        self.pair_candidates = {
            code: players
            for code, players in _players_by_instrument(pieces).items()
            if len(players) >= 2
        }
        #: the pieces that are real solo recordings, for ``real_solo_probability``
        self.real_solos = [p for p in pieces if REAL_SOLO_TITLE in p.name]

    @classmethod
    def from_config(
        cls,
        pieces: list[PieceAudio],
        shape: ExcerptShape,
        config: TrainConfig,
        *,
        validation: bool = False,
    ) -> ExcerptDataset:
        """A run's training excerpts (augmented, seed ``run.seed``) or, with ``validation``,
        its fixed validation excerpts (not augmented, seed ``run.seed + 1``), for the
        model's visual inputs and sample rate."""
        model = config.model
        return cls(
            pieces,
            shape,
            config.data,
            seed=config.run.seed + (1 if validation else 0),
            augment=not validation,
            appearance_dim=model.appearance_dim,
            motion_channels=model.motion_channels,
            sample_rate=model.sample_rate,
            motion_window=(
                model.motion_rate,
                motion_encoder_context(model),
                motion_window_frames(model, shape.input_length),
            )
            if model.motion_encoder_channels
            else None,
            voices=model.voices,
        )

    @property
    def label_only_model(self) -> bool:
        """The model takes neither appearance nor motion: same-instrument players are one
        query, and no pairs or label-only excerpts are drawn."""
        return self.appearance_dim == 0 and self.motion_channels == 0

    def __len__(self) -> int:  # indices are unbounded; the sampler decides
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        config, shape = self.config, self.shape
        visual = self.augment and not self.label_only_model
        voice_pair = self.voices > 0 and rng.random() < config.voice_pair_probability
        pair = voice_pair or (visual and rng.random() < config.same_instrument_probability)
        label_only = visual and not pair and rng.random() < config.label_query_probability
        players = self._choose_pair(rng, voice_pair) if pair else None
        voice_pair = voice_pair and players is not None
        players = players or self._choose_players(rng)
        excerpts, instruments, sources, pitches = [], [], [], []
        vibrato_rng = np.random.default_rng([self.seed, index, 1])  # the other draws stay
        for piece, player, offset in players:
            start = offset - shape.context
            speed = 1.0
            if self.augment and config.speed_semitones > 0:
                speed = 2 ** (rng.uniform(-config.speed_semitones, config.speed_semitones) / 12)
            reverb = config.reverb_probability if self.augment else 0.0
            room = None
            if reverb > 0 and rng.random() < reverb:
                room = room_response(rng, self.sample_rate, config.reverb_seconds)
            lead = 0 if room is None else room.size - 1  # history the room's tail needs
            warp = self._vibrato(vibrato_rng, lead + shape.input_length)
            if speed != 1.0 or warp is not None:
                audio = _window_at_speed(
                    piece.stems[player], start, shape.input_length, speed, lead, warp
                )
            else:
                audio = _window(piece.stems[player], start - lead, shape.input_length + lead)
            pitches.append(self._output_pitch(piece, player, offset, speed))
            if self.augment:
                audio *= 10 ** (rng.uniform(-config.gain_db, config.gain_db) / 20)
                if config.colour_db > 0:
                    audio = colour(audio, rng, config.colour_db, self.sample_rate)
            if room is not None:
                audio = reverberate(audio, room)
            excerpts.append(audio)
            instruments.append(piece.instruments[player])
            sources.append((piece, player, start))
        mixture = np.sum(excerpts, axis=0, dtype=np.float32)
        peak = float(np.abs(mixture).max())
        scale = 0.95 / peak if peak > 0.95 else 1.0  # keep the mixture within [-1, 1]
        out = slice(shape.context, shape.context + shape.output_length)
        outputs = [e[out] * scale for e in excerpts]
        voices = None
        if voice_pair:  # the pair's instrument: every player of it ranked, or none
            ranked = [i for i, code in enumerate(instruments) if code == instruments[0]]
            numbers = voice_numbers([pitches[i] for i in ranked])
            if numbers is not None and max(numbers) <= self.voices:
                voices = [0] * len(instruments)
                for i, number in zip(ranked, numbers, strict=True):
                    voices[i] = number
        queries = self._queries(rng, instruments, outputs, sources, pair, label_only, voices)
        level = 1.0  # the recording's level: drawn last, so the rest is as without it
        if self.augment and config.mixture_gain_db > 0:
            level = 10 ** (-rng.uniform(0, config.mixture_gain_db) / 20)
        ensemble = np.zeros(NUM_INSTRUMENTS, np.float32)  # every player, queried or not
        np.add.at(ensemble, [instrument_index(code) for code in instruments], 1.0)
        targets = np.stack([q[1] for q in queries]).astype(np.float32)
        item = {
            "mixture": torch.from_numpy(mixture * np.float32(scale * level)).unsqueeze(0),
            "labels": torch.tensor([instrument_index(q[0]) for q in queries], dtype=torch.long),
            "targets": torch.from_numpy(targets * np.float32(level)),
            "ensemble": torch.from_numpy(ensemble),
        }
        if self.voices:
            item["voices"] = torch.tensor([q[3] for q in queries], dtype=torch.long)
        if self.appearance_dim:
            rows = [self._appearance(source) for _, _, source, _ in queries]
            item["appearance"] = torch.from_numpy(np.stack(rows))
        if self.motion_channels and self.motion_window is not None:
            windows = [self._motion_frames(code, source) for code, _, source, _ in queries]
            item["motion_frames"] = torch.from_numpy(np.stack([frames for frames, _ in windows]))
            offsets = [offset for _, offset in windows]  # each query's own piece and start
            item["motion_offset"] = torch.tensor(offsets, dtype=torch.float64)
            present = [self._has_motion(source) for _, _, source, _ in queries]
            item["motion_present"] = torch.tensor(present, dtype=torch.bool)
        elif self.motion_channels:
            rows = [self._motion(code, source) for code, _, source, _ in queries]
            item["motion"] = torch.from_numpy(np.stack(rows))
        return item

    def _vibrato(self, rng: np.random.Generator, count: int) -> np.ndarray | None:
        """One player's vibrato warp (``data.vibrato_probability``), or ``None``."""
        config = self.config
        if not (self.augment and config.vibrato_probability > 0 and self.sample_rate):
            return None
        if rng.random() >= config.vibrato_probability:
            return None
        cents = rng.uniform(10, config.vibrato_cents)
        hertz = rng.uniform(*VIBRATO_HZ)
        phase = rng.uniform(0, 2 * np.pi)
        return vibrato_warp(count, cents, hertz / self.sample_rate, phase)

    def _output_pitch(
        self, piece: PieceAudio, player: int, offset: int, speed: float
    ) -> float | None:
        """Mean pitch (MIDI) of what ``player`` plays over the excerpt's output, read from
        ``offset`` at ``speed`` (centred, as :func:`_window_at_speed` reads), and
        ``voice_phrase_seconds`` either side; ``None`` without notes (or a sample rate to
        place them)."""
        notes = None if piece.notes is None else piece.notes[player]
        if notes is None or not self.sample_rate:
            return None
        length = self.shape.output_length
        middle = (offset + length / 2) / self.sample_rate
        half = (length / 2 / self.sample_rate + self.config.voice_phrase_seconds) * speed
        pitch = mean_pitch(notes, middle - half, middle + half)
        return None if pitch is None else pitch + 12 * float(np.log2(speed))

    def _appearance(self, source: tuple[PieceAudio, int, int] | None) -> np.ndarray:
        visuals = None if source is None else source[0].visuals
        if source is None or visuals is None:
            return np.zeros(self.appearance_dim, np.float32)
        _, player, _ = source
        return visuals.appearance[player].astype(np.float32)

    def _motion(self, code: str, source: tuple[PieceAudio, int, int] | None) -> np.ndarray:
        """``(M, T_in)`` motion of the queried player over the mixture window."""
        visuals = None if source is None else source[0].visuals
        if source is None or visuals is None:
            return np.zeros((self.motion_channels, self.shape.input_length), np.float32)
        _, player, start = source
        query = Query(code, motion=visuals.motion[player], motion_rate=visuals.rate)
        return motion_at_samples(
            query, start, self.shape.input_length, self.sample_rate, self.motion_channels
        )

    @staticmethod
    def _has_motion(source: tuple[PieceAudio, int, int] | None) -> bool:
        """Whether a query is a player whose motion is known (not a summed label query, an
        absent instrument, or a piece without visuals)."""
        return source is not None and source[0].visuals is not None

    def _motion_frames(
        self, code: str, source: tuple[PieceAudio, int, int] | None
    ) -> tuple[np.ndarray, float]:
        """``(M, F)`` motion of the queried player on the motion encoder's frame clock, and
        the window's first sample in frames (see :func:`motion_frames_window`)."""
        assert self.motion_window is not None
        rate, context, frames = self.motion_window
        start = 0  # a query without motion: zeros, at any offset
        query = Query(code)
        visuals = None if source is None else source[0].visuals
        if source is not None and visuals is not None:
            _, player, start = source
            query = Query(code, motion=visuals.motion[player], motion_rate=visuals.rate)
        return motion_frames_window(
            query, start, frames, self.sample_rate, rate, context, self.motion_channels
        )

    def _choose_players(self, rng: np.random.Generator) -> list[tuple[PieceAudio, int, int]]:
        """``(piece, player, output offset)`` for each player in the excerpt's mixture."""
        config, shape = self.config, self.shape
        remix = self.augment and len(self.pieces) > 1 and rng.random() < config.remix_probability
        if remix:
            count = int(rng.integers(2, 6))
            chosen = []
            for _ in range(count):
                piece = self._remix_piece(rng)
                player = int(rng.integers(piece.stems.shape[0]))
                offset = int(rng.integers(0, max(1, piece.samples - shape.output_length)))
                chosen.append((piece, player, offset))
        else:
            piece = self.pieces[int(rng.integers(len(self.pieces)))]
            offset = int(rng.integers(0, max(1, piece.samples - shape.output_length)))
            chosen = [(piece, player, offset) for player in range(piece.stems.shape[0])]
        rng.shuffle(chosen)
        return self._drop_players(rng, chosen, keep=1)

    def _remix_piece(self, rng: np.random.Generator) -> PieceAudio:
        """A piece for one player of a remixed excerpt: a real solo recording with
        ``real_solo_probability`` (when the split has any), else any piece alike."""
        chance = self.config.real_solo_probability
        if chance > 0 and self.real_solos and rng.random() < chance:
            return self.real_solos[int(rng.integers(len(self.real_solos)))]
        return self.pieces[int(rng.integers(len(self.pieces)))]

    def _drop_players(
        self, rng: np.random.Generator, chosen: list[tuple[PieceAudio, int, int]], keep: int
    ) -> list[tuple[PieceAudio, int, int]]:
        """Leave out each player after the first ``keep`` with ``drop_player_probability``."""
        if not self.augment:
            return chosen
        drop = self.config.drop_player_probability
        return chosen[:keep] + [c for c in chosen[keep:] if rng.random() >= drop]

    def _choose_pair(
        self, rng: np.random.Generator, voices: bool = False
    ) -> list[tuple[PieceAudio, int, int]] | None:
        """Two players of one instrument first, then others; ``None`` if the split has no pair.

        Half the time (when the first player's piece has another player of its instrument) the
        pair and the others are that piece's players at one offset, as in a real ensemble;
        otherwise the second player and up to three others come from anywhere in the split
        (with ``voices``, none of the others plays the pair's instrument).
        """
        codes = list(self.pair_candidates)
        if not codes:
            return None
        candidates = self.pair_candidates[codes[int(rng.integers(len(codes)))]]
        first_piece, first_player = candidates[int(rng.integers(len(candidates)))]
        piece = self.pieces[first_piece]
        code = piece.instruments[first_player]
        partners = [i for i, c in enumerate(piece.instruments) if c == code and i != first_player]
        length = self.shape.output_length
        if partners and rng.random() < 0.5:
            offset = int(rng.integers(0, max(1, piece.samples - length)))
            second = partners[int(rng.integers(len(partners)))]
            others = [i for i in range(len(piece.instruments)) if i not in (first_player, second)]
            rng.shuffle(others)
            chosen = [(piece, first_player), (piece, second)] + [(piece, i) for i in others]
            return self._drop_players(rng, [(p, i, offset) for p, i in chosen], keep=2)
        rivals = [c for c in candidates if c != (first_piece, first_player)]
        second_piece, second_player = rivals[int(rng.integers(len(rivals)))]
        picks = [(first_piece, first_player), (second_piece, second_player)]
        for _ in range(int(rng.integers(0, 4))):
            extra = int(rng.integers(len(self.pieces)))
            player = int(rng.integers(self.pieces[extra].stems.shape[0]))
            if voices and self.pieces[extra].instruments[player] == code:
                continue  # a voice pair ranks two players: no third of theirs joins
            picks.append((extra, player))
        result = []
        for piece_index, player in picks:
            piece = self.pieces[piece_index]
            offset = int(rng.integers(0, max(1, piece.samples - length)))
            result.append((piece, player, offset))
        return self._drop_players(rng, result, keep=2)

    def _queries(
        self,
        rng: np.random.Generator,
        instruments: list[str],
        outputs: list[np.ndarray],
        sources: list[tuple[PieceAudio, int, int]],
        pair: bool = False,
        label_only: bool = False,
        voices: list[int] | None = None,
    ) -> list[QueryRow]:
        """K queries: instrument code, target ``(T_out,)``, the player it is (if one) and the
        voice asked for (0: all players of the instrument).

        With ``pair`` the first two players (one instrument) are queried first; with
        ``label_only`` (or a label-only model) same-instrument players are one summed query.
        With ``voices`` (each player's voice; 0 for players of other instruments) the pair's
        instrument is queried player by player, as voices, and the others by label.
        """
        k = self.config.queries_per_mixture
        length = self.shape.output_length
        present: list[QueryRow]
        players = list(zip(instruments, outputs, sources, strict=True))
        if voices is not None:
            present = [(c, a, s, v) for (c, a, s), v in zip(players, voices, strict=True) if v]
            present += _merged(
                [(c, a) for (c, a, _), v in zip(players, voices, strict=True) if not v], length
            )
        elif self.label_only_model or label_only:
            present = _merged([(c, a) for c, a, _ in players], length)
            pair = False  # one summed query holds the pair
        else:
            present = [(c, a, s, 0) for c, a, s in players]
        order = rng.permutation(len(present))
        if pair:
            order = np.concatenate([[0, 1], rng.permutation(np.arange(2, len(present)))])
        queries = [present[i] for i in order[:k]]
        absent_codes = [c for c in INSTRUMENT_CODES if c not in set(instruments)]
        wants_absent = self.augment and rng.random() < self.config.absent_query_probability
        if wants_absent and not pair and queries and len(queries) == k:
            queries = queries[:-1]
        while len(queries) < k:
            code = absent_codes[int(rng.integers(len(absent_codes)))]
            queries.append((code, np.zeros(length, np.float32), None, 0))
        return queries


def _merged(players: list[tuple[str, np.ndarray]], length: int) -> list[QueryRow]:
    """One label query per instrument: its players' targets summed, voice 0."""
    summed: dict[str, np.ndarray] = {}
    for code, audio in players:
        summed[code] = summed.get(code, np.zeros(length, np.float32)) + audio
    return [(code, audio, None, 0) for code, audio in summed.items()]


def _biquad(kind: str, frequency: float, gain_db: float, q: float, rate: int) -> np.ndarray:
    """One second-order section ``(6,)`` (RBJ audio-EQ cookbook): ``"low"`` or ``"high"``
    shelf, or ``"peak"``, at ``frequency`` Hz with ``gain_db`` dB."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * frequency / rate
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cos, 1 - alpha * a]
        d = [1 + alpha / a, -2 * cos, 1 - alpha / a]
    else:
        root = 2 * np.sqrt(a) * alpha
        sign = 1 if kind == "low" else -1
        b = [
            a * ((a + 1) - sign * (a - 1) * cos + root),
            sign * 2 * a * ((a - 1) - sign * (a + 1) * cos),
            a * ((a + 1) - sign * (a - 1) * cos - root),
        ]
        d = [
            (a + 1) + sign * (a - 1) * cos + root,
            -sign * 2 * ((a - 1) + sign * (a + 1) * cos),
            (a + 1) + sign * (a - 1) * cos - root,
        ]
    return np.array(b + d) / d[0]


def colour(audio: np.ndarray, rng: np.random.Generator, max_db: float, rate: int) -> np.ndarray:
    """One player's random colouring ``(T,) -> (T,)``: a low shelf (80-400 Hz), a high shelf
    (2-7 kHz) and a peak (200 Hz-5 kHz, Q 0.7-3), each within ±``max_db`` dB.

    It stands for what differs between real players and the soundfonts: the instrument
    maker, the microphone and its placement, the room. The same filter shapes the mixture
    and the target, so the model learns to return the player as recorded.
    """
    from scipy.signal import sosfilt

    top = 0.4 * rate  # every corner stays well below Nyquist, whatever the model's rate
    sections = np.stack(
        [
            _biquad("low", rng.uniform(80, 400), rng.uniform(-max_db, max_db), 0.7, rate),
            _biquad(
                "high",
                rng.uniform(min(2000, top / 2), min(7000, top)),
                rng.uniform(-max_db, max_db),
                0.7,
                rate,
            ),
            _biquad(
                "peak",
                float(np.exp(rng.uniform(np.log(200), np.log(min(5000, top))))),
                rng.uniform(-max_db, max_db),
                rng.uniform(0.7, 3.0),
                rate,
            ),
        ]
    )
    return sosfilt(sections, audio).astype(np.float32)


def _players_by_instrument(pieces: list[PieceAudio]) -> dict[str, list[tuple[int, int]]]:
    """Instrument code -> ``(piece index, player index)`` of every player of it."""
    table: dict[str, list[tuple[int, int]]] = {}
    for piece_index, piece in enumerate(pieces):
        for player, code in enumerate(piece.instruments):
            table.setdefault(code, []).append((piece_index, player))
    return table


class StepSampler(Sampler[int]):
    """Global excerpt indices for steps ``start_step, start_step + 1, ...`` of one rank.

    Step ``s`` of rank ``r`` of ``world`` takes indices ``(s * world + r) * B + i`` for
    ``i < B``: disjoint across ranks and steps, and the same after a resume.
    """

    def __init__(
        self,
        start_step: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        steps: int | None = None,
    ) -> None:
        self.start_step = start_step
        self.batch_size = batch_size
        self.rank = rank
        self.world = world
        self.steps = steps

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while self.steps is None or step < self.start_step + self.steps:
            first = (step * self.world + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)
            step += 1

    def __len__(self) -> int:
        return (self.steps or 2**40) * self.batch_size
