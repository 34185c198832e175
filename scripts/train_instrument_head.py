"""Experiment: a trained instrument head (linear classifier on EfficientNet-Lite0 features of
the instrument pictures Debian ships, with an "other, not a URMP instrument" class) against
the zero-shot ImageNet guess. Not shipped: on real photos it loses (figures below).

    python scripts/train_instrument_head.py [--views 16] [--seed 0] [--cache F.npz]
        [--footage DIR] [--out head.safetensors]

The pictures are the instrument drawings and photo cut-outs Debian ships (each package's
licence in its ``/usr/share/doc/<package>/copyright``):

* ``gcompris-qt-data`` (GPL-3+): ``instruments.rcc``'s SVG drawings, rendered with cairosvg;
* ``openclipart-png`` (public domain): ``recreation/music/`` drawings;
* ``tuxpaint-stamps-default`` (GPL-2): ``hobbies/music/`` photo cut-outs.

Never the photos of ``explore_world_music.rcc``: the real-footage test videos are made of them.

Each picture is composed into ``--views`` player-like crops: a plain, graded or noisy
backdrop, half the time an openclipart person drawing behind it, the instrument scaled,
turned, mirrored and lit at random, then blurred and noised as a video frame would be. The
head is trained on the L2-normalised 1280-d pooled features of those crops (what
``describe_players`` computes for a player), class-balanced, with weight decay.

It prints leave-one-picture-out accuracy (every view of a picture held out together, so a
picture never helps to classify itself) per class, for the zero-shot guess, the head alone
and their geometric mean; with ``--footage`` it trains on every picture and scores the players
of the real-footage test videos (``tests/real_footage.py``) whose count is found right.

Measured 2026-12-01 (16 views, 2-core CPU): held out, zero-shot 49/65 pictures, head 48/65,
both 50/65; on the 36 real-footage players, zero-shot 24, head 2 (it calls nearly every
player a flute: drawings without people do not teach what a person playing looks like),
both 17. The zero-shot rule, with the non-URMP classes summed, is what ships
(``vision/instrument_guess.py``). A head needs real photos of people playing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from vimss_cli.atomic import atomic_path
from vimss_cli.synth.real_solos import read_rcc
from vimss_cli.synth.resources import OPENCLIPART_MUSIC, TUXPAINT_MUSIC
from vimss_cli.vision.efficientnet import INPUT_SIZE, load_efficientnet_lite0, preprocess
from vimss_cli.vision.instrument_guess import IMAGENET_TO_URMP, OTHER_INSTRUMENTS

OTHER = "other"
#: The head's classes (viola and double bass look like violin and cello in a picture).
CLASSES = ["vn", "vc", "fl", "ob", "cl", "bn", "sax", "tpt", "hn", "tbn", "tba", OTHER]

GCOMPRIS_INSTRUMENTS = Path("/usr/share/gcompris-qt/rcc/instruments.rcc")
OPENCLIPART_PEOPLE = Path("/usr/share/openclipart/png/people")

#: openclipart-png ``recreation/music`` files -> class (``cello_mo_*`` show violins).
OPENCLIPART = {
    "violin_ganson.png": "vn",
    "violin_colour_ganson.png": "vn",
    "violin_mo_01.png": "vn",
    "cello_mo_01.png": "vn",
    "cello_mo_02.png": "vn",
    "cello_ganson.png": "vc",
    "flute_ganson.png": "fl",
    "oboe_ganson.png": "ob",
    "saxophone_jarno_vasamaa_.png": "sax",
    "french_horn_ganson.png": "hn",
    "tenor_trombone_ganson.png": "tbn",
    "trumpet_b_flat__ganson.png": "tpt",
    "trumpet_b_flat_colour_ganso.png": "tpt",
    "trumpet_pocket_colour_ganso.png": "tpt",
    "trumpet_herald__ganson.png": "tpt",
    "trumpet_straight_mute_ganson.png": "tpt",
    "tpt_cubf_ganson.png": "tpt",
    "guitar_ganson.png": OTHER,
    "guitar_jarno_vasamaa1.png": OTHER,
    "guitar_profile_philippe__01.png": OTHER,
    "electric_guitar_andrea__01r.png": OTHER,
    "bass_guitar_a.j._ashton_.png": OTHER,
    "mountain_dulcimer_terry_.png": OTHER,
    "harp1_ganson.png": OTHER,
    "harp_mo_01.png": OTHER,
    "africandrum_benji_park1.png": OTHER,
    "derbouk_jurgen_01.png": OTHER,
    "djambf_ganson.png": OTHER,
    "drums_jarno_vasamaa_.png": OTHER,
    "war_drum_enrique_meza_c_01.png": OTHER,
    "maracas_ganson.png": OTHER,
    "piano_geraint_luff_01.png": OTHER,
    "xylophone_ganson.png": OTHER,
}
#: tuxpaint-stamps-default ``hobbies/music`` photo cut-outs -> class.
TUXPAINT = {
    "string/violin.png": "vn",
    "string/cello.png": "vc",
    "brass/trumpet.png": "tpt",
    "wind/bassoon.png": "bn",
    "string/guitar_classical.png": OTHER,
    "string/guitar2.png": OTHER,
    "string/guitar_electric.png": OTHER,
    "string/guitar_electric_bass.png": OTHER,
    "percussion/drumkit.png": OTHER,
    "percussion/drum_tomtom_floor.png": OTHER,
}
#: gcompris-qt-data ``instruments.rcc`` drawings -> class.
GCOMPRIS = {
    "violin": "vn",
    "cello": "vc",
    "flute_traversiere": "fl",
    "clarinet": "cl",
    "saxophone": "sax",
    "trumpet": "tpt",
    "horn": "hn",
    "trombone": "tbn",
    "tuba": "tba",
    "guitar": OTHER,
    "electric_guitar": OTHER,
    "banjo": OTHER,
    "accordion": OTHER,
    "harp": OTHER,
    "piano": OTHER,
    "organ": OTHER,
    "drum_kit": OTHER,
    "snare_drum": OTHER,
    "bongo": OTHER,
    "timpani": OTHER,
    "harmonica": OTHER,
    "tambourine": OTHER,
}


@dataclass(frozen=True)
class Picture:
    """One instrument picture: ``rgba`` ``(H, W, 4)`` uint8 cropped to its opaque part."""

    name: str
    label: str
    rgba: np.ndarray


def _opaque(rgba: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(rgba[..., 3] > 16)
    return np.ascontiguousarray(rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4:
        raise SystemExit(f"error: cannot read {path} as an RGBA PNG")
    return _opaque(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))


def load_pictures() -> list[Picture]:
    """Every training picture, with its class."""
    try:
        import cairosvg
    except ImportError:
        raise SystemExit("error: cairosvg is missing: pip install -e '.[dev]'") from None
    pictures = [
        Picture(f"openclipart:{name}", label, _read_png(OPENCLIPART_MUSIC / name))
        for name, label in OPENCLIPART.items()
    ]
    pictures += [
        Picture(f"tuxpaint:{name}", label, _read_png(TUXPAINT_MUSIC / name))
        for name, label in TUXPAINT.items()
    ]
    for name, data in read_rcc(GCOMPRIS_INSTRUMENTS):
        stem = Path(name).stem
        if name.endswith(".svg") and stem in GCOMPRIS:
            png = cairosvg.svg2png(bytestring=data, output_width=480)
            image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
            rgba = _opaque(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))
            pictures.append(Picture(f"gcompris:{stem}", GCOMPRIS[stem], rgba))
    return pictures


def load_people() -> list[np.ndarray]:
    """openclipart person drawings (RGBA), to stand behind the instruments."""
    people = []
    for path in sorted(OPENCLIPART_PEOPLE.glob("*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is not None and image.ndim == 3 and image.shape[2] == 4:
            rgba = _opaque(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))
            if rgba.shape[0] > 1.3 * rgba.shape[1]:  # standing figures
                people.append(rgba)
    return people


def _paste(canvas: np.ndarray, rgba: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend ``rgba`` onto float ``canvas`` at top-left ``(x, y)``, clipped."""
    h, w = rgba.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    part = rgba[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    alpha = part[..., 3:] / 255
    canvas[y0:y1, x0:x1] = alpha * part[..., :3] + (1 - alpha) * canvas[y0:y1, x0:x1]


def _rotate(rgba: np.ndarray, degrees: float) -> np.ndarray:
    h, w = rgba.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(h * sin + w * cos), int(h * cos + w * sin)
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    return cv2.warpAffine(rgba, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR)


def _backdrop(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(3)
    colour = rng.uniform(0, 255, 3)
    canvas = np.ones((size, size, 3), np.float32) * colour
    if kind == 1:  # graded
        other = rng.uniform(0, 255, 3)
        ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        canvas = canvas * (1 - ramp) + other * ramp
    elif kind == 2:  # blotchy
        noise = rng.normal(0, 40, (8, 8, 3)).astype(np.float32)
        canvas = canvas + cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return canvas


def compose_view(
    picture: np.ndarray, people: list[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """One player-like ``(224, 224, 3)`` uint8 crop of ``picture`` (RGBA)."""
    size = INPUT_SIZE
    canvas = _backdrop(rng, size)
    if people and rng.random() < 0.5:
        person = people[rng.integers(len(people))]
        scale = rng.uniform(0.8, 1.0) * size / person.shape[0]
        person = cv2.resize(person, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        _paste(canvas, person, int((size - person.shape[1]) / 2 + rng.normal(0, 10)), 0)
    instrument = picture[:, ::-1] if rng.random() < 0.5 else picture
    instrument = _rotate(np.ascontiguousarray(instrument), rng.uniform(-45, 45))
    extent = rng.uniform(0.35, 0.9) * size
    scale = extent / max(instrument.shape[:2])
    instrument = cv2.resize(instrument, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    x = int(rng.uniform(0, max(1, size - instrument.shape[1])))
    y = int(rng.uniform(0, max(1, size - instrument.shape[0])))
    lit = instrument.astype(np.float32)
    lit[..., :3] = lit[..., :3] * rng.uniform(0.6, 1.2) + rng.uniform(-30, 30)
    _paste(canvas, np.clip(lit, 0, 255), x, y)
    canvas = canvas * rng.uniform(0.5, 1.1) + rng.uniform(-20, 30)  # exposure
    if rng.random() < 0.5:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 2.0))
    canvas = canvas + rng.normal(0, rng.uniform(0, 8), canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def extract(
    pictures: list[Picture], people: list[np.ndarray], views: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(N, 1280)`` (L2-normalised), ImageNet probabilities ``(N, 1000)``, labels
    ``(N,)`` and picture indices ``(N,)`` of ``views`` composed crops per picture."""
    rng = np.random.default_rng(seed)
    model = load_efficientnet_lite0()
    features, probabilities, labels, groups = [], [], [], []
    for index, picture in enumerate(pictures):
        crops = np.stack([compose_view(picture.rgba, people, rng) for _ in range(views)])
        with torch.inference_mode():
            pooled = model.features(preprocess(crops))
            probabilities.append(model.classify(pooled).softmax(dim=1).numpy())
        features.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
        labels += [CLASSES.index(picture.label)] * views
        groups += [index] * views
    return (
        np.concatenate(features),
        np.concatenate(probabilities),
        np.array(labels),
        np.array(groups),
    )


def fit(
    features: np.ndarray, labels: np.ndarray, weight_decay: float, steps: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced softmax regression: ``(C, 1280)`` weights and ``(C,)`` biases."""
    torch.manual_seed(0)
    x = torch.from_numpy(features).float()
    y = torch.from_numpy(labels).long()
    counts = torch.bincount(y, minlength=len(CLASSES)).float()
    class_weight = torch.where(counts > 0, counts.sum() / counts.clamp(min=1), 0.0)
    layer = torch.nn.Linear(x.shape[1], len(CLASSES))
    optimiser = torch.optim.Adam(layer.parameters(), lr=0.05, weight_decay=weight_decay)
    loss_function = torch.nn.CrossEntropyLoss(weight=class_weight / class_weight.mean())
    for _ in range(steps):
        optimiser.zero_grad()
        loss_function(layer(x * 10), y).backward()
        optimiser.step()
    weight = layer.weight.detach().numpy() * 10  # the scale folded into the weights
    return weight.astype(np.float32), layer.bias.detach().numpy().astype(np.float32)


def _scores(weight: np.ndarray, bias: np.ndarray, features: np.ndarray) -> np.ndarray:
    logits = features @ weight.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def zero_shot_scores(probabilities: np.ndarray) -> np.ndarray:
    """``(..., 1000)`` ImageNet probabilities -> ``(..., C)``: a URMP class gets its ImageNet
    class's probability, "other" the sum of the other instrument classes; floored at 0.02
    (clarinet and tuba have no ImageNet class) and normalised."""
    probabilities = np.asarray(probabilities, np.float64)
    scores = np.zeros((*probabilities.shape[:-1], len(CLASSES)))
    for index, (code, _) in IMAGENET_TO_URMP.items():
        scores[..., CLASSES.index(code)] += probabilities[..., index]
    scores[..., CLASSES.index(OTHER)] = probabilities[..., list(OTHER_INSTRUMENTS)].sum(axis=-1)
    scores = scores / np.maximum(scores.sum(axis=-1, keepdims=True), 1e-12) + 0.02
    return scores / scores.sum(axis=-1, keepdims=True)


def footage_players(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(truth, ``(1280,)`` embedding, ``(1000,)`` probabilities) of every player of the
    real-footage videos whose count ``analyse_video`` gets right."""
    import vimss_cli.vision.analysis as analysis_module
    from vimss_cli.errors import VimssError

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import real_footage

    captured: list[np.ndarray] = []
    guess = analysis_module.guess_instrument

    def recording_guess(probabilities: np.ndarray) -> object:
        captured.append(np.asarray(probabilities))
        return guess(probabilities)

    analysis_module.guess_instrument = recording_guess
    players = []
    try:
        for path, truth in real_footage.build(folder):
            captured.clear()
            try:
                analysis = analysis_module.analyse_video(path)
            except VimssError:
                continue
            if len(analysis.players) != truth.count:
                continue
            for player, instrument, probabilities in zip(
                analysis.players, truth.instruments, captured, strict=True
            ):
                players.append((instrument, player.appearance, probabilities))
    finally:
        analysis_module.guess_instrument = guess
    return players


def cross_validate(
    features: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    weight_decay: float,
) -> dict[str, np.ndarray]:
    """Per-picture predicted class (majority over its views' mean scores), held out."""
    pictures = np.unique(groups)
    predicted = {"zero-shot": [], "head": [], "head x zero-shot": []}
    for group in pictures:
        held = groups == group
        weight, bias = fit(features[~held], labels[~held], weight_decay)
        head = _scores(weight, bias, features[held]).mean(axis=0)
        zero = zero_shot_scores(probabilities[held].mean(axis=0))
        predicted["head"].append(int(np.argmax(head)))
        predicted["zero-shot"].append(int(np.argmax(zero)))
        predicted["head x zero-shot"].append(int(np.argmax(np.sqrt(head * zero))))
    return {name: np.array(values) for name, values in predicted.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the head trained on every picture")
    parser.add_argument("--footage", type=Path, help="score the real-footage videos built here")
    parser.add_argument("--views", type=int, default=24, help="composed crops per picture")
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, help="features .npz: read if there, else written")
    args = parser.parse_args()
    started = time.perf_counter()
    pictures = load_pictures()
    people = load_people()
    counts = {c: sum(p.label == c for p in pictures) for c in CLASSES}
    print(f"{len(pictures)} pictures, {len(people)} person drawings; per class: {counts}")
    if args.cache is not None and args.cache.is_file():
        saved = np.load(args.cache)
        features, probabilities = saved["features"], saved["probabilities"]
        labels, groups = saved["labels"], saved["groups"]
    else:
        features, probabilities, labels, groups = extract(pictures, people, args.views, args.seed)
        if args.cache is not None:
            np.savez(
                args.cache,
                features=features,
                probabilities=probabilities,
                labels=labels,
                groups=groups,
            )
    print(f"features of {len(features)} crops in {time.perf_counter() - started:.0f} s")
    truth = np.array([CLASSES.index(p.label) for p in pictures])
    held_out = cross_validate(features, probabilities, labels, groups, args.weight_decay)
    print("leave-one-picture-out accuracy (pictures right / pictures):")
    for name, predicted in held_out.items():
        per_class = []
        for index, code in enumerate(CLASSES):
            mask = truth == index
            if mask.any():
                per_class.append(f"{code} {int((predicted[mask] == index).sum())}/{mask.sum()}")
        right = int((predicted == truth).sum())
        print(
            f"  {name:17s} {right}/{len(truth)} ({right / len(truth):.0%}): {', '.join(per_class)}"
        )
    weight, bias = fit(features, labels, args.weight_decay)
    if args.footage is not None:
        players = footage_players(args.footage)
        truth = np.array([CLASSES.index(t) for t, _, _ in players])
        head = _scores(weight, bias, np.stack([e for _, e, _ in players]))
        zero = zero_shot_scores(np.stack([p for _, _, p in players]))
        print(f"real-footage players named right, of {len(players)}:")
        for name, scores in (
            ("zero-shot", zero),
            ("head", head),
            ("head x zero-shot", np.sqrt(head * zero)),
        ):
            print(f"  {name:17s} {int((scores.argmax(axis=1) == truth).sum())}")
    if args.out is None:
        return
    from safetensors.numpy import save_file

    metadata = {
        "classes": json.dumps(CLASSES),
        "pictures": json.dumps([p.name for p in pictures]),
        "views": str(args.views),
        "weight_decay": str(args.weight_decay),
        "seed": str(args.seed),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as temporary:
        save_file({"weight": weight, "bias": bias}, str(temporary), metadata=metadata)
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s in all)", file=sys.stderr)


if __name__ == "__main__":
    main()
