"""Training the note classifier (:mod:`vimss_cli.note_classifier`) on generated ensembles.

Each sample is one note of one player in one frame: the harmonic profile of that player's
pitch in the *mixture's* spectrum (the other players' partials included, as at separation
time), labelled with the player's instrument. The pitch is what the harmonic masks' own
estimator finds on the player's true stem (:class:`~vimss_cli.pitch_voices.PitchGrid`, frames
where :class:`~vimss_cli.pitch_voices.LoudnessGate` hears it), on the soft masks' frames.
Players whose instrument is heard twice in the piece, and pieces of one instrument, give no
samples: the joint pitches never ask about them. The loss is the cross-entropy of the
softmax over the piece's own instruments, the question the masks ask.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vimss_cli.instruments import INSTRUMENT_CODES, instrument_index
from vimss_cli.note_classifier import DETAILED_VERSION, FEATURE_SIZES, note_features
from vimss_cli.pitch_voices import LoudnessGate, PitchGrid
from vimss_cli.soft_masks import HOP, N_FFT
from vimss_cli.stft_stream import periodic_hann

if TYPE_CHECKING:  # torch is imported where a function needs it (training only)
    from torch import nn


def frame_magnitudes(signal: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """``(n,)`` -> ``(T, n_fft // 2 + 1)`` float32 magnitudes of the frames that fit (periodic
    Hann window, every ``hop`` samples from the first): the soft masks' frames
    (:class:`~vimss_cli.stft_stream.StreamingSTFT`) less their zero-padded first ones."""
    window = periodic_hann(n_fft).astype(np.float32)
    frames = max(0, (signal.shape[0] - n_fft) // hop + 1)
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    return np.abs(np.fft.rfft(signal.astype(np.float32)[index] * window, axis=1)).astype(np.float32)


def true_pitches(
    references: np.ndarray, instruments: Sequence[str], sample_rate: int
) -> np.ndarray:
    """``(K, n)`` true stems -> ``(K, T)`` each stem's pitch in Hz per frame (``nan`` where it
    is silent), by the harmonic masks' estimator on the stem alone."""
    window = periodic_hann(N_FFT)
    pitches = []
    for reference, code in zip(references, instruments, strict=True):
        magnitude = frame_magnitudes(reference)  # (T, bins)
        pitch = np.full(magnitude.shape[0], np.nan)
        loud = LoudnessGate(window, None).loud(magnitude)
        if loud.any():
            pitch[loud] = PitchGrid(code, sample_rate, N_FFT).strongest(magnitude[loud].T)
        pitches.append(pitch)
    return np.array(pitches).reshape(len(pitches), -1)


def note_samples(
    mixture: np.ndarray,
    references: np.ndarray,
    instruments: Sequence[str],
    sample_rate: int,
    features: str = DETAILED_VERSION,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One piece's samples: the notes' ``features`` ``(N, FEATURE_SIZES[features])``
    float32, each note's instrument (index into :data:`INSTRUMENT_CODES`, ``(N,)``) and the
    piece's instruments as a mask ``(N, len(INSTRUMENT_CODES))`` bool."""
    codes = list(instruments)
    empty = (
        np.zeros((0, FEATURE_SIZES[features]), np.float32),
        np.zeros(0, np.int64),
        np.zeros((0, len(INSTRUMENT_CODES)), bool),
    )
    if len(set(codes)) < 2:
        return empty
    pitches = true_pitches(references, codes, sample_rate)  # (K, T)
    magnitude = frame_magnitudes(mixture)
    frames = min(magnitude.shape[0], pitches.shape[1])
    notes = note_features(magnitude[:frames], pitches[:, :frames].T, sample_rate, N_FFT, features)
    allowed = np.zeros(len(INSTRUMENT_CODES), bool)
    allowed[[instrument_index(code) for code in codes]] = True
    parts, labels = [], []
    for k, code in enumerate(codes):
        if codes.count(code) != 1:
            continue
        sounds = ~np.isnan(pitches[k, :frames])
        parts.append(notes[sounds, k])
        labels.append(np.full(int(sounds.sum()), instrument_index(code)))
    if not parts:
        return empty
    x, y = np.concatenate(parts), np.concatenate(labels)
    return x, y, np.repeat(allowed[None], len(y), axis=0)


def train_note_classifier(
    x: np.ndarray,
    y: np.ndarray,
    allowed: np.ndarray,
    hidden: int = 128,
    steps: int = 3000,
    batch: int = 1024,
    seed: int = 0,
) -> nn.Sequential:
    """Fit the perceptron (the features ``x`` ``(N, F)`` -> ``hidden`` -> ``hidden`` -> one
    score per URMP instrument, GELU) on samples of :func:`note_samples`: AdamW, one-cycle
    learning rate up to 3e-3, ``steps`` batches drawn with replacement. Deterministic for a
    seed (on the CPU)."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    network = nn.Sequential(
        nn.Linear(x.shape[1], hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, len(INSTRUMENT_CODES)),
    )
    optimiser = torch.optim.AdamW(network.parameters(), 2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=steps)
    features, labels, masks = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(allowed)
    for _ in range(steps):
        pick = torch.randint(0, len(labels), (batch,), generator=generator)
        scores = network(features[pick]).masked_fill(~masks[pick], -1e9)
        loss = nn.functional.cross_entropy(scores, labels[pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return network.eval()


def restricted_accuracy(
    network: nn.Module, x: np.ndarray, y: np.ndarray, allowed: np.ndarray
) -> float:
    """Share of samples whose highest score among the piece's instruments is the right one."""
    import torch

    with torch.no_grad():
        scores = network(torch.from_numpy(x)).masked_fill(~torch.from_numpy(allowed), -1e9)
    return float((scores.argmax(dim=1).numpy() == y).mean()) if len(y) else float("nan")


def save_note_classifier(
    network: nn.Module,
    path: Path,
    provenance: dict[str, str],
    features: str = DETAILED_VERSION,
) -> None:
    """Write the perceptron's weights as :func:`~vimss_cli.note_classifier.read_note_classifier`
    reads them (atomically, readable as any new file), with the ``features`` it reads and
    ``provenance`` in the metadata."""
    from vimss_cli.checkpoint import save_file_atomically

    tensors = {
        key: value.detach().float().contiguous() for key, value in network.state_dict().items()
    }
    metadata = {
        "features": features,
        "instruments": json.dumps(list(INSTRUMENT_CODES)),
        **provenance,
    }
    save_file_atomically(tensors, Path(path), metadata)
