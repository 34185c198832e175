"""Training excerpts from a URMP-layout tree, with the augmentation separation training uses.

Each excerpt is generated from its global index alone (``numpy.random.default_rng([seed,
index])``), so a run resumes exactly at any step, worker processes need no shared state, and
distributed ranks draw disjoint indices (:class:`StepSampler`).

An excerpt is a mixture window of the model's input length and K queries with their target
stems over the output span:

* per-stem gain, uniform in ±``gain_db``;
* remixing: with ``remix_probability`` the players come from several pieces of the split;
* dropping players: each extra player is left out of the mix with ``drop_player_probability``;
* absent instruments: a query for an instrument that is not playing, whose target is silence.

Models that take only labels cannot tell two players of one instrument apart, so for them the
target of a label is the sum of all players of that instrument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vimss_cli.errors import InputError, MediaError
from vimss_cli.instruments import INSTRUMENT_CODES, instrument_index
from vimss_cli.media import read_audio
from vimss_cli.training.config import DataConfig
from vimss_cli.urmp import Piece, list_pieces

WarningCallback = Callable[[str], None]


@dataclass
class PieceAudio:
    """The stems of one piece in memory: ``stems (players, samples)`` float32 at model rate."""

    name: str
    instruments: tuple[str, ...]
    stems: np.ndarray

    @property
    def samples(self) -> int:
        return int(self.stems.shape[1])


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


def load_pieces(
    folder: Path, sample_rate: int, warn: WarningCallback | None = None
) -> tuple[list[PieceAudio], list[str]]:
    """Read every piece's stems; pieces with unreadable audio are skipped with a warning.

    Returns the pieces and the list of skipped files.
    """
    pieces: list[PieceAudio] = []
    skipped: list[str] = []
    for piece in list_pieces(folder):
        stems = _read_stems(piece, sample_rate, skipped, warn)
        if stems is not None:
            pieces.append(PieceAudio(piece.folder.name, piece.name.instruments, stems))
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
    length = max(stem.size for stem in stems)
    return np.stack([np.pad(stem, (0, length - stem.size)) for stem in stems])


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


class ExcerptDataset(Dataset):
    """Map-style dataset: ``dataset[index]`` -> dict of tensors for one excerpt.

    Keys: ``mixture (1, T_in)``, ``labels (K,)`` int64, ``targets (K, T_out)``.
    """

    def __init__(
        self,
        pieces: list[PieceAudio],
        shape: ExcerptShape,
        config: DataConfig,
        seed: int,
        augment: bool = True,
        merge_same_instrument: bool = True,
    ) -> None:
        self.pieces = pieces
        self.shape = shape
        self.config = config
        self.seed = seed
        self.augment = augment
        self.merge_same_instrument = merge_same_instrument

    def __len__(self) -> int:  # indices are unbounded; the sampler decides
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        config, shape = self.config, self.shape
        players = self._choose_players(rng)
        excerpts, instruments = [], []
        for piece, player, offset in players:
            start = offset - shape.context
            audio = _window(piece.stems[player], start, shape.input_length)
            if self.augment:
                audio *= 10 ** (rng.uniform(-config.gain_db, config.gain_db) / 20)
            excerpts.append(audio)
            instruments.append(piece.instruments[player])
        mixture = np.sum(excerpts, axis=0, dtype=np.float32)
        peak = float(np.abs(mixture).max())
        scale = 0.95 / peak if peak > 0.95 else 1.0  # keep the mixture within [-1, 1]
        out = slice(shape.context, shape.context + shape.output_length)
        labels, targets = self._queries(rng, instruments, [e[out] * scale for e in excerpts])
        return {
            "mixture": torch.from_numpy(mixture * scale).unsqueeze(0),
            "labels": torch.tensor(labels, dtype=torch.long),
            "targets": torch.from_numpy(np.stack(targets).astype(np.float32)),
        }

    def _choose_players(self, rng: np.random.Generator) -> list[tuple[PieceAudio, int, int]]:
        """``(piece, player, output offset)`` for each player in the excerpt's mixture."""
        config, shape = self.config, self.shape
        remix = self.augment and len(self.pieces) > 1 and rng.random() < config.remix_probability
        if remix:
            count = int(rng.integers(2, 6))
            chosen = []
            for _ in range(count):
                piece = self.pieces[int(rng.integers(len(self.pieces)))]
                player = int(rng.integers(piece.stems.shape[0]))
                offset = int(rng.integers(0, max(1, piece.samples - shape.output_length)))
                chosen.append((piece, player, offset))
        else:
            piece = self.pieces[int(rng.integers(len(self.pieces)))]
            offset = int(rng.integers(0, max(1, piece.samples - shape.output_length)))
            chosen = [(piece, player, offset) for player in range(piece.stems.shape[0])]
        rng.shuffle(chosen)
        if self.augment:
            kept = chosen[:1] + [
                c for c in chosen[1:] if rng.random() >= config.drop_player_probability
            ]
            chosen = kept
        return chosen

    def _queries(
        self, rng: np.random.Generator, instruments: list[str], outputs: list[np.ndarray]
    ) -> tuple[list[int], list[np.ndarray]]:
        """K label indices and their targets ``(T_out,)`` each."""
        k = self.config.queries_per_mixture
        length = self.shape.output_length
        if self.merge_same_instrument:
            merged: dict[str, np.ndarray] = {}
            for code, audio in zip(instruments, outputs, strict=True):
                merged[code] = merged.get(code, np.zeros(length, np.float32)) + audio
            present = list(merged.items())
        else:
            present = list(zip(instruments, outputs, strict=True))
        order = rng.permutation(len(present))
        queries = [present[i] for i in order[:k]]
        absent_codes = [c for c in INSTRUMENT_CODES if c not in set(instruments)]
        wants_absent = self.augment and rng.random() < self.config.absent_query_probability
        if wants_absent and queries and len(queries) == k:
            queries = queries[:-1]
        while len(queries) < k:
            code = absent_codes[int(rng.integers(len(absent_codes)))]
            queries.append((code, np.zeros(length, np.float32)))
        return [instrument_index(code) for code, _ in queries], [audio for _, audio in queries]


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
