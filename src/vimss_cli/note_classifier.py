"""Which instrument plays a note: a small classifier of a pitch's harmonic profile.

The harmonic masks' joint pitches (:mod:`vimss_cli.soft_masks`) share the pitches heard in the
mixture among the stems by how strongly each stem holds them, and a network's stem is often
louder in another player's note than in its own (docs/training.md, "Harmonic masks"). This
classifier adds what the note itself sounds like. For one pitch in one frame of the
mixture's spectrum it reads:

* the level of the pitch's first :data:`HARMONIC_COUNT` harmonics (the largest magnitude
  within a bin of each), in log10 units relative to the strongest of them, floored at
  :data:`FLOOR` (the clarinet's weak even harmonics, the bassoon's weak fundamental, a
  saxophone's or a trumpet's strong upper partials);
* the pitch itself, ``log2(hz / 440)``;
* (``harmonic-profile-2``, the bundled ``vimss-notes-v1``'s features) each partial's shape, the
  bins either side of its own relative to its peak (a steady partial's main lobe is narrow;
  vibrato, a bow's or a breath's noise widen it), and the level halfway to the next harmonic
  (:func:`partial_details`);

and a multilayer perceptron (two hidden layers, GELU) gives a score per URMP instrument; the
posterior over the instruments of the ensemble at hand is their softmax. It was trained on
generated ensembles only (``scripts/train_note_classifier.py``, the model card
docs/model-card-vimss-notes-v1.md). A weights file names the features it reads; either
version loads (:func:`read_note_classifier`).

Frame-local: a frame's features read that frame alone, so the streaming masks stay equal to
one pass whatever the blocks. The network runs in NumPy (three small matrix products), as the
masks do; :func:`load_note_classifier` reads the bundled weights once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vimss_cli.errors import CheckpointError

#: Harmonics read per pitch.
HARMONIC_COUNT = 16
#: Harmonic levels below the strongest by more than this (log10 units: 80 dB) read as this.
FLOOR = -4.0
#: Inputs per note of the first features (``harmonic-profile-1``): the harmonic levels and the
#: pitch.
FEATURES = HARMONIC_COUNT + 1
#: Names the first features; a weights file names those it was made for.
FEATURE_VERSION = "harmonic-profile-1"
#: The second features (``harmonic-profile-2``, what new classifiers are trained on): the first,
#: then per harmonic the partial's shape (its bin and the bins either side, relative to the
#: largest of the three) and the floor halfway to the next harmonic (:func:`partial_details`).
DETAILED_VERSION = "harmonic-profile-2"
#: Inputs per note of each features' version.
FEATURE_SIZES = {FEATURE_VERSION: FEATURES, DETAILED_VERSION: FEATURES + 4 * HARMONIC_COUNT}
#: A harmonic above this share of the highest bin reads as silent.
TOP_SHARE = 0.95
#: The bundled weights' file name (in ``models/notes/``, the wheel's ``bundled_models/notes/``).
CLASSIFIER_FILE = "vimss-notes-v1.safetensors"


def harmonic_profile(
    magnitude: np.ndarray, pitches: np.ndarray, sample_rate: int, n_fft: int
) -> np.ndarray:
    """``(T, bins)`` magnitudes of frames of ``n_fft`` samples and ``(T, C)`` pitches in Hz
    (``nan``: none) -> ``(T, C, FEATURES)`` float32, each pitch's features in its own frame
    (a ``nan`` pitch gets 440 Hz's: meaningless, for the caller to ignore)."""
    return _note_levels(magnitude, pitches, sample_rate, n_fft, details=False)


def partial_details(
    magnitude: np.ndarray, pitches: np.ndarray, sample_rate: int, n_fft: int
) -> np.ndarray:
    """``(T, bins)`` magnitudes and ``(T, C)`` pitches in Hz (``nan``: none) -> ``(T, C, 4 *
    HARMONIC_COUNT)`` float32: per harmonic, the levels (log10) of the bin below its nearest,
    that bin and the one above, each relative to the largest of the three (a steady partial's
    main lobe is narrow; vibrato, a bow's or a breath's noise widen it); then per harmonic the
    level halfway to the next harmonic (the lesser of the two bins there), relative to the
    strongest harmonic (what lies between the partials). Floored at :data:`FLOOR`; a
    harmonic above :data:`TOP_SHARE` of the spectrum reads as silent (its shape as 0)."""
    return _note_levels(magnitude, pitches, sample_rate, n_fft, details=True)[..., FEATURES:]


def note_features(
    magnitude: np.ndarray, pitches: np.ndarray, sample_rate: int, n_fft: int, version: str
) -> np.ndarray:
    """The features of ``version`` (:data:`FEATURE_SIZES`) for ``(T, C)`` pitches in ``(T,
    bins)`` magnitudes: ``(T, C, FEATURE_SIZES[version])`` float32 (the harmonics' bins read
    once for both parts)."""
    if version not in FEATURE_SIZES:
        raise ValueError(f"unknown note features {version!r}")
    details = version == DETAILED_VERSION
    return _note_levels(magnitude, pitches, sample_rate, n_fft, details=details)


def _note_levels(
    magnitude: np.ndarray, pitches: np.ndarray, sample_rate: int, n_fft: int, details: bool
) -> np.ndarray:
    """:func:`harmonic_profile` ``(T, C, FEATURES)``, then with ``details``
    :func:`partial_details` ``(T, C, 4 * HARMONIC_COUNT)``, from one reading of the bins
    around each harmonic."""
    frames, bins = magnitude.shape
    hz = np.nan_to_num(np.asarray(pitches, dtype=np.float64), nan=440.0)  # (T, C)
    centre = hz[..., None] * np.arange(1, HARMONIC_COUNT + 1) * (n_fft / sample_rate)
    nearest = np.round(centre).astype(np.int64)  # (T, C, H) bin of each harmonic
    inside = centre < bins * TOP_SHARE  # higher harmonics read as silent
    rows = np.arange(frames)[:, None, None]

    def at(index: np.ndarray) -> np.ndarray:  # (T, C, H) float32, 0 where not inside
        return np.where(inside, magnitude[rows, np.clip(index, 0, bins - 1)], np.float32(0))

    def logs(level: np.ndarray) -> np.ndarray:  # log10, relative to the strongest harmonic
        return np.maximum(np.log10(level + np.float32(1e-9)) - strongest, np.float32(FLOOR))

    lobe = [at(nearest + offset) for offset in (-1, 0, 1)]  # the bin below, its own, above
    peak = np.maximum(np.maximum(lobe[0], lobe[1]), lobe[2])  # each harmonic's level
    strongest = np.log10(peak.max(axis=-1, keepdims=True) + np.float32(1e-9))  # (T, C, 1)
    levels = logs(peak)
    pitch = np.log2(hz / 440.0).astype(np.float32)[..., None]
    parts = [levels, pitch]
    if details:
        parts += [logs(level) - levels for level in lobe]
        halfway = np.round(centre + 0.5 * hz[..., None] * (n_fft / sample_rate)).astype(np.int64)
        parts.append(logs(np.minimum(at(halfway), at(halfway + 1))))
    return np.concatenate(parts, axis=-1).astype(np.float32)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``(..., D)`` -> the same rows scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU (``torch.nn.GELU()``'s default), ``x * Phi(x)``."""
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


@dataclass(frozen=True)
class NoteClassifier:
    """The multilayer perceptron's weights: ``layers`` of ``(weight (out, in), bias (out,))``,
    GELU between them, one output per code of ``instruments``; and, once adapted to a
    recording (:meth:`adapted`), ``prototypes`` of its instruments."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    instruments: tuple[str, ...]
    #: the weights file's sha256 ("" for weights made in memory): what eval's cache keys on
    digest: str = ""
    #: ``(code, unit vector (hidden,))`` per instrument of one recording
    #: (:mod:`vimss_cli.recording_timbre`); none: the classifier as trained
    prototypes: tuple[tuple[str, np.ndarray], ...] = ()
    #: what the cosine with a prototype adds to the instrument's logit
    prototype_weight: float = 0.0
    #: the features it reads (a key of :data:`FEATURE_SIZES`)
    features: str = FEATURE_VERSION

    def note_features(
        self, magnitude: np.ndarray, pitches: np.ndarray, sample_rate: int, n_fft: int
    ) -> np.ndarray:
        """The features this classifier reads (:func:`note_features`) of ``(T, C)`` pitches
        in ``(T, bins)`` magnitudes."""
        return note_features(magnitude, pitches, sample_rate, n_fft, self.features)

    def hidden(self, features: np.ndarray) -> np.ndarray:
        """``(..., FEATURES)`` -> ``(..., hidden)`` float32: the last layer's input."""
        x = np.asarray(features, dtype=np.float32)
        for weight, bias in self.layers[:-1]:
            x = _gelu(x @ weight.T + bias)
        return x.astype(np.float32)

    def output(self, hidden: np.ndarray) -> np.ndarray:
        """``(..., hidden)`` -> ``(..., len(instruments))`` float32 scores (the last layer)."""
        weight, bias = self.layers[-1]
        return (hidden @ weight.T + bias).astype(np.float32)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(..., FEATURES)`` -> ``(..., len(instruments))`` float32 scores, as trained."""
        return self.output(self.hidden(features))

    def adapted(self, prototypes: Mapping[str, np.ndarray], weight: float) -> NoteClassifier:
        """This classifier with one recording's ``prototypes`` (code -> vector, made unit
        length), each adding ``weight`` times its cosine with a note's hidden features to
        its logit (:meth:`logits` stays the classifier's as trained)."""
        units = tuple((code, unit_rows(np.asarray(vector, np.float32)))
                      for code, vector in prototypes.items())  # fmt: skip
        return replace(self, prototypes=units, prototype_weight=weight)

    def posteriors(self, features: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        """``(..., FEATURES)`` -> ``(..., len(codes))``: the probability that each of
        ``codes`` (the ensemble's instruments, each once) plays the note, given that one of
        them does (with prototypes, those of the codes that have one weigh in)."""
        return self.posteriors_of_hidden(self.hidden(features), codes)

    def posteriors_of_hidden(self, hidden: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        """:meth:`posteriors` from the notes' ``(..., hidden)`` features (:meth:`hidden`)."""
        columns = [self.instruments.index(code) for code in codes]
        scores = self.output(hidden)[..., columns]
        if self.prototypes:
            known = dict(self.prototypes)
            adapted = [n for n, code in enumerate(codes) if code in known]
            if adapted:
                directions = np.stack([known[codes[n]] for n in adapted], axis=1)  # (D, A)
                cosines = unit_rows(hidden) @ directions
                scores[..., adapted] += np.float32(self.prototype_weight) * cosines
        return softmax(scores)


def read_note_classifier(path: Path) -> NoteClassifier:
    """A weights file of ``scripts/train_note_classifier.py`` (safetensors: ``N.weight`` and
    ``N.bias`` per layer, the instruments and the feature version in its metadata).
    :class:`CheckpointError`, in one line, for a file that is missing, unreadable, made for
    other features or not a chain of layers from its features' inputs
    (:data:`FEATURE_SIZES`) to one output per instrument."""
    import hashlib

    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"note classifier not found: {path} (reinstall vimss, or refine without harmonic "
            "masks: --no-harmonic)"
        )
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"cannot read the note classifier {path}: {error}") from error
    version = str(metadata.get("features"))
    if version not in FEATURE_SIZES:
        raise CheckpointError(
            f"{path} is a note classifier for features {metadata.get('features')!r}, "
            f"not one of {', '.join(map(repr, FEATURE_SIZES))}"
        )
    try:
        instruments = tuple(str(code) for code in json.loads(metadata.get("instruments", "[]")))
        numbers = sorted({int(key.split(".")[0]) for key in tensors})
        layers = tuple(
            (tensors[f"{n}.weight"].astype(np.float32), tensors[f"{n}.bias"].astype(np.float32))
            for n in numbers
        )
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is not a note classifier's weights ({error})") from error
    inputs = FEATURE_SIZES[version]
    for weight, bias in layers:
        if weight.ndim != 2 or weight.shape[1] != inputs or bias.shape != (weight.shape[0],):
            layers = ()
            break
        inputs = weight.shape[0]
    if not layers or inputs != len(instruments):
        raise CheckpointError(
            f"{path} does not hold a chain of layers from {FEATURE_SIZES[version]} inputs to one "
            "output per instrument"
        )
    return NoteClassifier(layers, instruments, digest, features=version)


def bundled_notes_dir() -> Path:
    """The bundled classifier's folder: the wheel's copy, else ``models/notes/`` of the
    source tree (part of the package, like the pose models: ``$VIMSS_MODELS_DIR`` names
    separation checkpoints only)."""
    package_copy = Path(__file__).resolve().parent / "bundled_models" / "notes"
    if package_copy.is_dir():
        return package_copy
    return Path(__file__).resolve().parents[2] / "models" / "notes"


@functools.cache
def load_note_classifier() -> NoteClassifier:
    """The bundled classifier (:data:`CLASSIFIER_FILE`), read once."""
    return read_note_classifier(bundled_notes_dir() / CLASSIFIER_FILE)
