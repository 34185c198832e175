"""``vimss eval``: score a model and the baselines on a URMP-layout tree or folders of WAVs;
``vimss eval compare``: two runs' results side by side."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from vimss_cli.cli.common import (
    DebugOption,
    JsonOption,
    QuietOption,
    guarded,
    import_torch,
    status,
    stderr_console,
)
from vimss_cli.progress import ProgressCallback

eval_app = typer.Typer()


@eval_app.callback(invoke_without_command=True)
def eval_command(
    ctx: typer.Context,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="urmp or synth (URMP layout under --root).")
    ] = None,
    root: Annotated[Path | None, typer.Option("--root", help="Dataset folder.")] = None,
    pieces: Annotated[
        str | None, typer.Option("--pieces", help="Piece numbers to score, e.g. 01,13.")
    ] = None,
    references: Annotated[
        Path | None,
        typer.Option(
            "--references",
            help="Folder of reference stems (any audio; a URMP piece folder works as it is).",
        ),
    ] = None,
    estimates: Annotated[
        Path | None,
        typer.Option(
            "--estimates",
            help="Folder of estimates named as the references, or `vimss separate`'s output.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Also score this model (name, path or hf:...)."),
    ] = None,
    queries: Annotated[
        str,
        typer.Option(
            "--queries",
            help="auto (what the model takes), labels, or video: appearance and motion from "
            "Vid_*.mp4.",
        ),
    ] = "auto",
    pitch_voices: Annotated[
        bool | None,
        typer.Option(
            "--pitch-voices/--no-pitch-voices",
            help="With a label model, the stem of two players of one instrument is split by "
            "pitch as `vimss separate` splits it: by default in register order, the first "
            "named the higher (video: by the true keypoints where Pose_*.npz lies beside). "
            "--pitch-voices: with --queries video, by the players' motion. "
            "--no-pitch-voices: one shared stem.",
            show_default=False,
        ),
    ] = None,
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Score mixture, IRM and IBM too.")
    ] = True,
    protocol: Annotated[str, typer.Option("--protocol", help="museval or segments.")] = "museval",
    rate: Annotated[
        int | None,
        typer.Option(
            "--rate",
            help="Evaluation rate in Hz (default: 11025 for segments, "
            "the references' rate for museval).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (for --model).")] = "auto",
    precision: Annotated[
        str,
        typer.Option(
            click_type=click.Choice(["fp32", "fp16", "bf16"]),
            help="The model's arithmetic (for --model); fp16 needs CUDA.",
        ),
    ] = "fp32",
    refine: Annotated[
        bool,
        typer.Option(
            "--refine/--no-refine",
            help="With --model: refine its stems with soft masks on the mixture, as `vimss "
            "separate` does (--no-refine scores the network's own output).",
        ),
    ] = True,
    harmonic: Annotated[
        bool,
        typer.Option(
            "--harmonic/--no-harmonic",
            help="With --refine: masks sharpened at each stem's pitch harmonics, as `vimss "
            "separate` does (--no-harmonic: plain soft masks).",
        ),
    ] = True,
    templates: Annotated[
        bool,
        typer.Option(
            "--templates/--no-templates",
            help="With --harmonic: harmonic templates learnt on the recording blended in, as "
            "`vimss separate` does (--no-templates: the harmonic masks alone).",
        ),
    ] = True,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write results.json, stems.csv, a box plot, a cache."),
    ] = None,
    save_estimates: Annotated[
        Path | None,
        typer.Option(
            "--save-estimates",
            metavar="DIR",
            help="With --model: write the stems it scored to DIR/<piece>/NN_<instrument>.wav "
            "(float WAV at the evaluation rate), named as `vimss separate` names them, so "
            "--references/--estimates and `vimss report` read them back. Every piece is then "
            "separated again (the cache holds scores, not stems).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace the results of an earlier run in --out (its cache is kept and "
            "reused) and estimates an earlier run saved in DIR.",
        ),
    ] = False,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option("--compare", hidden=True, help="Deprecated: vimss eval compare A B."),
    ] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Score separations with BSS Eval (equal to museval/mir_eval), baselines side by side."""

    if ctx.invoked_subcommand is not None:
        return  # `vimss eval compare`

    def run() -> None:
        if compare is not None:
            typer.echo("warning: --compare is deprecated; use vimss eval compare A B", err=True)
            _compare(compare, as_json)
            return
        from vimss_cli.errors import InputError, OutputError
        from vimss_cli.eval.report import CACHE_NAME, check_results_free, write_results
        from vimss_cli.eval.run import evaluate, saved_estimates_to_keep
        from vimss_cli.eval.scoring import check_segments_score_something, evaluation_rate
        from vimss_cli.eval.systems import check_estimates_free, check_videos, plan_systems
        from vimss_cli.eval.tracks import select_tracks
        from vimss_cli.stem_writer import ensure_writable_directory

        if root is not None and dataset is None and references is None and estimates is None:
            raise InputError("--root needs --dataset urmp or synth (what the folder holds)")
        tracks, user_estimates = select_tracks(dataset, root, pieces, references, estimates)
        systems = plan_systems(
            user_estimates=user_estimates,
            model=model,
            baselines=baselines,
            queries=queries,
            save_estimates=save_estimates,
        )
        eval_rate = evaluation_rate(protocol, rate, tracks)
        # everything that can be refused is, before the model loads and any folder is made
        check_segments_score_something(protocol, eval_rate, tracks)
        if model is not None:
            check_videos(tracks, queries, queries)  # --queries video (auto: once it loads)
        if save_estimates is not None:  # an interrupted run's saved stems are kept
            cache = None if out_dir is None else out_dir / CACHE_NAME
            kept = saved_estimates_to_keep(tracks, save_estimates, cache)
            check_estimates_free(tracks, save_estimates, force, kept)
        if out_dir is not None:
            check_results_free(out_dir, force)
        folders = [f for f in (out_dir, save_estimates) if f is not None]
        for folder in folders:  # both checked before either is made
            if folder.exists() and not folder.is_dir():
                raise OutputError(f"output path exists and is not a directory: {folder}")
        for folder in folders:
            ensure_writable_directory(folder)
        show = not (quiet or as_json)
        separator = None
        if model is not None:
            separator = _load_model(model, device, precision, show, refine, harmonic, templates)
        console = stderr_console()
        show = show and console.is_terminal  # the scoring lines go with the spinner
        with status("scoring", show, console) as update:
            evaluation = evaluate(
                tracks,
                systems,
                protocol,
                eval_rate,
                separator=separator,
                queries=queries,
                pitch_voices=pitch_voices,
                cache_dir=None if out_dir is None else out_dir / CACHE_NAME,
                progress=_scoring_progress(update, console, show),
                save_estimates=save_estimates,
                force=force,
            )
        written = write_results(evaluation, out_dir) if out_dir is not None else []
        document = evaluation.to_json()
        if as_json:
            typer.echo(json.dumps(document))
            return
        _print_tables(document)
        if not quiet:
            _print_notes(document, written, tracks, save_estimates)

    guarded(debug, run)


