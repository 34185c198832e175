"""``vimss separate``: one stem per player of each input, through :mod:`vimss_cli.batch`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from vimss_cli.cli.common import (
    DebugOption,
    JsonOption,
    ModelOption,
    guarded,
    import_torch,
    json_error,
    printable,
    status,
    stderr_console,
)
from vimss_cli.errors import VimssError
from vimss_cli.instruments import INSTRUMENTS
from vimss_cli.progress import BatchEvents, ProgressCallback
from vimss_cli.stem_names import DEFAULT_TEMPLATE
from vimss_cli.stem_writer import WAV_FORMATS

if TYPE_CHECKING:
    from vimss_cli.batch import BatchReport


@contextmanager
def _progress_display(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A rich progress bar in seconds of audio, or nothing when stderr is not a terminal."""
    console = stderr_console()
    if not enabled or not console.is_terminal:
        yield None
        return
    # imported here: 0.07 s that a run without a terminal (a script's) need not pay
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s of audio"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, tuple[Any, str | None]] = {}  # per input: its task and stage

        def update(event: dict[str, Any]) -> None:
            name, stage = event["input"], event.get("stage")
            label = Path(name).name  # and while the first pass reads the input's peak:
            if stage == "level":
                label += " (reading its level)"
            if name not in tasks:
                task = bar.add_task(label, total=event["total_seconds"])
            else:
                task, previous = tasks[name]
                if previous != stage:  # the separation starts: a fresh bar and clock
                    bar.reset(task, total=event["total_seconds"], description=label)
            tasks[name] = (task, stage)
            bar.update(task, completed=event["done_seconds"])

        yield update


