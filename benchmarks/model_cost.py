"""What a model costs: parameters, receptive field, multiply-adds per second of audio per query.

Counts the multiply-adds of every convolution from the network's own length arithmetic
(:meth:`WaveUNet.trace`) for one window of ``--tile`` output samples, so the figure includes
the context each window recomputes; elementwise work (activations, FiLM, interpolation) is
not counted. With FiLM in the encoder (``film-all``) the whole network runs once per query;
otherwise the encoder runs once per window and its share is divided among ``--queries``.
For the spectral network (``vimss_cli/spectral.py``) the figure is its frame-rate
convolutions per query over the window's frames; the STFT, shared by the queries, and the
inverse FFTs are not counted.

    .venv/bin/python benchmarks/model_cost.py default configs/gpu-h200.toml --tile 262144
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from vimss_cli.checkpoint import load_model  # noqa: E402
from vimss_cli.model import ModelConfig, WaveUNet  # noqa: E402
from vimss_cli.networks import Network, build_network  # noqa: E402
from vimss_cli.spectral import SpectralMaskNet  # noqa: E402


def model_of(reference: str) -> Network:
    """A bundled name or checkpoint path, or a TOML config with a ``[model]`` section."""
    if reference.endswith(".toml"):
        values = tomllib.loads(Path(reference).read_text()).get("model", {})
        return build_network(ModelConfig.from_dict(values))
    return load_model(reference).model


def layer_macs(model: WaveUNet, positions: Callable[[str], float]) -> tuple[float, float]:
    """Multiply-adds of the encoder and of the decoder (bottleneck and output included):
    each convolution's multiply-adds per position times ``positions(layer name)``."""
    c = model.config
    encoder, decoder = 0.0, 0.0
    channels_in = 1
    for level in range(c.levels):
        name = f"down{level}"
        encoder += positions(name) * c.down_kernel * channels_in * c.features(level)
        channels_in = c.features(level)
    bottleneck_in = channels_in + (c.query_dim if c.conditioning == "concat" else 0)
    bottleneck_out = c.features(c.levels)
    decoder += positions("bottleneck") * c.bottleneck_kernel * bottleneck_in * bottleneck_out
    channels_in = c.features(c.levels)
    for level in reversed(range(c.levels)):
        width = channels_in + c.features(level)
        decoder += positions(f"up{level}") * c.up_kernel * width * c.features(level)
        channels_in = c.features(level)
    decoder += positions("output") * (channels_in + 1)
    return encoder, decoder


def spectral_cost(model: SpectralMaskNet, tile: int) -> dict[str, float]:
    """:func:`cost` for the spectral network: its frame-rate convolutions over one window."""
    c = model.config
    input_length = model.input_length_for(tile)
    output = model.output_length(input_length)
    frames = model.frame_count(input_length)
    per_frame = model.macs_per_second_per_query() * c.spectral_hop / c.sample_rate
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": "spectral",
        "receptive_field_seconds": round((2 * model.context + 1) / c.sample_rate, 3),
        "tile_output_samples": output,
        "window_input_samples": input_length,
        "gmac_per_audio_second_per_query": round(
            frames * per_frame / (output / c.sample_rate) / 1e9, 3
        ),
        "gmac_per_audio_second_per_query_no_context": round(
            model.macs_per_second_per_query() / 1e9, 3
        ),
    }


def cost(model: Network, tile: int, queries: int) -> dict[str, float]:
    if isinstance(model, SpectralMaskNet):
        return spectral_cost(model, tile)
    c = model.config
    input_length = model.input_length_for(tile)
    spans = model.trace(input_length)
    assert spans is not None
    output = spans["output"].count
    encoder, decoder = layer_macs(model, lambda name: spans[name].count)
    per_query = encoder + decoder if c.conditioning == "film-all" else encoder / queries + decoder
    seconds = output / c.sample_rate
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "levels": c.levels,
        # the inputs one output sample depends on; a window needs a little more than that
        # (each decoder block drops its last output: WaveUNet._up_conv)
        "receptive_field_seconds": round((2 * model.context + 1) / c.sample_rate, 3),
        "tile_output_samples": output,
        "window_input_samples": input_length,
        "gmac_per_audio_second_per_query": round(per_query / seconds / 1e9, 3),
    }


def useful_macs_per_sample(model: Network, queries: int) -> float:
    """Multiply-adds per output sample for ``queries`` players as the streamed engine does
    them: each layer's positions once (a layer at stride ``s`` has ``1 / s`` per sample), the
    encoder shared by the players, or with FiLM in the encoder only its first convolution.
    The spectral network: its frame-rate convolutions once per frame and query."""
    if isinstance(model, SpectralMaskNet):
        return model.macs_per_second_per_query() / model.config.sample_rate * queries
    c = model.config
    spans = model.trace(model.input_length_for(1))
    assert spans is not None
    encoder, decoder = layer_macs(model, lambda name: 1 / spans[name].step)
    if c.conditioning != "film-all":
        return encoder + decoder * queries
    first = c.down_kernel * c.features(0)  # sees only the mixture
    return first + (encoder - first + decoder) * queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="names, .safetensors paths or .toml configs")
    parser.add_argument("--tile", type=int, default=65536, help="output samples per window")
    parser.add_argument("--queries", type=int, default=4, help="players (shared encoder only)")
    args = parser.parse_args()
    for reference in args.models:
        report = cost(model_of(reference), args.tile, args.queries)
        print(json.dumps({"model": reference, **report}))


if __name__ == "__main__":
    main()
