"""Writing a synthetic dataset in URMP's layout: planning, one piece, manifest, resume.

Every piece is built in a hidden ``.partial-NN`` folder and renamed into place when all its
files are complete; the manifest (``vimss_synth.json``) then records it with its file
sizes. A later run with the same settings keeps the recorded pieces whose files are intact
and redoes everything else (a killed run's partial folder, a damaged or unrecorded piece).
A piece depends only on (seed, split, number), never on the order workers finish in, so one
seed gives the same audio bytes with any ``--workers``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from vimss_cli.atomic import write_text_atomically
from vimss_cli.errors import InputError, OutputError
from vimss_cli.extras import require_extra
from vimss_cli.ffmpeg_io import ffmpeg_executable
from vimss_cli.instruments import INSTRUMENT_CODES
from vimss_cli.progress import ProgressCallback
from vimss_cli.synth import audio, performance, sampler, scores
from vimss_cli.synth.images import ImageSpec, image_pool, load_rgba
from vimss_cli.synth.resources import (
    Soundfont,
    default_soundfonts,
    fluidsynth_executable,
    user_soundfonts,
)
from vimss_cli.synth.sampler import SampleLibrary
from vimss_cli.synth.video import PlayerLook, render_video
from vimss_cli.urmp import SYNTH_MANIFEST_NAME, PieceName, is_synth_manifest, parse_folder_name

#: The shortest excerpt: each part must hold 4 notes of its work in it (scores.draw_excerpt),
#: which at 2 s often failed for four or five players ("no corpus work ... found").
MIN_SECONDS = 3.0

#: Bump when the same settings would produce different files. 2: Bach10's chorales are no
#: longer drawn (scores.REAL_VALIDATION_WORKS). 3: a saxophone part is played by the
#: saxophone of its register (scores.program_for), in a tenor-to-soprano range.
GENERATOR_VERSION = "3"
#: What plays a player: a soundfont (through fluidsynth) or a sample library.
Maker = Soundfont | SampleLibrary
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class SynthConfig:
    """What ``vimss data synth`` was asked for."""

    out_dir: Path
    pieces: int
    split: str = "train"
    seed: int = 0
    seconds: float = 30.0
    workers: int = 1
    soundfonts: tuple[Path, ...] = ()  # empty: the split's own pool
    sample_rate: int = 48000
    video_size: tuple[int, int] = (640, 360)
    ensembles: tuple[tuple[str, ...], ...] = ()  # pieces cycle through; empty: URMP-like
    register_shuffle: float = 0.0  # share of pieces whose parts ignore register


@dataclass
class SynthReport:
    """What a run did."""

    out_dir: Path
    generated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    redone: list[str] = field(default_factory=list)
    seconds_generated: float = 0.0
    wall_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """What ``vimss data synth --json`` prints."""
        return {
            "out_dir": str(self.out_dir),
            "generated": self.generated,
            "kept": self.kept,
            "redone": self.redone,
            "seconds_generated": self.seconds_generated,
            "wall_seconds": round(self.wall_seconds, 3),
        }


def validate(config: SynthConfig) -> None:
    """Raise :class:`InputError` for values no run can use."""
    if config.split not in scores.SPLITS:
        raise InputError(f"unknown --split {config.split!r}; choose one of train, valid, test")
    if config.pieces < 1 or config.pieces > 9999:
        raise InputError(f"--pieces must be between 1 and 9999, got {config.pieces}")
    if not MIN_SECONDS <= config.seconds <= 600.0:
        raise InputError(
            f"--seconds must be between {MIN_SECONDS:g} and 600, got {config.seconds:g} (every "
            "player needs a few notes of its part in the excerpt)"
        )
    if config.workers < 1:
        raise InputError(f"--workers must be at least 1, got {config.workers}")
    if config.sample_rate not in (16000, 22050, 44100, 48000):
        raise InputError(
            f"--sample-rate must be 16000, 22050, 44100 or 48000, not {config.sample_rate}"
        )
    width, height = config.video_size
    if width < 64 or height < 36 or width % 2 or height % 2:
        raise InputError(f"--video-size must be even and at least 64x36, got {width}x{height}")
    if max(width, height) > 3840 or min(width, height) > 2160:  # frames are drawn in memory
        raise InputError(
            f"--video-size must be at most 3840x2160 (4K, or 2160x3840 upright), "
            f"got {width}x{height}"
        )
    for ensemble in config.ensembles:
        unknown = [code for code in ensemble if code not in INSTRUMENT_CODES]
        if unknown:
            raise InputError(
                f"--ensemble {','.join(ensemble)}: unknown instrument {unknown[0]!r}; "
                f"choose from {', '.join(INSTRUMENT_CODES)}"
            )
        if not 2 <= len(ensemble) <= 5:
            raise InputError(f"--ensemble {','.join(ensemble)}: give 2 to 5 players")
    if not 0.0 <= config.register_shuffle <= 1.0:
        raise InputError(
            f"--register-shuffle must be between 0 and 1, got {config.register_shuffle}"
        )


def settings_of(config: SynthConfig, fonts: list[Maker]) -> dict[str, Any]:
    """The settings a resumed run must share with the run that started the folder."""
    return {
        "generator_version": GENERATOR_VERSION,
        "split": config.split,
        "seed": config.seed,
        "seconds": config.seconds,
        "sample_rate": config.sample_rate,
        "video_size": list(config.video_size),
        "soundfonts": [str(font.path) for font in fonts],
        **({"ensembles": [list(e) for e in config.ensembles]} if config.ensembles else {}),
        **({"register_shuffle": config.register_shuffle} if config.register_shuffle else {}),
    }


def piece_rngs(seed: int, split: str, number: int) -> list[np.random.Generator]:
    """Independent generators for the music, performance, sound and picture of one piece."""
    sequence = np.random.SeedSequence([seed, scores.SPLITS.index(split), number])
    return [np.random.default_rng(child) for child in sequence.spawn(4)]


def _file_sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def _plays(maker: Maker, code: str) -> bool:
    return not isinstance(maker, SampleLibrary) or maker.plays(code)


def choose_maker(rng: np.random.Generator, makers: list[Maker], code: str) -> Maker:
    """Draw the maker of one player among those that play instrument ``code``.

    Every soundfont plays every instrument; a sample library only those it has recordings
    of. With soundfonts alone this is the draw earlier versions made, so their data is
    unchanged.
    """
    able = [maker for maker in makers if _plays(maker, code)]
    if not able:
        raise InputError(f"no soundfont or sample library of the pool plays {code}")
    return able[int(rng.integers(len(able)))]


def _sound(
    played: performance.Performance,
    instruments: tuple[str, ...],
    player_fonts: list[Maker],
    rate: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[float], audio.Room]:
    """Render, reverberate, level and mix the players: int16 stems, mix, gains, room."""
    seconds = played.seconds
    room = audio.draw_room(rng, len(instruments))
    fluidsynth = fluidsynth_executable()
    dry_stems: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(instruments)
    for j, maker in enumerate(player_fonts):
        if isinstance(maker, SampleLibrary):
            dry_stems[j] = sampler.render_part(
                maker,
                instruments[j],
                played.players[j],
                played.expression[j],
                played.vibratos[j],
                seconds,
                rate,
            )
    soundfonts = {maker for maker in player_fonts if isinstance(maker, Soundfont)}
    for font in sorted(soundfonts, key=lambda f: str(f.path)):
        tracks = [j for j, used in enumerate(player_fonts) if used == font]
        parts = [
            performance.RenderPart(
                played.players[j],
                played.expression[j],
                scores.program_for(instruments[j], [n.pitch for n in played.players[j]]),
                played.vibratos[j],
            )
            for j in tracks
        ]
        rendered = audio.render_players(fluidsynth, font.path, parts, seconds, rate)
        for j, stem in zip(tracks, rendered, strict=True):
            dry_stems[j] = stem
    wet_stems = [
        audio.convolve(stem, audio.impulse_response(rng, room, j, rate))
        for j, stem in enumerate(dry_stems)
    ]
    stems, mix, gains = audio.balance_and_quantise(wet_stems, rng, rate)
    return stems, mix, gains, room


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    """An RGB colour, each channel drawn from ``[low, high)``."""
    red, green, blue = (int(c) for c in rng.integers(low, high, size=3))
    return red, green, blue


def generate_piece(
    settings: dict[str, Any], fonts: list[Maker], number: int, out_dir: Path
) -> dict[str, Any]:
    """Make piece ``number`` in a partial folder, publish it, return its manifest entry."""
    split, seconds, rate = settings["split"], settings["seconds"], settings["sample_rate"]
    music_rng, perform_rng, sound_rng, picture_rng = piece_rngs(settings["seed"], split, number)
    ensembles = settings.get("ensembles")
    if ensembles:
        instruments = tuple(ensembles[(number - 1) % len(ensembles)])  # pieces cycle
    else:
        instruments = scores.choose_ensemble(music_rng)
    bpm = float(music_rng.uniform(56, 112))
    excerpt = scores.choose_excerpt(
        music_rng,
        scores.works_for_split(split),
        instruments,
        performance.quarters_for(seconds, bpm),
        register_shuffle=settings.get("register_shuffle", 0.0),
    )
    player_fonts = [choose_maker(music_rng, fonts, code) for code in instruments]
    pool = image_pool(split)
    player_images: list[ImageSpec] = [
        pool[code][int(music_rng.integers(len(pool[code])))] for code in instruments
    ]
    played = performance.perform(excerpt, bpm, seconds, perform_rng)
    name = PieceName(number, excerpt.work.title, instruments)
    partial = out_dir / f"{PARTIAL_PREFIX}{number:02d}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()

    stems, mix, gains, room = _sound(played, instruments, player_fonts, rate, sound_rng)
    for j in range(len(instruments)):
        audio.write_wav16(partial / name.stem_name(j + 1), stems[j], rate)
        (partial / name.notes_name(j + 1)).write_text(performance.notes_text(played.players[j]))
        (partial / name.f0_name(j + 1)).write_text(
            performance.f0_text(played.players[j], seconds, played.vibratos[j])
        )
    audio.write_wav16(partial / name.mix_name(), mix, rate)
    performance.write_score_midi(partial / name.score_name(), excerpt, bpm)

    looks = [
        PlayerLook(
            code,
            load_rgba(spec),
            _colour(picture_rng, 30, 220),
            _colour(picture_rng, 120, 240),
            spec.scale,
        )
        for code, spec in zip(instruments, player_images, strict=True)
    ]
    width, height = settings["video_size"]
    render_video(
        str(partial / name.video_name()),
        looks,
        played.players,
        seconds,
        (width, height),
        picture_rng,
        ffmpeg_executable(),
        keypoints_path=str(partial / name.pose_name()),
    )

    final = out_dir / name.folder_name
    shutil.rmtree(final, ignore_errors=True)
    os.rename(partial, final)
    return {
        "number": number,
        "folder": name.folder_name,
        "work": excerpt.work.path,
        "work_id": excerpt.work.work_id,
        "composer": excerpt.work.composer,
        "start_quarter": excerpt.start_quarter,
        "part_names": list(excerpt.part_names),
        "instruments": list(instruments),
        "transpositions": list(excerpt.transpositions),
        "parts_by_register": excerpt.by_register,
        "soundfonts": [font.name for font in player_fonts],
        "images": [spec.label for spec in player_images],
        "bpm": round(bpm, 2),
        "rt60": round(room.rt60, 3),
        "gains_db": [round(float(g), 2) for g in gains],
        "notes": [len(notes) for notes in played.players],
        "seconds": seconds,
        "files": _file_sizes(final),
    }


def software_versions() -> dict[str, str]:
    """Versions of what shapes the output beyond the settings (for the manifest)."""
    import subprocess

    import music21

    from vimss_cli import __version__

    result = subprocess.run(
        [fluidsynth_executable(), "--version"], capture_output=True, text=True, check=False
    )
    lines = result.stdout.strip().splitlines()
    return {
        "vimss": __version__,
        "music21": str(music21.__version__),
        "numpy": np.__version__,
        "fluidsynth": lines[0] if lines else "unknown",
    }


def _read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / SYNTH_MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise OutputError(f"cannot read the manifest {path}: {error}") from None
    if not is_synth_manifest(manifest):
        raise OutputError(f"{path} is not a `vimss data synth` manifest; use an empty directory")
    return manifest


def _write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically, with the dataset-wide summary recomputed."""
    pieces = sorted(manifest["pieces"].values(), key=lambda p: p["number"])
    manifest["works"] = sorted({p["work"] for p in pieces})
    manifest["instruments"] = sorted({code for p in pieces for code in p["instruments"]})
    manifest["total_seconds"] = sum(p["seconds"] for p in pieces)
    write_text_atomically(
        out_dir / SYNTH_MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True)
    )


