"""The naive inference loop of Wave-U-Net-Pytorch, ported to vimss's model for comparison.

Source: ``predict()`` in ``test.py`` of https://github.com/f90/Wave-U-Net-Pytorch (MIT
licence, Daniel Stoller). Like the original it pads the signal to a whole number of output
windows and by the network's context at both ends, then runs one window per forward pass
(no batching) of ``output_frames`` output samples and writes each window's output into place.
The one change is the model call: vimss's network takes the K queries beside the mixture and
returns the K sources at once (the original's multi-output model returns a dict by source).

It is kept only as the yardstick of ``benchmarks/bench_engine.py``; the product uses
:mod:`vimss_cli.engine`.
"""

from __future__ import annotations

import numpy as np
import torch

from vimss_cli.conditioning import Query, query_batch_from_queries
from vimss_cli.networks import Network

#: Output samples per window: the tile the engine issue's measurement of this loop used.
OUTPUT_FRAMES = 8192


def model_shapes(model: Network, output_frames: int = OUTPUT_FRAMES) -> dict[str, int]:
    """The original's ``model.shapes``: input and output frames of one window."""
    step = -(-output_frames // model.total_decimation) * model.total_decimation
    input_frames = model.input_length_for(step)
    start = model.context
    return {
        "input_frames": input_frames,
        "output_frames": step,
        "output_start_frame": start,
        "output_end_frame": start + step,
    }


def predict(
    audio: np.ndarray, model: Network, queries: list[Query], output_frames: int = OUTPUT_FRAMES
) -> np.ndarray:
    """Mono ``audio (N,)`` -> stems ``(K, N)``, one window per forward pass."""
    shapes = model_shapes(model, output_frames)
    audio = np.asarray(audio, np.float32)[None, :]  # (channels=1, N), as the original
    expected_outputs = audio.shape[1]
    # Pad input if it is not divisible in length by the frame shift number
    output_shift = shapes["output_frames"]
    pad_back = audio.shape[1] % output_shift
    pad_back = 0 if pad_back == 0 else output_shift - pad_back
    if pad_back > 0:
        audio = np.pad(audio, [(0, 0), (0, pad_back)], mode="constant", constant_values=0.0)
    target_outputs = audio.shape[1]
    outputs = np.zeros((len(queries), target_outputs), np.float32)
    # Pad mixture across time at beginning and end so that the network can make a prediction
    # at the beginning and end of the signal
    pad_front_context = shapes["output_start_frame"]
    pad_back_context = shapes["input_frames"] - shapes["output_end_frame"]
    audio = np.pad(audio, [(0, 0), (pad_front_context, pad_back_context)], mode="constant")
    batch = query_batch_from_queries(queries, model.config.appearance_dim)
    with torch.no_grad():
        for target_start_pos in range(0, target_outputs, shapes["output_frames"]):
            curr_input = audio[:, target_start_pos : target_start_pos + shapes["input_frames"]]
            curr_input = torch.from_numpy(curr_input).unsqueeze(0)  # (1, 1, input_frames)
            curr_targets = model(curr_input, batch)[0, :, : shapes["output_frames"]]
            end = target_start_pos + shapes["output_frames"]
            outputs[:, target_start_pos:end] = curr_targets.cpu().numpy()
    return outputs[:, :expected_outputs]
