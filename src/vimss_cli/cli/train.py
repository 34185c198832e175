"""``vimss train``: train a model on a URMP-layout tree (one process, or many under torchrun)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vimss_cli.cli.common import (
    DebugOption,
    JsonOption,
    QuietOption,
    guarded,
    import_torch,
    status,
    stderr_console,
)

if TYPE_CHECKING:  # the training modules import torch: only when a run starts
    from vimss_cli.training.loop import TrainReport


def train_command(
    root: Annotated[Path, typer.Option("--root", help="URMP-layout dataset root.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="What --root is, checked: urmp (real recordings; a tree made by vimss data "
            "synth is refused) or synth (warns about a split without vimss_synth.json). "
            "Recorded in the checkpoints. Default: not checked.",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML with the sections \\[model], \\[data], \\[optim] and \\[run]."
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop at this step.")] = None,
    max_minutes: Annotated[
        float | None, typer.Option("--max-minutes", help="Stop after this much wall time.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out, with its own saved config unless --config is given "
            "(--set still applies).",
        ),
    ] = False,
    init_from: Annotated[
        str | None,
        typer.Option("--init-from", help="Start from this checkpoint's weights (run.init_from)."),
    ] = None,
    real_valid: Annotated[
        Path | None,
        typer.Option(
            "--real-valid",
            help="A URMP-layout folder of real recordings scored at each validation beside "
            "the valid/ split (run.real_valid); best.safetensors then follows its SDR. For "
            "model choice only: never train on it.",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Train a separation model; its weights are exported as OUT/last.safetensors.

    OUT/best.safetensors (best validation SDR) is exported too when the data has a valid/
    split or --real-valid is given.
    """

    def run() -> None:
        import_torch()
        from vimss_cli.training.config import load_config
        from vimss_cli.training.distributed import finish_together, is_main_process
        from vimss_cli.training.loop import run_training
        from vimss_cli.training.run_folder import CONFIG_FILE

        settings = list(overrides or [])
        if init_from is not None:
            settings.append(f"run.init_from={init_from}")
        if real_valid is not None:
            settings.append(f"run.real_valid={real_valid.expanduser().resolve()}")
        saved = out / CONFIG_FILE
        # a resumed run keeps its own saved settings, not the defaults
        from_file = saved if resume and config_file is None and saved.is_file() else config_file
        config = load_config(from_file, settings)
        console = stderr_console()
        show = console.is_terminal and not (as_json or quiet)
        starting = {
            "reading": "reading the {split} data: piece {number}/{total}, {piece}",
            "visual features": "visual features of the {split} data: piece {number}/{total}, "
            "{piece}",
            "building the model": "building the model",
            "starting": "starting the first steps",
        }

        def progress(event: dict) -> None:
            if "stage" in event:
                update(starting[event["stage"]].format(number=event.get("done", 0) + 1, **event))
                return
            update(None)  # setting up is over: lines from here on
            if not show:
                return
            if "loss" in event:
                console.print(
                    f"step {event['step']}/{event['max_steps']}  loss {event['loss']:.4f}  "
                    f"{event['examples_per_second']:.1f} ex/s  lr {event['lr']:.2e}"
                )
            else:
                scores = [
                    f"{name.replace('_', ' ')} SDR {event[name + '_sdr']:.2f} dB "
                    f"(mixture {event[name + '_sdr_mixture']:.2f} dB)"
                    for name in ("valid", "real_valid")
                    if name + "_sdr" in event
                ]
                if scores:
                    console.print(f"step {event['step']}: " + ", ".join(scores))

        def warn(message: str) -> None:
            console.print(f"warning: {message}")

        with status("setting up", show, console) as update:
            report = run_training(
                config,
                root,
                out,
                device=device,
                resume=resume,
                max_steps=max_steps,
                max_minutes=max_minutes,
                dataset=dataset,
                progress=progress,
                warn=warn,
            )
        if is_main_process():  # under torchrun, one summary: rank 0's
            if as_json:
                typer.echo(json.dumps(report.to_json()))
            else:
                console.print(summary_line(report), markup=False)
        finish_together()

    guarded(debug, run)


def summary_line(report: TrainReport) -> str:
    """The line ``vimss train`` ends with: where the run stopped, its speed, its best
    validation SDR."""
    if report.examples_per_second > 0:
        head = f"stopped at step {report.step}: {report.examples_per_second:.1f} examples/s"
    elif report.schedule_over:  # --max-steps cannot extend a schedule fitted to a deadline
        head = (
            f"already at step {report.step}, where its schedule fitted to the deadline ends: "
            f"nothing to train (to go on, start a new run with --init-from "
            f"{report.run_dir / 'last.safetensors'})"
        )
    else:
        head = f"already at step {report.step}: nothing to train (raise --max-steps to go on)"
    if report.best_valid_sdr is None:
        return f"{head}; no validation score yet (none taken, or no valid/ split)"
    on = report.best_on.replace("_", " ")
    return f"{head}; best {on} SDR {report.best_valid_sdr:.2f} dB"
