"""What to score: the tracks of a URMP-layout tree, or of folders of references and estimates."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from vimss_cli.errors import InputError
from vimss_cli.instruments import INSTRUMENT_CODES
from vimss_cli.urmp import (
    DATASETS,
    MIX_PREFIX,
    VIDEO_PREFIX,
    Piece,
    list_pieces,
    parse_stem_file_name,
)


@dataclass(frozen=True)
class Track:
    """One piece to score.

    Attributes:
        piece: the piece's name (URMP folder name, or the references folder's name).
        names: the reference file names, one per stem.
        instruments: URMP instrument code per stem, or ``None`` when unknown.
        references: reference paths ``(K,)``.
        mixture: the mixture path, or ``None`` (then the sum of the references is used).
        estimates: user estimate paths ``(K,)``, or ``None``.
        video: the piece's video (players left to right in track order), or ``None``.
        unmatched: audio files beside the estimates that match no reference (not scored).
    """

    piece: str
    names: tuple[str, ...]
    instruments: tuple[str | None, ...]
    references: tuple[Path, ...]
    mixture: Path | None = None
    estimates: tuple[Path, ...] | None = None
    video: Path | None = None
    unmatched: tuple[str, ...] = ()

    @property
    def players(self) -> int:
        return len(self.references)

    def fingerprint(self) -> str:
        """Changes whenever an input file changes (size or modification time)."""
        paths = [
            *self.references,
            *(self.estimates or ()),
            *([self.mixture] if self.mixture else []),
        ]
        parts = []
        for path in paths:
            if path.exists():
                stat = path.stat()
                parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def parse_pieces(text: str | None) -> list[int] | None:
    """``"01,13"`` -> ``[1, 13]``; ``None`` -> all pieces."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or not all(part.isdigit() for part in parts):
        raise InputError(f"--pieces expects comma-separated piece numbers like 01,13; got {text!r}")
    return [int(part) for part in parts]


def check_piece_files(piece: Piece) -> None:
    """Refuse a piece whose stems are missing or disagree with its folder name (a missing
    mixture is no error: the references' sum stands in)."""
    check = piece.check_files(("stems", "mixture"), by_suffix=True)
    if check.unexpected:
        raise InputError(
            f"piece folder {piece.folder.name} disagrees with its files: it names "
            f"{', '.join(piece.name.instruments)} but holds {', '.join(check.unexpected)}"
        )
    missing = [name for name in check.missing if name != piece.mix_path.name]
    if missing:
        raise InputError(f"piece {piece.folder.name} is missing stems: {', '.join(missing)}")


def urmp_tracks(root: Path, pieces: list[int] | None = None) -> list[Track]:
    """Tracks of a URMP-layout tree (real URMP or ``vimss data synth`` output)."""
    tracks = []
    for piece in list_pieces(Path(root), pieces):
        check_piece_files(piece)
        tracks.append(
            Track(
                piece=piece.folder.name,
                names=tuple(path.name for path in piece.stem_paths),
                instruments=piece.name.instruments,
                references=tuple(piece.stem_paths),
                mixture=piece.mix_path if piece.mix_path.is_file() else None,
                video=piece.video_path if piece.video_path.is_file() else None,
            )
        )
    return tracks


def _instrument_from_name(name: str) -> str | None:
    """``AuSep_1_vn_01_X.wav`` -> ``vn``; ``02_vc.wav`` -> ``vc``; else ``None``."""
    stem = parse_stem_file_name(name)
    if stem is not None:
        return stem[1]
    tokens = re.split(r"[^a-z]+", Path(name).stem.lower())
    codes = [token for token in tokens if token in INSTRUMENT_CODES]
    return codes[0] if len(codes) == 1 else None


#: Audio files ``--references``/``--estimates`` folders may hold (libsndfile or ffmpeg reads them).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".m4a", ".opus")


def _audio_files(folder: Path) -> list[Path]:
    """The audio files of a folder, without URMP's mixture (``AuMix_*``), which is no stem."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(MIX_PREFIX)
    )


def _estimate_for(reference: Path, folder: Path) -> Path:
    """The estimate of one reference in ``folder``: the same file name, the same name in
    another audio format (``01_vn.flac`` for ``01_vn.wav``), or for a URMP
    ``AuSep_<n>_<code>_*`` reference, ``vimss separate``'s ``<nn>_<code>`` (or
    ``<nn>_player``) in any audio format. The first candidate when none exists.

    Raises:
        InputError: no file of the same name, but several of the same name in other formats.
    """
    candidates = [folder / reference.name]
    if not candidates[0].is_file():
        same_name = [folder / f"{reference.stem}{suffix}" for suffix in AUDIO_SUFFIXES]
        others = [path for path in same_name if path.is_file()]
        if len(others) > 1:
            names = ", ".join(p.name for p in others)
            raise InputError(f"{reference.name}: several estimates could be its ({names})")
        candidates += others
    for name in _separate_names(reference):
        candidates += [folder / f"{name}{suffix}" for suffix in AUDIO_SUFFIXES]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _separate_names(reference: Path) -> list[str]:
    """The names (without suffix) ``vimss separate`` gives the estimate of a URMP
    ``AuSep_<n>_<code>_*`` reference: ``<nn>_<code>`` and ``<nn>_player``; none otherwise."""
    stem = parse_stem_file_name(reference.name)
    if stem is None:
        return []
    number, code = stem
    return [f"{number:02d}_{code}", f"{number:02d}_player"]


def _estimate_names(reference: Path) -> str:
    """What an estimate of ``reference`` may be called, for an error message."""
    names = [reference.name, *(f"{name}.wav" for name in _separate_names(reference))]
    return " or ".join(names) + " (any audio format)"


def _estimate_folder(estimates: Path, piece: str) -> Path:
    """Where a piece's estimates are: ``ESTIMATES/<piece>``, or the folder ``vimss separate``
    made for the piece's mixture or video (``AuMix_<piece>``, ``Vid_<piece>``)."""
    for name in (piece, f"{MIX_PREFIX}{piece}", f"{VIDEO_PREFIX}{piece}"):
        if (estimates / name).is_dir():
            return estimates / name
    return estimates / piece