@eval_app.command("compare")
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="A `vimss eval --out` folder or its results.json.")],
    run_b: Annotated[Path, typer.Argument(help="Another, compared with RUN_A.")],
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show two runs side by side: RUN_B minus RUN_A, paired by piece, stem and system."""
    guarded(debug, lambda: _compare((run_a, run_b), as_json))


def _load_model(
    model: str,
    device: str,
    precision: str,
    show: bool,
    refine: bool,
    harmonic: bool,
    templates: bool = True,
) -> Any:
    """The model to score (``refine``, ``harmonic`` and ``templates``: ``Separator``'s),
    loaded under a spinner; a warning when it is untrained."""
    import_torch()  # only a model needs it: scoring files does not
    from vimss_cli.api import Separator

    with status(f"loading model {model}", show):
        separator = Separator(
            model,
            device=device,
            precision=precision,
            refine=refine,
            harmonic=harmonic,
            templates=templates,
        )
    if not separator.loaded.trained:
        typer.echo(
            f"warning: model {separator.loaded.name!r} is untrained "
            "(randomly initialised); its scores mean nothing",
            err=True,
        )
    return separator


def _scoring_progress(
    update: Callable[[str | None], None], console: Console, show: bool
) -> ProgressCallback:
    """What each piece is at, on the spinner; a line when a system's scores are ready."""
    doing = {
        "reading": "reading the references and the mixture",
        "separating": "separating with the model",
        "scoring": "scoring {system}",
    }

    def progress(event: dict[str, Any]) -> None:
        where = f"[{event['done'] + 1}/{event['total']}] {event['piece']}"
        if event["stage"] in doing:
            update(f"{where}: {doing[event['stage']].format(**event)}")
        elif show:
            console.print(
                f"[{event['done']}/{event['total']}] {event['piece']}: {event['system']} scored",
                markup=False,
            )

    return progress


def _print_notes(
    document: dict[str, Any], written: list[Path], tracks: list[Any], save_estimates: Path | None
) -> None:
    """The run's notes and the files it wrote, on stderr."""
    for note in document["notes"]:
        typer.echo(f"note: {note}", err=True)
    for path in written:
        typer.echo(f"wrote {path}", err=True)
    if save_estimates is not None:
        from vimss_cli.eval.systems import estimate_paths

        for track in tracks:
            typer.echo(f"wrote {estimate_paths(track, save_estimates)[0].parent}", err=True)


def _print_tables(document: dict[str, Any]) -> None:
    from vimss_cli.eval.summary import table_rows

    console = Console(soft_wrap=True)
    protocol, systems = document["protocol"], document["systems"]
    what = (
        "median over stems of window medians"
        if protocol == "museval"
        else "mean ± std over segments"
    )
    for grouping, title in (
        ("instrument", "instrument"),
        ("ensemble_size", "players"),
        ("overall", ""),
    ):
        table = Table(title=None if grouping == "overall" else f"SDR (dB) by {title}")
        table.add_column(title or "overall")
        for system in systems:
            table.add_column(system, justify="right")
        for row in table_rows(document["summary"], grouping, systems, protocol):
            table.add_row(*row)
        console.print(table)
    who = ""
    if document.get("model"):
        mode = {"labels": "label"}.get(document.get("queries") or "labels", document["queries"])
        who = f"model {document['model']} with {mode} queries; "
    console.print(
        f"{who}protocol {protocol} at {document['rate']} Hz: SDR is the {what} "
        f"({document['framewise']}); counts in parentheses",
        markup=False,
    )


#: How ``compare``'s tables name the metrics of :func:`.eval.report.compare_runs`.
METRIC_NAMES = {"SDR": "whole-clip SDR", "protocol SDR": "protocol's SDR"}


def _compare(runs: tuple[Path, Path], as_json: bool) -> None:
    from vimss_cli.eval.report import compare_runs, load_results

    first, second = (load_results(run) for run in runs)
    comparison = compare_runs(first, second)
    for warning in comparison.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(comparison.to_json()))
        return
    table = Table(title=f"{runs[1]} minus {runs[0]} (paired by piece, stem, system)")
    # medians, as everywhere else in eval; the mean difference and its interval below
    columns = ("system", "metric", "pairs", "A median", "B median", "median diff", "B better")
    for column in columns:
        table.add_column(column, justify="left" if column in ("system", "metric") else "right")
    means = Table(title="mean of the paired differences, 95 % bootstrap interval over stems")
    for column in ("system", "metric", "mean diff", "interval"):
        means.add_column(column, justify="left" if column in ("system", "metric") else "right")
    for system, metrics in comparison.systems.items():
        for metric, cell in metrics.items():
            shown = METRIC_NAMES.get(metric, metric)
            table.add_row(
                system,
                shown,
                str(cell["pairs"]),
                f"{cell['first_median']:.2f}",
                f"{cell['second_median']:.2f}",
                f"{cell['median_difference']:+.2f}",
                f"{cell['second_better']}/{cell['pairs']}",
            )
            interval = cell["mean_difference_ci95"]
            means.add_row(
                system,
                shown,
                f"{cell['mean_difference']:+.2f}",
                f"n/a ({cell['mean_difference_ci95_note']})"
                if interval is None
                else f"[{interval[0]:+.2f}, {interval[1]:+.2f}]",
            )
    console = Console(soft_wrap=True)
    console.print(table)
    console.print(means)
