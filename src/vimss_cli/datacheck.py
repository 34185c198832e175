"""``vimss data check``: validate a URMP-layout tree, real or generated.

Per piece folder it checks the names, that the track count matches the folder name, that
every WAV has one channel, one sample rate and one length, that the mixture is the sum of
the stems (within ``MIX_TOLERANCE_DB``), that the text annotations parse, that the score is
a MIDI file, and that a video is present and lasts as long as the audio. Problems are
collected, not raised: the caller prints the report and exits non-zero when there are any.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from vimss_cli.errors import InputError, MediaError
from vimss_cli.extras import require_extra
from vimss_cli.progress import ProgressCallback
from vimss_cli.synth.real_solos import REAL_SOLO_TITLE
from vimss_cli.urmp import (
    DATASETS,
    FILE_KINDS,
    SYNTH_MANIFEST_NAME,
    Piece,
    PieceName,
    is_synth_manifest,
    parse_folder_name,
)

#: The mixture may differ from the sum of the stems by this much (residual vs mix, dB).
MIX_TOLERANCE_DB = -30.0
#: The video may differ from the audio's duration by this many seconds (or 2 %).
VIDEO_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one piece (or with the tree when ``piece`` is empty)."""

    piece: str
    message: str

    def __str__(self) -> str:
        return f"{self.piece}: {self.message}" if self.piece else self.message


@dataclass
class CheckReport:
    """The outcome of a check: pieces seen, seconds of audio, problems found."""

    root: Path
    pieces: list[str] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "pieces": len(self.pieces),
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            "problems": [{"piece": p.piece, "message": p.message} for p in self.problems],
        }


def check_dataset(
    dataset: str, root: Path, progress: ProgressCallback | None = None
) -> CheckReport:
    """Check the tree under ``root``; raises :class:`InputError` only for unusable arguments."""
    if dataset not in DATASETS:
        raise InputError(f"unknown --dataset {dataset!r}; known: {', '.join(DATASETS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root is not a directory: {root}")
    report = CheckReport(root)
    if dataset == "synth":
        message = check_synth_manifest(root / SYNTH_MANIFEST_NAME)
        if message:
            report.problems.append(Problem("", message))
    candidates = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    folders: list[tuple[Path, PieceName]] = []
    for folder in candidates:
        if not re.match(r"^\d+_", folder.name):
            continue  # URMP keeps other folders at the top level
        try:
            folders.append((folder, parse_folder_name(folder.name)))
        except InputError as error:
            report.problems.append(Problem(folder.name, str(error)))
    if not folders and not report.problems:
        hint = ""
        piece_files = (FILE_KINDS["mixture"][0], FILE_KINDS["stems"][0])
        if any(p.is_file() and p.name.startswith(piece_files) for p in root.iterdir()):
            hint = f"; {root} looks like a piece folder itself: give its parent, {root.parent}"
        report.problems.append(
            Problem("", f"no piece folders (NN_Name_inst1_inst2...) in {root}{hint}")
        )
    numbers: dict[int, str] = {}
    for index, (folder, name) in enumerate(folders):
        if name.number in numbers:
            report.problems.append(
                Problem(
                    folder.name, f"piece number {name.number} also used by {numbers[name.number]}"
                )
            )
        numbers[name.number] = folder.name
        report.pieces.append(folder.name)
        report.problems.extend(check_piece(Piece(folder, name), report))
        if progress is not None:
            progress({"done": index + 1, "total": len(folders), "piece": folder.name})
    return report


#: libsndfile's note on a WAV whose data chunk is shorter than its header says.
TRUNCATED = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.MULTILINE)


def check_synth_manifest(path: Path) -> str | None:
    """What is wrong with a generated split's manifest, or ``None`` (a split without one is
    a URMP-layout folder of other origin, and is checked as such)."""
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return f"{path.name} is not readable JSON ({' '.join(str(error).split())})"
    if not is_synth_manifest(manifest):
        return f"{path.name} is not a `vimss data synth` manifest (no pieces)"
    return None


