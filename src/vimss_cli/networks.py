"""The separation networks a checkpoint can hold, and the one place that builds them.

``Network`` is what the engine, the trainer and the checkpoint reader take: both classes
share the length arithmetic (``context``, ``total_decimation``, ``output_length``,
``input_length_for``) and ``forward(mixture (W, 1, T_in), queries) -> (W, K, T_out)``.
"""

from __future__ import annotations

from vimss_cli.model import ModelConfig, WaveUNet
from vimss_cli.spectral import SpectralMaskNet

Network = WaveUNet | SpectralMaskNet


def build_network(config: ModelConfig) -> Network:
    """The network ``config.architecture`` names, with fresh weights."""
    if config.architecture == "spectral":
        return SpectralMaskNet(config)
    return WaveUNet(config)
