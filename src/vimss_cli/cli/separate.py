"""``vimss separate``: one stem per player of each input, through :mod:`vimss_cli.api`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from vimss_cli.cli.common import (
    DebugOption,
    JsonOption,
    ModelOption,
    guarded,
    import_torch,
    printable,
    status,
    stderr_console,
)
from vimss_cli.errors import InputError, NoAudioStreamError, VimssError
from vimss_cli.instruments import INSTRUMENTS
from vimss_cli.stem_names import DEFAULT_TEMPLATE, StemTemplate
from vimss_cli.stem_writer import WAV_FORMATS


@contextmanager
def _progress_display(enabled: bool) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """A rich progress bar in seconds of audio, or nothing when stderr is not a terminal."""
    console = stderr_console()
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s of audio"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(event: dict[str, Any]) -> None:
            name = event["input"]
            if name not in tasks:
                tasks[name] = bar.add_task(Path(name).name, total=event["total_seconds"])
            bar.update(tasks[name], completed=event["done_seconds"])

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
            help="Windows per forward pass. 1 (the default) streams them, each layer computing "
            "its context once; more runs independent windows side by side (same output).",
        ),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            "--tile",
            help="Output samples per window (default: planned from the model, the number of "
            "players and the CPU's cache; 262144 on CUDA). Same output at any tile.",
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
        typer.Option("--skip-existing", help="Skip inputs whose stems are already there."),
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
        import_torch()
        from vimss_cli.api import (
            Separator,
            check_outputs_free,
            existing_stems,
            output_folder_name,
            stem_matcher,
            stem_paths,
        )
        from vimss_cli.conditioning import Query
        from vimss_cli.media import check_input_path, probe
        from vimss_cli.stem_writer import (
            check_format_rate,
            check_wav_format,
            ensure_writable_directory,
            stem_extension,
        )
        from vimss_cli.vision.queries import check_strict, describe_plan, plan_players

        like_input, stem_rate = _sample_rate_choice(sample_rate, model_rate)
        if model_rate:
            typer.echo("warning: --model-rate is deprecated; use --sample-rate model", err=True)
        check_wav_format(wav_format)
        if stem_rate is not None:
            check_format_rate(wav_format, stem_rate)
        template = StemTemplate(filename)  # checked before any file is read
        if len(inputs) > 1 and not template.names_input:
            raise InputError(
                f"--filename {filename!r} has no {{input}}: the stems of {len(inputs)} inputs "
                "would share names"
            )
        if len({output_folder_name(p) for p in inputs}) != len(inputs):
            raise InputError("two inputs share a file name stem; their stem folders would collide")
        if audio is not None:
            if len(inputs) != 1:
                raise InputError(f"--audio gives the sound of one input, not {len(inputs)}")
            check_input_path(audio)
            if not probe(audio).has_audio:
                raise NoAudioStreamError(f"--audio {audio} has no audio stream")
        if instruments and len(instruments) not in (1, len(inputs)):
            raise InputError(
                f"give -i once for every input or once per input: {len(instruments)} -i for "
                f"{len(inputs)} inputs"
            )
        per_input = instruments if instruments and len(instruments) == len(inputs) else None
        failures: list[str] = []

        def each(items: list[Any], action: Callable[[Any], Any]) -> list[Any]:
            """``action`` on every item; with --keep-going a failing item is reported and
            dropped instead of ending the run."""
            done = []
            for item in items:
                try:
                    done.append(action(item))
                except VimssError as error:
                    if not keep_going:
                        raise
                    failures.append(f"{_input_of(item)}: {error}")
                    typer.echo(f"error: {printable(str(error))}", err=True)
            return done

        def check(job: tuple[Path, str | None]) -> tuple[Path, str | None, Any]:
            # probe before loading the model, so bad files fail before a long run
            path, codes = job
            info = probe(path)
            if not info.has_audio and audio is None:
                if info.has_video:
                    raise NoAudioStreamError(
                        f"{info.path} is a video with no audio stream; give its sound with "
                        "--audio FILE (for URMP, the piece's AuMix_*.wav)"
                    )
                raise NoAudioStreamError(f"{info.path} is a file with no audio stream")
            if like_input and not (stem_rate or no_split or audio) and info.audio_sample_rate:
                check_format_rate(wav_format, info.audio_sample_rate)  # stems at its rate
            # earlier stems are refused before a long video analysis
            check_outputs_free(
                stem_paths(info.path, out_dir, [Query(None)], filename=filename),
                force,
                stem_matcher(info.path, filename),
            )
            return path, codes, info

        jobs = [(p, per_input[j] if per_input else (instruments[0] if instruments else None))
                for j, p in enumerate(inputs)]  # fmt: skip
        if skip_existing and not force:
            kept = []
            for path, codes in jobs:
                if existing_stems(path, out_dir, filename):
                    if not quiet:
                        typer.echo(f"note: {printable(str(path))}: stems exist, skipped", err=True)
                else:
                    kept.append((path, codes))
            jobs = kept
        checked = each(jobs, check)

        def plan(job: tuple[Path, str | None, Any]) -> Any:
            _, codes, info = job
            planned = plan_players(info, codes, players, boxes, audio)
            paths = stem_paths(
                planned.path,
                out_dir,
                planned.label_queries(),
                stem_extension(wav_format),
                filename,
                rest=rest,
            )
            check_outputs_free(paths, force, stem_matcher(planned.path, filename))
            if strict:
                check_strict([planned])
            return planned

        with status("finding the players", not (quiet or as_json)):
            plans = each(checked, plan)
        for planned in plans:
            for line in planned.warnings:
                typer.echo(f"warning: {printable(line)}", err=True)
        reports = []
        separator = None  # none loaded when every input was skipped or failed
        if plans:
            ensure_writable_directory(out_dir)
            with status(f"loading model {model}", not (quiet or as_json)):
                separator = Separator(
                    model, device=device, precision=precision, batch_size=batch_size, tile=tile
                )
            if not separator.loaded.trained:
                typer.echo(
                    f"warning: model {separator.loaded.name!r} is untrained (randomly "
                    "initialised); its stems are not real separations",
                    err=True,
                )

            def queries_of(planned: Any) -> tuple[Any, Any]:
                shown = len(planned.warnings)
                queries = planned.queries(separator.model.config)
                if strict:
                    check_strict([planned])
                for line in planned.warnings[shown:]:
                    typer.echo(f"warning: {printable(line)}", err=True)
                return planned, queries

            with status("looking at the players", not (quiet or as_json)):
                ready = each(plans, queries_of)
            for planned, _ in [] if quiet else ready:
                for line in [describe_plan(planned), *planned.notes]:
                    if line:
                        typer.echo(f"note: {printable(line)}", err=True)
            with _progress_display(not (as_json or quiet)) as progress:

                def separate_one(item: tuple[Any, Any]) -> tuple[Any, Any]:
                    planned, queries = item
                    result = separator.separate_file(
                        planned.path,
                        queries,
                        out_dir,
                        wav_format=wav_format,
                        split=not no_split,
                        force=force,
                        progress=progress,
                        audio_path=audio,
                        like_input=like_input,
                        rest=rest,
                        sample_rate=stem_rate,
                        filename=filename,
                    )
                    return planned, result

                done = each(ready, separate_one)
            plans = [planned for planned, _ in done]
            reports = [result for _, result in done]
        for result in reports:
            for line in result.warnings:
                typer.echo(f"warning: {printable(line)}", err=True)
        if report:
            for plan, result in zip(plans, reports, strict=True):
                path = _write_listening_report(plan, result, audio, out_dir, filename)
                if not quiet:
                    typer.echo(f"note: listening report in {printable(str(path))}", err=True)
        if as_json:
            document = {
                "model": separator and separator.loaded.name,
                "device": separator and str(separator.device),
                "precision": separator and separator.precision,
                "inputs": [r.to_json() for r in reports],
            }
            typer.echo(json.dumps(document))
        elif not quiet and separator is not None:
            console = stderr_console()
            numbers = "" if separator.precision == "fp32" else f", {separator.precision}"
            for result in reports:
                names = ", ".join(stem.path.name for stem in result.stems)
                console.print(
                    printable(
                        f"{result.input}: {result.audio_seconds:.1f} s of audio in "
                        f"{result.wall_seconds:.1f} s with model {separator.loaded.name} on "
                        f"{separator.device}{numbers} -> {len(result.stems)} stems in "
                        f"{result.stems[0].path.parent}: {names}"
                    ),
                    markup=False,
                )

        if failures:
            raise VimssError(  # exit code 1: some inputs were separated, some were not
                f"{len(failures)} of {len(inputs)} inputs failed (--keep-going); the others "
                "were separated"
            )

    guarded(debug, run, terminate_cleanly=True)


def _sample_rate_choice(text: str | None, model_rate: bool) -> tuple[bool, int | None]:
    """``--sample-rate`` (and the deprecated ``--model-rate``) -> (stems like the input, their
    rate in Hz or ``None`` for the input's own)."""
    from vimss_cli.api import SAMPLE_RATES

    choice = "model" if model_rate and text is None else (text or "input").strip().lower()
    if model_rate and choice != "model":
        raise InputError(f"--model-rate means --sample-rate model, not {text}; give one of them")
    if choice in ("input", "model"):
        return choice == "input", None
    if not choice.isdecimal() or int(choice) not in SAMPLE_RATES:
        raise InputError(
            f"--sample-rate takes input, model or a whole number of Hz from "
            f"{SAMPLE_RATES.start} to {SAMPLE_RATES.stop - 1} (e.g. 48000), got {text!r}"
        )
    return True, int(choice)


def _input_of(item: Any) -> str:
    """The input file a step of ``separate`` works on, for naming it in a failure."""
    first = item[0] if isinstance(item, tuple) else item
    return str(getattr(first, "path", first))


def _write_listening_report(
    plan: Any, result: Any, audio: Path | None, out_dir: Path, filename: str
) -> Path:
    """``report.html`` beside one input's stems: the mixture, the stems, the players' frame."""
    import cv2

    from vimss_cli.api import output_folder_name
    from vimss_cli.listening_report import Track, read_track, write_report
    from vimss_cli.media import read_audio

    name = output_folder_name(result.input)
    tracks = [read_track(stem.path) for stem in result.stems]
    rate = tracks[0].rate
    tracks.insert(0, Track("mixture", read_audio(audio or result.input, rate), rate))
    picture = None
    if plan.analysis is not None:
        from vimss_cli.vision.drawing import draw_players

        frame = cv2.cvtColor(draw_players(plan.analysis), cv2.COLOR_RGB2BGR)
        picture = cv2.imencode(".png", frame)[1].tobytes()
    path = StemTemplate(filename).report_path(out_dir, name)
    return write_report(path, name, tracks, picture, force=True)
