"""``vimss data``: make URMP-format training data (``synth``) and validate a tree (``check``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from vimss_cli.cli.common import DebugOption, JsonOption, guarded, stderr_console
from vimss_cli.errors import InputError, OutputError

data_app = typer.Typer(help="Make and check datasets in URMP's layout.", no_args_is_help=True)


@contextmanager
def _piece_progress(enabled: bool, label: str) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """A rich bar counting pieces on stderr, or nothing when stderr is not a terminal."""
    console = stderr_console()
    if not enabled or not console.is_terminal:
        yield None
        return
    # imported here: 0.07 s that every other command (vimss separate's too) need not pay
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("", total=None)

        def update(event: dict[str, Any]) -> None:
            bar.update(
                task,
                total=event["total"],
                completed=event["done"],
                description=event["piece"] or "",
            )

        yield update


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--video-size expects WIDTHxHEIGHT, e.g. 640x360, got {text!r}") from None
    return width, height


def _parse_fonts(values: list[str] | None) -> tuple[Path, ...]:
    """``--soundfonts`` values, each one path or a comma-separated list, ``~`` expanded (the
    shell does not expand it after a comma)."""
    if not values:
        return ()
    paths = (p.strip() for value in values for p in value.split(","))
    return tuple(Path(p).expanduser() for p in paths if p)


@data_app.command("synth")
def synth(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write.")],
    pieces: Annotated[int, typer.Option("--pieces", "-n", help="Number of pieces (1-9999).")],
    split: Annotated[str, typer.Option(help="train, valid or test (disjoint by work).")] = "train",
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same audio bytes.")] = 0,
    seconds: Annotated[
        float, typer.Option(help="Length of each piece in seconds, 3 to 600.")
    ] = 30.0,
    workers: Annotated[int, typer.Option(help="Pieces made in parallel.")] = 1,
    soundfonts: Annotated[
        list[str] | None,
        typer.Option(
            "--soundfonts",
            help="Soundfont files (.sf2/.sf3) and sample-library folders (real per-note "
            "recordings, e.g. violin/A4.mp3) instead of the split's own set; each player "
            "draws one; a path named twice is drawn twice as often.",
        ),
    ] = None,
    sample_rate: Annotated[
        int, typer.Option("--sample-rate", help="Audio rate (Hz): 16000, 22050, 44100 or 48000.")
    ] = 48000,
    video_size: Annotated[str, typer.Option("--video-size", help="WIDTHxHEIGHT.")] = "640x360",
    ensembles: Annotated[
        list[str] | None,
        typer.Option(
            "--ensemble",
            help="Players left to right, e.g. vn,vn (repeatable; pieces cycle through them). "
            "Default: URMP-like ensembles.",
        ),
    ] = None,
    register_shuffle: Annotated[
        float,
        typer.Option(
            "--register-shuffle",
            help="Share of pieces (0-1) whose parts go to the players in a random order, not "
            "highest part to highest instrument, so that register does not name the instrument.",
        ),
    ] = 0.0,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Render ensembles from music21 scores with fluidsynth, film them, write URMP's layout.

    Re-run on the same folder with the same options to resume: finished pieces are kept.
    """

    def run() -> None:
        from vimss_cli.synth import SynthConfig, synthesize

        config = SynthConfig(
            out_dir=out_dir,
            pieces=pieces,
            split=split,
            seed=seed,
            seconds=seconds,
            workers=workers,
            soundfonts=_parse_fonts(soundfonts),
            sample_rate=sample_rate,
            video_size=_parse_size(video_size),
            ensembles=tuple(
                tuple(code.strip() for code in text.split(",")) for text in ensembles or []
            ),
            register_shuffle=register_shuffle,
        )
        with _piece_progress(not as_json, "pieces") as progress:
            report = synthesize(config, progress)
        if as_json:
            typer.echo(json.dumps(report.to_json()))
            return
        console = stderr_console()
        if report.redone:
            console.print(f"redid {len(report.redone)} unfinished piece(s)")
        console.print(
            f"{len(report.generated)} piece(s) made ({report.seconds_generated / 60:.1f} min) in "
            f"{report.wall_seconds:.1f} s, {len(report.kept)} already there from an earlier run "
            f"(kept), in {report.out_dir}"
        )

    guarded(debug, run)


@data_app.command("solos")
def solos(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write pieces into.")],
    sample_rate: Annotated[
        int, typer.Option("--sample-rate", help="Audio rate (Hz): 16000, 22050, 44100 or 48000.")
    ] = 22050,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Write again pieces that exist but differ (another rate, edited)."
        ),
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Write the real solo recordings Debian ships (gcompris, tuxpaint) as one-player pieces."""

    def run() -> None:
        from vimss_cli.synth.real_solos import write_solo_pieces

        if sample_rate not in (16000, 22050, 44100, 48000):
            raise InputError(
                f"--sample-rate must be 16000, 22050, 44100 or 48000, not {sample_rate}"
            )
        if os.path.lexists(out_dir) and not out_dir.is_dir():
            raise OutputError(f"output path exists and is not a directory: {out_dir}")
        pieces = write_solo_pieces(out_dir, sample_rate, force=force)
        kept = len(pieces.folders) - len(pieces.written)
        stderr_console().print(
            f"{len(pieces.written)} real solo piece(s) written"
            + (f", {kept} already there from an earlier run (kept)" if kept else "")
            + f", in {out_dir}"
        )

    guarded(debug, run)


@data_app.command("check")
def check(
    root: Annotated[Path, typer.Option("--root", help="Folder holding the piece folders.")],
    dataset: Annotated[str, typer.Option("--dataset", help="urmp or synth (one layout).")] = "urmp",
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Validate a URMP-layout tree: names, tracks, rates, lengths, mix = sum, video.

    Prints a report; exits with status 1 when any problem is found.
    """

    def run() -> bool:
        from vimss_cli.datacheck import check_dataset

        with _piece_progress(not as_json, "checked") as progress:
            report = check_dataset(dataset, root, progress)
        if as_json:
            typer.echo(json.dumps(report.to_json()))
        else:
            for problem in report.problems:
                typer.echo(f"problem: {problem}")
            typer.echo(
                f"{len(report.pieces)} piece(s), {report.seconds / 60:.1f} min of audio, "
                f"{len(report.problems)} problem(s)"
            )
        return report.ok

    if not guarded(debug, run):
        typer.echo(f"error: {root} does not pass the {dataset} check (problems above)", err=True)
        raise typer.Exit(1)
