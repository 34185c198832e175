"""``vimss inspect VIDEO``: the players the video front end finds, before a long run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vimss_cli.cli.common import DebugOption, JsonOption, guarded, json_error


def inspect_command(
    video: Annotated[Path, typer.Argument(help="A video of the players.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="PNG to write with the boxes drawn [<video name>_players.png, here].",
        ),
    ] = None,
    players: Annotated[
        int | None, typer.Option("--players", help="Number of players (a hint).")
    ] = None,
    boxes: Annotated[
        str | None, typer.Option("--boxes", help="Use these boxes: 'x,y,w,h;x,y,w,h' (pixels).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the PNG if it exists.")] = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show the players found in VIDEO (boxes, instrument guesses) and draw them on a frame."""

    def run() -> None:
        from vimss_cli.media import check_input_path
        from vimss_cli.vision.analysis import analyse_video
        from vimss_cli.vision.drawing import check_png_target, draw_players, write_png
        from vimss_cli.vision.queries import guess_warnings, look_alike_note

        check_input_path(video)
        frame_path = check_png_target(out or Path(f"{video.stem}_players.png"), force)
        analysis = analyse_video(video, players=players, boxes=boxes, check_sound=False)
        write_png(frame_path, draw_players(analysis), force)
        warnings = [
            pointing_at_picture(line, frame_path)
            for line in [*analysis.warnings, *guess_warnings(analysis, video.name)]
        ]
        note = look_alike_note(analysis)
        if as_json:
            document = {**analysis.to_json(), "warnings": warnings, "note": note}
            typer.echo(json.dumps({**document, "frame": str(frame_path)}))
            return
        table = Table("player", "box (x, y, w, h)", "instrument", "confidence", "ImageNet class")
        for p in analysis.players:
            table.add_row(
                str(p.number),
                ", ".join(str(v) for v in p.box),
                p.guess.instrument or ("other" if p.guess.other else "unknown"),
                f"{p.guess.confidence:.2f}",
                p.guess.imagenet_class,
            )
        console = Console(soft_wrap=True)
        console.print(
            f"{video}: {len(analysis.players)} player{'' if len(analysis.players) == 1 else 's'} "
            f"({analysis.source}), "
            f"{analysis.info.width}x{analysis.info.height}"
        )
        console.print(table)
        for line in warnings:
            typer.echo(f"warning: {line}", err=True)
        if note is not None:
            typer.echo(f"note: {note}", err=True)
        console.print(f"boxes drawn in {frame_path}")

    guarded(debug, lambda: json_error(run, as_json))


def pointing_at_picture(warning: str, frame_path: Path) -> str:
    """``warning`` as ``inspect`` itself says it: the advice to check the players with
    `vimss inspect` points at the picture just drawn instead."""
    return warning.replace("with `vimss inspect`", f"in {frame_path}").replace(
        "`vimss inspect`", str(frame_path)
    )
