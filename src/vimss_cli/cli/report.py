"""``vimss report STEMS``: a self-contained HTML page to hear and compare separated stems."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vimss_cli.cli.common import DebugOption, guarded

#: A mixture and its stems (or two stems) may differ in length by this much (a decoder's
#: padding) unwarned.
MAX_LENGTH_GAP_SECONDS = 0.1


def report_command(
    stems: Annotated[
        Path,
        typer.Argument(help="A stem folder written by `vimss separate` (NN_<instrument>.wav)."),
    ],
    mixture: Annotated[
        Path | None,
        typer.Option("--mixture", help="The input that was separated (any file ffmpeg reads)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file [STEMS/report.html].")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing report.")] = False,
    debug: DebugOption = False,
) -> None:
    """Write one HTML page with a synchronised player (play, seek, mute, solo per stem)."""

    def run() -> None:
        from vimss_cli.api import is_stem_name
        from vimss_cli.errors import InputError
        from vimss_cli.listening_report import Track, read_track, write_report
        from vimss_cli.media import check_input_path, probe, read_audio

        if not stems.is_dir():
            raise InputError(f"{stems} is not a folder of stems")
        files = sorted(p for p in stems.iterdir() if is_stem_name(p.name))
        if not files:
            raise InputError(f"no stems (NN_<instrument>.wav) in {stems}")
        tracks = [read_track(p) for p in files]
        lengths = {t.name: t.audio.size / t.rate for t in tracks}
        if max(lengths.values()) - min(lengths.values()) > MAX_LENGTH_GAP_SECONDS:
            listed = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in lengths.items())
            typer.echo(
                f"warning: the stems differ in length ({listed}): are they from one "
                "separation? The page plays them from one clock",
                err=True,
            )
        picture = None
        if mixture is not None:
            check_input_path(mixture)
            if probe(mixture).has_video:  # the players' picture, as `separate --report` has
                players = sum(1 for t in tracks if not t.name.endswith("_rest"))
                picture = _players_picture(mixture, players)
            rate = tracks[0].rate
            tracks.insert(0, Track("mixture", read_audio(mixture, rate), rate))
            heard, separated = tracks[0].audio.size / rate, tracks[1].audio.size / rate
            if abs(heard - separated) > MAX_LENGTH_GAP_SECONDS:
                typer.echo(
                    f"warning: {mixture.name} lasts {heard:.2f} s but the stems "
                    f"{separated:.2f} s: is it the input they were separated from?",
                    err=True,
                )
        page = out or stems / "report.html"
        path = write_report(page, stems.name, tracks, picture, force=force)
        typer.echo(f"report: {path}", err=True)

    guarded(debug, run)


def _players_picture(video: Path, players: int) -> bytes | None:
    """The video's frame with its ``players`` boxes as PNG, or ``None`` (with a warning) when
    they cannot be found: the page is made without it. The players are found again, as
    many as the stems: a separation made with ``--boxes`` may have used other boxes."""
    from vimss_cli.errors import VimssError
    from vimss_cli.vision.analysis import analyse_video
    from vimss_cli.vision.drawing import players_png

    try:
        analysis = analyse_video(video, players=players, check_sound=False)
    except VimssError:  # its hints (--players, --boxes) are separate's, not report's
        typer.echo(
            f"warning: the page has no players' picture: {players} player(s) were not found "
            f"in {video.name} again",
            err=True,
        )
        return None
    return players_png(analysis)