def folder_tracks(references: Path, estimates: Path) -> list[Track]:
    """Estimates matched to references by file name (see :func:`_estimate_for`).

    Either both folders hold audio files directly (one track; the estimates may also be the
    ``-o`` folder of ``vimss separate``, holding the piece's folder), or one subfolder per
    track. References may be a URMP piece folder (its one ``AuMix`` is the mixture the
    baselines use, not a stem) and estimates the folder ``vimss separate`` wrote, with no
    renaming.
    """
    references, estimates = Path(references), Path(estimates)
    for folder, option in ((references, "--references"), (estimates, "--estimates")):
        if not folder.is_dir():
            raise InputError(f"{option} is not a directory: {folder}")
    if _audio_files(references):
        # the estimates themselves, or within them the folder vimss separate made for the
        # piece (its -o folder given as it is)
        inner = _estimate_folder(estimates, references.resolve().name)  # "." has a name
        use_inner = not _audio_files(estimates) and inner.is_dir()
        pairs = [(references, inner if use_inner else estimates)]
    else:
        subfolders = sorted(p for p in references.iterdir() if p.is_dir() and _audio_files(p))
        pairs = [(sub, _estimate_folder(estimates, sub.name)) for sub in subfolders]
    if not pairs:
        raise InputError(f"no reference audio files in {references} or its subfolders")
    tracks = []
    for reference_folder, estimate_folder in pairs:
        reference_paths = _audio_files(reference_folder)
        estimate_paths = [_estimate_for(path, estimate_folder) for path in reference_paths]
        missing = [
            f"{reference.name} (looked for {_estimate_names(reference)})"
            for reference, path in zip(reference_paths, estimate_paths, strict=True)
            if not path.is_file()
        ]
        if missing:
            raise InputError(
                f"missing estimates in {estimate_folder} for the references of "
                f"{reference_folder}: {'; '.join(missing)}"
            )
        names = tuple(path.name for path in reference_paths)
        used = {path.resolve() for path in (*estimate_paths, *reference_paths)}
        unmatched = tuple(
            path.name for path in _audio_files(estimate_folder) if path.resolve() not in used
        )
        mixtures = sorted(
            p
            for p in reference_folder.glob(f"{MIX_PREFIX}*")
            if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
        )
        tracks.append(
            Track(
                piece=reference_folder.name,
                names=names,
                instruments=tuple(_instrument_from_name(name) for name in names),
                references=tuple(reference_paths),
                estimates=tuple(estimate_paths),
                mixture=mixtures[0] if len(mixtures) == 1 else None,
                unmatched=unmatched,
            )
        )
    return tracks


def select_tracks(
    dataset: str | None,
    root: Path | None,
    pieces: str | None,
    references: Path | None,
    estimates: Path | None,
) -> tuple[list[Track], bool]:
    """The tracks ``vimss eval`` scores, and whether they carry the user's estimates: the
    ``pieces`` (``"01,13"``, ``None`` for all) of a URMP-layout ``dataset`` under ``root``, or
    folders of ``references`` and ``estimates`` (:func:`folder_tracks`)."""
    folders = references is not None or estimates is not None
    if dataset is not None and folders:
        raise InputError("give either --dataset or --references/--estimates, not both")
    if folders:
        if references is None or estimates is None:
            raise InputError("--references and --estimates go together")
        if pieces is not None:
            raise InputError("--pieces applies to --dataset only")
        return folder_tracks(references, estimates), True
    if dataset is None:
        raise InputError(
            "say what to score: --dataset urmp|synth --root DIR, "
            "or --references DIR --estimates DIR"
        )
    if dataset not in DATASETS:
        raise InputError(f"unknown --dataset {dataset!r}; choose urmp or synth")
    if root is None:
        raise InputError(f"--dataset {dataset} needs --root DIR")
    return urmp_tracks(root, parse_pieces(pieces)), False