def separate_command(
    inputs: Annotated[list[Path], typer.Argument(help="Audio or video files to separate.")],
    out_dir: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output directory (as demucs: separated/ by default)."),
    ] = Path("separated"),
    instruments: Annotated[
        list[str] | None,
        typer.Option(
            "--instruments",
            "-i",
            help="Players' instruments left to right (1 to 8), e.g. vn,vc; 'auto' (the default "
            "for a video) finds the players and guesses them. Once for every input, or once "
            "per input, in order. Codes: "
            + ", ".join(f"{code} {name}" for code, name in INSTRUMENTS.items())
            + ".",
        ),
    ] = None,
    players: Annotated[
        int | None,
        typer.Option("--players", help="Number of players in the video, 1 to 8 (a hint)."),
    ] = None,
    boxes: Annotated[
        str | None,
        typer.Option("--boxes", help="Players' boxes in the video, 'x,y,w,h;x,y,w,h' (pixels)."),
    ] = None,
    audio: Annotated[
        Path | None,
        typer.Option(
            "--audio",
            help="The sound of a silent video (one INPUT), e.g. URMP's AuMix_*.wav beside its "
            "Vid_*.mp4.",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Treat every doubt about the players (count, instruments, layout) as an "
            "error, for batch use.",
        ),
    ] = False,
    pitch_voices: Annotated[
        bool | None,
        typer.Option(
            "--pitch-voices/--no-pitch-voices",
            help="With a label model, the stem of two players of one instrument is split into "
            "its upper and lower voice by default, the higher to the first named (in a video, "
            "the one further left; in a generated one with Pose_*.npz beside it, by the true "
            "keypoints). --pitch-voices: from any video, each voice given to the player whose "
            "motion follows it (experimental). --no-pitch-voices: one shared stem. See "
            "docs/video.md.",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = "default",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        str,
        typer.Option(click_type=click.Choice(["fp32", "fp16", "bf16"]), help="fp16 needs CUDA."),
    ] = "fp32",
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Windows per forward pass, at most 64. 1 (the default) streams them, each "
            "layer computing its context once; more runs independent windows side by side "
            "(same output).",
        ),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            "--tile",
            help="Output samples per window, at most 1048576 and never more than the input "
            "(default: planned from the model, the number of players and the CPU's cache; "
            "262144 on CUDA). The same output at any tile, to float rounding (about 1e-7: a "
            "16-bit sample may differ by one step).",
        ),
    ] = None,
    wav_format: Annotated[
        str,
        typer.Option(
            "--format",
            click_type=click.Choice(list(WAV_FORMATS)),
            help="WAV (wav16, wav24, float32), FLAC (flac is flac16) or MP3 (lossy, LAME's "
            "best VBR; it holds 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100 and "
            "48000 Hz only: stems at another rate are refused, add --sample-rate 48000 or "
            "44100). Nothing is clipped silently: float32 keeps samples beyond full scale; "
            "other stems of an input beyond full scale are scaled to fit, and any sample still "
            "clipped is counted in a warning.",
        ),
    ] = "wav16",
    no_split: Annotated[
        bool, typer.Option("--no-split", help="One pass over the whole input (engine check).")
    ] = False,
    refine: Annotated[
        bool,
        typer.Option(
            "--refine/--no-refine",
            help="Refine the stems with soft time-frequency masks on the mixture (0.8 dB "
            "more SDR over whole real recordings); --no-refine keeps the network's output.",
        ),
    ] = True,
    harmonic: Annotated[
        bool,
        typer.Option(
            "--harmonic/--no-harmonic",
            help="Sharpen the masks at the harmonics of each stem's pitch (one note at a time "
            "per player, as URMP's instruments play), with harmonic templates learnt on the "
            "recording; --no-harmonic: plain soft masks.",
        ),
    ] = True,
    templates: Annotated[
        bool,
        typer.Option(
            "--templates/--no-templates",
            help="With --harmonic: blend in harmonic templates learnt on the recording (each "
            "instrument heard once; the stems leave up to ~32 s later); --no-templates: the "
            "harmonic masks alone.",
        ),
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace the stems an earlier run wrote for the input (all of them, also "
            "those of other players).",
        ),
    ] = False,
    sample_rate: Annotated[
        str | None,
        typer.Option(
            "--sample-rate",
            metavar="input|model|N",
            show_default="input",
            help="The stems' rate. input: the input's own rate and channels (each channel "
            "separated on its own, the stems resampled back with soxr); model: mono stems at "
            "the model's rate (one pass over a mono downmix, faster); N: N Hz with the "
            "input's channels, resampled with soxr.",
        ),
    ] = None,
    model_rate: Annotated[
        bool, typer.Option("--model-rate", hidden=True, help="Deprecated: --sample-rate model.")
    ] = False,
    rest: Annotated[
        bool,
        typer.Option(
            "--residual",
            "--rest",
            help="Also write NN_rest.wav: the mixture minus the players' stems (what no query "
            "claimed), so the stems sum to the input.",
        ),
    ] = False,
    filename: Annotated[
        str,
        typer.Option(
            "--filename",
            metavar="TEMPLATE",
            help="Where each stem goes in OUTDIR: {input} (the input's name without its "
            "extension), {player} (1, 2, ...; format it as {player:02d}), {instrument} (its "
            "code, player when none is known, rest), {ext} (wav, flac or mp3). It ends with "
            ".{ext}, names {player} in the file name, and only {input} may name a folder.",
        ),
    ] = DEFAULT_TEMPLATE,
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Also write report.html beside the stems (<input>.report.html when inputs "
            "share a folder) to hear and compare them.",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Only warnings and errors: no notes, no progress."),
    ] = False,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help=(
                "Skip inputs whose stems asked for (these players, format and --rest) are "
                "already there; other stems there are refused as without it."
            ),
        ),
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="Go on with the other inputs when one fails; exit 1 at the end if any did.",
        ),
    ] = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Separate each INPUT into one WAV per player: OUTDIR/<input>/<NN>_<instrument>.wav."""

    def run() -> None:
        done = json_error(separate, as_json)  # --json prints one object: what ended the run
        if as_json:
            typer.echo(json.dumps(done.to_json()))
        elif not quiet:
            _print_summary(done)
        if done.failures:
            failed, separated, skipped = len(done.failures), len(done.inputs), len(done.skipped)
            raise VimssError(  # exit code 1: some inputs (or none) were separated
                ("the input failed" if failed == 1 else f"all {failed} inputs failed")
                if failed == len(inputs) and not separated
                else f"{failed} failure{'s' if failed != 1 else ''} (--keep-going): {separated} "
                f"of {len(inputs)} input{'s' if len(inputs) != 1 else ''} separated"
                + (f", {skipped} skipped (their stems exist)" if skipped else "")
            )

    def separate() -> BatchReport:
        import_torch()
        from vimss_cli.batch import BatchOptions, parse_sample_rate, separate_inputs

        like_input, stem_rate = parse_sample_rate(sample_rate, model_rate)
        if model_rate:
            typer.echo("warning: --model-rate is deprecated; use --sample-rate model", err=True)
        options = BatchOptions(
            out_dir=out_dir,
            instruments=instruments,
            players=players,
            boxes=boxes,
            audio=audio,
            strict=strict,
            pitch_voices=pitch_voices,
            model=model,
            device=device,
            precision=precision,
            batch_size=batch_size,
            tile=tile,
            wav_format=wav_format,
            split=not no_split,
            refine=refine,
            harmonic=harmonic,
            templates=templates,
            force=force,
            like_input=like_input,
            sample_rate=stem_rate,
            rest=rest,
            filename=filename,
            listening_report=report,
            skip_existing=skip_existing,
            keep_going=keep_going,
        )
        return separate_inputs(inputs, options, _PrintedEvents(quiet, not (quiet or as_json)))

    guarded(debug, run, terminate_cleanly=True)


class _PrintedEvents(BatchEvents):
    """A batch's warnings, notes (unless ``quiet``) and failures as lines on stderr; its
    phases as spinners and its progress as bars when ``show``."""

    def __init__(self, quiet: bool, show: bool) -> None:
        self.quiet = quiet
        self.show = show

    def warning(self, text: str) -> None:
        typer.echo(f"warning: {printable(text)}", err=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            typer.echo(f"note: {printable(text)}", err=True)

    def failed(self, error: VimssError) -> None:
        typer.echo(f"error: {printable(str(error))}", err=True)

    def phase(self, text: str) -> AbstractContextManager[object]:
        return status(text, self.show)

    def separating(self) -> AbstractContextManager[ProgressCallback | None]:
        return _progress_display(self.show)


def _print_summary(done: BatchReport) -> None:
    """One line per separated input: its length, the time it took, the model, the stems."""
    if done.model is None:
        return  # no model loaded: every input was skipped or failed
    console = stderr_console()
    numbers = "" if done.precision == "fp32" else f", {done.precision}"
    for result in done.inputs:
        names = ", ".join(stem.path.name for stem in result.stems)
        looked = (
            f" (after {result.players_seconds:.1f} s finding the players)"
            if result.players_seconds >= 0.05
            else ""
        )
        console.print(
            printable(
                f"{result.input}: {_duration(result.audio_seconds)} of audio in "
                f"{result.wall_seconds:.1f} s{looked} with model {done.model} on "
                f"{done.device}{numbers} -> {len(result.stems)} "
                f"stem{'' if len(result.stems) == 1 else 's'} in "
                f"{result.stems[0].path.parent}: {names}"
            ),
            markup=False,
        )


def _duration(seconds: float) -> str:
    """``12.3 s``, or under a second in ms (a 0.05 s input is not "0.0 s")."""
    return f"{seconds:.1f} s" if seconds >= 0.95 else f"{seconds * 1000:.3g} ms"
