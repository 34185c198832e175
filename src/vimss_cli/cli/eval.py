"""``vimss eval``: score a model and the baselines on a URMP-layout tree or folders of WAVs."""

from __future__ import annotations

import json
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
from vimss_cli.errors import InputError

QUERIES = ("auto", "labels", "video")


def eval_command(
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
        typer.Option("--force", help="Replace estimates an earlier run saved in DIR."),
    ] = False,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option("--compare", help="Show two result folders side by side: RUN_A RUN_B."),
    ] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Score separations with BSS Eval (equal to museval/mir_eval), baselines side by side."""

    def run() -> None:
        if compare is not None:
            _compare(compare, as_json)
            return
        from vimss_cli.eval.report import CACHE_NAME, write_results
        from vimss_cli.eval.run import evaluate
        from vimss_cli.eval.scoring import evaluation_rate
        from vimss_cli.eval.systems import BASELINES, check_estimates_free

        tracks, user_estimates = _tracks(dataset, root, pieces, references, estimates)
        if queries not in QUERIES:
            raise InputError(f"unknown --queries {queries!r}; choose auto, labels or video")
        if model is not None and user_estimates:
            raise InputError(
                "--model separates dataset mixtures; use it with --dataset, "
                "not with --references/--estimates"
            )
        if save_estimates is not None and model is None:
            raise InputError("--save-estimates writes the stems of --model; give --model too")
        systems = (["estimates"] if user_estimates else []) + (["model"] if model else [])
        systems += list(BASELINES) if baselines else []
        if not systems:
            raise InputError("nothing to score: give --model, or keep the baselines")
        eval_rate = evaluation_rate(protocol, rate, tracks)
        from vimss_cli.stem_writer import ensure_writable_directory

        for folder in (out_dir, save_estimates):
            if folder is not None:
                ensure_writable_directory(folder)
        if save_estimates is not None:  # before the model loads
            check_estimates_free(tracks, save_estimates, force)
        separator = None
        if model is not None:
            import_torch()  # only a model needs it: scoring files does not
            from vimss_cli.api import Separator

            with status(f"loading model {model}", not (quiet or as_json)):
                separator = Separator(model, device=device, precision=precision)
            if not separator.loaded.trained:
                typer.echo(
                    f"warning: model {separator.loaded.name!r} is untrained "
                    "(randomly initialised); its scores mean nothing",
                    err=True,
                )
        mode = queries
        if mode == "auto":
            config = separator.model.config if separator is not None else None
            visual = config is not None and (config.appearance_dim or config.motion_channels)
            mode = "video" if visual else "labels"
        console = stderr_console()
        show = not (as_json or quiet) and console.is_terminal

        with status("scoring", show, console) as update:

            def progress(event: dict[str, Any]) -> None:
                where = f"[{event['done'] + 1}/{event['total']}] {event['piece']}"
                doing = {
                    "reading": "reading the references and the mixture",
                    "separating": "separating with the model",
                    "scoring": f"scoring {event['system']}",
                }
                if event["stage"] in doing:
                    update(f"{where}: {doing[event['stage']]}")
                elif show:
                    console.print(
                        f"[{event['done']}/{event['total']}] {event['piece']}: "
                        f"{event['system']} scored",
                        markup=False,
                    )

            evaluation = evaluate(
                tracks,
                systems,
                protocol,
                eval_rate,
                separator=separator,
                queries=mode,
                cache_dir=None if out_dir is None else out_dir / CACHE_NAME,
                progress=progress,
                save_estimates=save_estimates,
                force=force,
            )
        if separator is not None:
            evaluation.model = separator.loaded.name
            evaluation.queries = mode
        written = write_results(evaluation, out_dir) if out_dir is not None else []
        document = evaluation.to_json()
        if as_json:
            typer.echo(json.dumps(document))
            return
        _print_tables(document)
        if quiet:
            return
        for note in document["notes"]:
            typer.echo(f"note: {note}", err=True)
        for path in written:
            typer.echo(f"wrote {path}", err=True)
        if save_estimates is not None:
            from vimss_cli.eval.systems import estimate_paths

            for track in tracks:
                typer.echo(f"wrote {estimate_paths(track, save_estimates)[0].parent}", err=True)

    guarded(debug, run)


def _tracks(
    dataset: str | None,
    root: Path | None,
    pieces: str | None,
    references: Path | None,
    estimates: Path | None,
) -> tuple[list[Any], bool]:
    """The tracks to score and whether they carry user estimates."""
    from vimss_cli.eval.tracks import folder_tracks, parse_pieces, urmp_tracks
    from vimss_cli.urmp import DATASETS

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


def _compare(runs: tuple[Path, Path], as_json: bool) -> None:
    from vimss_cli.eval.report import compare_runs, load_results

    first, second = (load_results(run) for run in runs)
    comparison = compare_runs(first, second)
    if as_json:
        typer.echo(json.dumps(comparison.to_json()))
        return
    table = Table(title=f"{runs[1]} minus {runs[0]} (paired by piece, stem, system)")
    # medians, as everywhere else in eval (the means stay in --json)
    columns = ("system", "metric", "pairs", "A median", "B median", "median diff", "B better")
    for column in columns:
        table.add_column(column, justify="left" if column in ("system", "metric") else "right")
    for system, metrics in comparison.systems.items():
        for metric, cell in metrics.items():
            table.add_row(
                system,
                metric,
                str(cell["pairs"]),
                f"{cell['first_median']:.2f}",
                f"{cell['second_median']:.2f}",
                f"{cell['median_difference']:+.2f}",
                f"{cell['second_better']}/{cell['pairs']}",
            )
    Console(soft_wrap=True).print(table)