def _open_output(out_dir: Path, settings: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Check the output folder and return its manifest (new or resumed) and redone pieces."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output path exists and is not a directory: {out_dir}")
    manifest = _read_manifest(out_dir) if out_dir.exists() else None
    if manifest is None:
        if out_dir.exists() and any(out_dir.iterdir()):
            raise OutputError(
                f"output directory {out_dir} is not empty and is not a previous "
                "`vimss data synth` run; use an empty directory"
            )
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create {out_dir}: {error.strerror}") from None
    # a run that failed before its first piece is started anew, whatever its settings (a piece
    # in the making has a folder here, so a run still at work is not taken over)
    only_manifest = [p.name for p in out_dir.iterdir()] == [SYNTH_MANIFEST_NAME]
    if manifest is None or (not manifest.get("pieces") and only_manifest):
        manifest = {"settings": settings, "software": software_versions(), "pieces": {}}
        _write_manifest(out_dir, manifest)
        return manifest, []
    if manifest.get("settings") != settings:
        old = manifest.get("settings")
        old = old if isinstance(old, dict) else {}
        differ = [
            f"{key} {old.get(key)!r} there, {settings.get(key)!r} now"
            for key in sorted(set(old) | set(settings), key=str)
            if old.get(key) != settings.get(key)
        ]
        raise OutputError(
            f"output directory {out_dir} holds a run with other settings "
            f"({'; '.join(differ)}); resume it with the same options or use an empty directory"
        )
    redone = []
    for partial in out_dir.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(partial, ignore_errors=True)
        redone.append(partial.name)
    recorded = manifest["pieces"]
    for key, entry in list(recorded.items()):
        folder = out_dir / entry["folder"]
        if not folder.is_dir() or _file_sizes(folder) != entry["files"]:
            shutil.rmtree(folder, ignore_errors=True)
            del recorded[key]
            redone.append(entry["folder"])
    known = {entry["folder"] for entry in recorded.values()}
    for folder in out_dir.iterdir():
        if folder.is_dir() and folder.name not in known and not folder.name.startswith("."):
            try:
                parse_folder_name(folder.name)
            except InputError:
                continue  # not ours: leave it alone
            shutil.rmtree(folder)  # published but never recorded: the run died in between
            redone.append(folder.name)
    _write_manifest(out_dir, manifest)
    return manifest, redone