def check_piece(piece: Piece, report: CheckReport | None = None) -> list[Problem]:
    """Every problem of one piece folder."""
    label = piece.folder.name
    problems: list[Problem] = []

    def problem(message: str) -> None:
        problems.append(Problem(label, message))

    # a real solo (``vimss data solos``) is audio alone: no notes, F0s, score or video
    solo = REAL_SOLO_TITLE in piece.name.title
    files = piece.check_files(("mixture", "stems") if solo else tuple(FILE_KINDS))
    for name in files.missing:
        problem(f"missing {name}")
    for name in files.unexpected:
        problem(f"unexpected {name} (the folder name lists {piece.players} players)")

    wavs = [piece.mix_path, *piece.stem_paths]
    infos = {}
    for path in wavs:
        if path.exists():
            try:
                infos[path] = soundfile.info(str(path))
            except (soundfile.LibsndfileError, RuntimeError) as error:
                problem(f"{path.name} is not a readable WAV ({error})")
    for path, info in infos.items():
        cut = TRUNCATED.search(info.extra_info)
        if cut and int(cut.group(2)) < int(cut.group(1)):
            problem(
                f"{path.name} is truncated: its header declares {int(cut.group(1))} bytes of "
                f"audio, the file holds {int(cut.group(2))}"
            )
        if info.channels != 1:
            problem(f"{path.name} has {info.channels} channels, expected 1")
        if info.frames == 0:
            problem(f"{path.name} holds no samples")
    rates = {info.samplerate for info in infos.values()}
    lengths = {info.frames for info in infos.values()}
    if len(rates) > 1:
        problem(f"WAV sample rates differ: {sorted(rates)}")
    if len(lengths) > 1:
        problem(f"WAV lengths differ: {sorted(lengths)} samples")
    duration = None
    if infos and len(rates) == 1 and len(lengths) == 1:
        duration = next(iter(lengths)) / next(iter(rates))
        if report is not None:
            report.seconds += duration
        if len(infos) == len(wavs) and all(info.channels == 1 for info in infos.values()):
            residual_db = mix_residual_db(piece.mix_path, piece.stem_paths)
            if residual_db > MIX_TOLERANCE_DB:
                problem(
                    f"mixture is not the sum of the stems (residual {residual_db:.1f} dB "
                    f"relative to the mix, limit {MIX_TOLERANCE_DB:.0f} dB)"
                )

    for j in range(1, piece.players + 1):
        for path, columns in ((piece.notes_path(j), 3), (piece.f0_path(j), 2)):
            if path.exists():
                message = check_table(path, columns, duration)
                if message:
                    problem(message)
    if piece.score_path.exists():
        message = check_midi(piece.score_path)
        if message:
            problem(message)
    if piece.video_path.exists():
        message = check_video(piece.video_path, duration)
        if message:
            problem(message)
    return problems


def mix_residual_db(mix_path: Path, stem_paths: list[Path], block: int = 262144) -> float:
    """Energy of (mix - sum of stems) relative to the mix's, in dB, read block by block."""
    residual = 0.0
    energy = 0.0
    handles = [soundfile.SoundFile(str(p)) for p in [mix_path, *stem_paths]]
    try:
        while True:
            blocks = [h.read(block, dtype="float64") for h in handles]
            if blocks[0].size == 0:
                break
            difference = blocks[0] - np.sum(blocks[1:], axis=0)
            residual += float(np.sum(difference**2))
            energy += float(np.sum(blocks[0] ** 2))
    finally:
        for handle in handles:
            handle.close()
    if energy == 0.0:
        return 0.0 if residual == 0.0 else float("inf")
    return 10 * np.log10(max(residual, 1e-30) / energy)


def check_table(path: Path, columns: int, duration: float | None) -> str | None:
    """None if every line holds ``columns`` numbers (times within the audio), else why not."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        return f"{path.name} cannot be read ({error})"
    rows = [line.split() for line in lines if line.strip()]
    if not rows:
        return f"{path.name} is empty"
    for number, row in enumerate(rows, start=1):
        try:
            values = [float(v) for v in row]
        except ValueError:
            return f"{path.name} line {number} is not numbers: {' '.join(row)[:60]!r}"
        if len(values) != columns:
            return f"{path.name} line {number} has {len(values)} columns, expected {columns}"
        if values[0] < 0 or (duration is not None and values[0] > duration + 1.0):
            return f"{path.name} line {number}: time {values[0]} s is outside the audio"
    return None


def check_midi(path: Path) -> str | None:
    """None if ``path`` reads as a MIDI file with notes, else why not."""
    require_extra("data", "mido", purpose="checking a score (Sco_*.mid)")
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except (OSError, ValueError, EOFError, KeyError, IndexError) as error:
        return f"{path.name} is not a readable MIDI file ({error})"
    if not any(m.type == "note_on" for track in midi.tracks for m in track):
        return f"{path.name} holds no notes"
    return None


def video_stream_seconds(path: Path) -> tuple[float | None, str | None]:
    """How far the video packets really go (by reading them, not the header), and ffmpeg's
    complaint if the file is cut short. The packets are copied, not decoded: it is fast."""
    from vimss_cli.ffmpeg_io import copy_pass

    result = copy_pass(path, "v:0")
    complaint = None
    for marker in ("partial file", "Invalid data", "moov atom not found"):
        if marker in result.stderr:
            complaint = marker
    return result.seconds, complaint


def check_video(path: Path, duration: float | None) -> str | None:
    """None if ``path`` has a video stream lasting about ``duration`` seconds, else why not.

    The header's duration is compared, then the packets are read to the end, so a file cut
    short after its header was written (an interrupted copy) is caught too.
    """
    from vimss_cli.media import probe

    try:
        info = probe(path)
    except MediaError as error:
        return f"{path.name} cannot be read as video ({' '.join(str(error).split())})"
    if not info.has_video:
        return f"{path.name} has no video stream"
    if duration is None:
        return None
    tolerance = max(VIDEO_TOLERANCE_S, 0.02 * duration)
    if info.duration is not None and abs(info.duration - duration) > tolerance:
        return f"{path.name} lasts {info.duration:.2f} s but the audio lasts {duration:.2f} s"
    packets, complaint = video_stream_seconds(path)
    if complaint or packets is None or packets < duration - tolerance:
        reach = f"its pictures stop at {packets:.2f} s" if packets is not None else "no pictures"
        return f"{path.name} is truncated or corrupt ({reach}, the audio lasts {duration:.2f} s" + (
            f"; ffmpeg: {complaint})" if complaint else ")"
        )
    return None
