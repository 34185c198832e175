"""What each player looks like: EfficientNet-Lite0 features and ImageNet classes of its crops.

A crop is the player's box, padded to a square with the frame's background colour (so a tall
cellist is not squashed) and resized to 224 x 224. A player's appearance embedding is the mean
of its crops' 1280-d pooled features over the sampled frames, L2-normalised; its class
probabilities are the mean of the crops' softmax outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from vimss_cli.vision.efficientnet import INPUT_SIZE, load_efficientnet_lite0, preprocess
from vimss_cli.vision.players import Box, background_colour

#: Crops per forward pass.
BATCH = 16


def square_crop(frame: np.ndarray, box: Box, size: int = INPUT_SIZE) -> np.ndarray:
    """``(H, W, 3)`` uint8 frame, box ``(x, y, w, h)`` -> ``(size, size, 3)`` uint8 crop."""
    x, y, w, h = box
    crop = frame[y : y + h, x : x + w]
    side = max(w, h)
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = background_colour(frame).astype(np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = crop
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Appearance:
    """Per-player results over the sampled frames.

    Attributes:
        embeddings: ``(K, 1280)`` float32, L2-normalised mean pooled features.
        probabilities: ``(K, 1000)`` float32 mean ImageNet softmax.
    """

    embeddings: np.ndarray
    probabilities: np.ndarray


def describe_players(frames: list[np.ndarray], boxes: list[Box]) -> Appearance:
    """Embed and classify each player's crops in every sampled frame.

    Args:
        frames: ``S`` frames ``(H, W, 3)`` uint8 RGB.
        boxes: ``K`` boxes in those frames' pixels.
    """
    model = load_efficientnet_lite0()
    crops = np.stack([square_crop(frame, box) for box in boxes for frame in frames])
    features, probabilities = [], []
    with torch.inference_mode():
        for start in range(0, len(crops), BATCH):
            batch = model.features(preprocess(crops[start : start + BATCH]))
            features.append(batch)
            probabilities.append(model.classify(batch).softmax(dim=1))
    per_crop = torch.cat(features).reshape(len(boxes), len(frames), -1).mean(dim=1)
    embeddings = torch.nn.functional.normalize(per_crop, dim=1)
    mean_probabilities = torch.cat(probabilities).reshape(len(boxes), len(frames), -1).mean(dim=1)
    return Appearance(embeddings.numpy().astype(np.float32), mean_probabilities.numpy())
