"""``vimss models``: list the bundled models and describe one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from vimss_cli.cli.common import DebugOption, JsonOption, guarded

if TYPE_CHECKING:
    from vimss_cli.checkpoint import ModelInfo
    from vimss_cli.model import ModelConfig

models_app = typer.Typer(help="List and describe the available models.", no_args_is_help=True)


@models_app.command("list")
def models_list(as_json: JsonOption = False, debug: DebugOption = False) -> None:
    """List the bundled models."""

    def run() -> None:
        from vimss_cli.checkpoint import bundled_index

        models, default = bundled_index()
        if as_json:
            rows = [m.to_json(default) for m in models.values()]
            typer.echo(json.dumps({"models": rows}))
            return
        table = Table("name", "default", "trained", "description")
        for m in models.values():
            table.add_row(m.name, "yes" if m.name == default else "", str(m.trained), m.description)
        Console(soft_wrap=True).print(table)

    guarded(debug, run)


@models_app.command("info")
def models_info(
    model: Annotated[str, typer.Argument(help="Bundled name, path or hf:OWNER/REPO.")],
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Describe one model: config, length arithmetic, provenance."""

    def run() -> None:
        from vimss_cli.checkpoint import model_info

        info = model_info(model)
        if as_json:
            typer.echo(json.dumps(info.to_json()))
            return
        Console(soft_wrap=True).print(_model_summary(info), markup=False)

    guarded(debug, run)


def _shape(config: ModelConfig) -> str:
    """The network's shape in a few words."""
    if config.architecture == "spectral":
        return (
            f"spectral mask network (STFT {config.spectral_fft}/{config.spectral_hop}, "
            f"{config.spectral_blocks} blocks of {config.spectral_channels} channels)"
        )
    return f"Wave-U-Net, {config.levels} levels"


def _model_summary(model: ModelInfo) -> str:
    """``models info`` for a person: what the model takes, its size, how it was trained."""
    info, net = model.to_json(), model.loaded.model
    config = net.config
    rate = config.sample_rate
    takes = ["instrument labels"]
    if config.appearance_dim:
        takes.append("appearance")
    if config.motion_channels:
        takes.append(f"motion ({config.motion_features})")
    provenance = info["provenance"] or {}
    lines = [
        f"{info['name']} ({'trained' if info['trained'] else 'untrained'}): {info['path']}",
        f"  queries     {', '.join(takes)}",
        f"  network     {_shape(config)}, {info['parameters']:,} parameters, {rate} Hz mono",
        f"  hears       {(net.context * 2 + 1) / rate:.2f} s around each sample "
        f"(receptive field); windows of {info['window_output_samples'] / rate:.2f} s",
    ]
    if provenance.get("steps"):
        hours = provenance.get("wall_seconds", 0) / 3600
        lines.append(
            f"  trained     {provenance['steps']} steps, {hours:.2f} h on "
            f"{provenance.get('device', '?')}, {provenance.get('created', '?')[:10]}"
        )
    validation = provenance.get("validation") or {}
    where = {"valid": "its synthetic valid split", "real_valid": "its real recordings"}
    for name, description in where.items():  # best.safetensors follows the real ones
        if f"{name}_sdr" in validation:
            lines.append(
                f"  validation  median SDR {validation[f'{name}_sdr']:.2f} dB (mixture "
                f"{validation.get(f'{name}_sdr_mixture', float('nan')):.2f}) on {description}"
            )
    lines.append(f"  model card  {info['model_card'] or 'none'}")
    return "\n".join(lines)