def synthesize(config: SynthConfig, progress: ProgressCallback | None = None) -> SynthReport:
    """Generate (or complete) a dataset; see the module docstring.

    Raises :class:`InputError`, :class:`OutputError` or :class:`MissingDependencyError`
    before writing anything when the request or the machine cannot work.
    """
    require_extra("data", "music21", "mido", purpose="vimss data synth")
    validate(config)
    fonts: list[Maker] = (
        user_soundfonts(list(config.soundfonts))
        if config.soundfonts
        else list(default_soundfonts(config.split))
    )
    unplayed = [code for code in INSTRUMENT_CODES if not any(_plays(m, code) for m in fonts)]
    if unplayed:
        raise InputError(
            f"no soundfont or sample library given plays {', '.join(unplayed)}; "
            "add a soundfont to --soundfonts to play them"
        )
    fluidsynth_executable()
    image_pool(config.split)
    out_dir = Path(config.out_dir)
    settings = settings_of(config, fonts)
    manifest, redone = _open_output(out_dir, settings)
    report = SynthReport(out_dir=out_dir, redone=redone)
    done_numbers = {int(key) for key in manifest["pieces"]}
    report.kept = [manifest["pieces"][str(n)]["folder"] for n in sorted(done_numbers)]
    todo = [n for n in range(1, config.pieces + 1) if n not in done_numbers]
    started = time.perf_counter()
    total = len(todo)

    def record(entry: dict[str, Any]) -> None:
        manifest["pieces"][str(entry["number"])] = entry
        _write_manifest(out_dir, manifest)
        report.generated.append(entry["folder"])
        report.seconds_generated += entry["seconds"]
        if progress is not None:
            progress({"done": len(report.generated), "total": total, "piece": entry["folder"]})

    if progress is not None:
        progress({"done": 0, "total": total, "piece": None})
    try:
        if config.workers == 1 or total <= 1:
            for number in todo:
                record(generate_piece(settings, fonts, number, out_dir))
        else:
            _run_parallel(config.workers, settings, fonts, todo, out_dir, record)
    except BaseException:
        for partial in out_dir.glob(f"{PARTIAL_PREFIX}*"):
            shutil.rmtree(partial, ignore_errors=True)
        raise
    report.wall_seconds = time.perf_counter() - started
    return report


def _run_parallel(
    workers: int,
    settings: dict[str, Any],
    fonts: list[Maker],
    todo: list[int],
    out_dir: Path,
    record: Callable[[dict[str, Any]], None],
) -> None:
    """Generate ``todo`` in ``workers`` processes, recording each piece as it finishes."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: set[Future[dict[str, Any]]] = {
            pool.submit(generate_piece, settings, fonts, number, out_dir) for number in todo
        }
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    record(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


__all__ = ["SynthConfig", "SynthReport", "synthesize"]
