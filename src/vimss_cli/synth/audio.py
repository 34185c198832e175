"""Sound: render each player with fluidsynth, add the room, balance, and mix exactly.

fluidsynth's own reverb and chorus are off; the room is ours (a per-piece reverberation
time, a per-player impulse response for its place in the room). Stems are balanced to
roughly equal loudness with a small per-player offset, then quantised to 16-bit, and the
mixture is the integer sum of the quantised stems, so ``AuMix == sum(AuSep)`` exactly.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from vimss_cli.errors import MediaError
from vimss_cli.synth.performance import RENDER_GAP, RenderPart, write_render_midi
from vimss_cli.synth.resources import is_soundfont

#: Mixture peak ceiling (-1 dBFS) before quantisation.
PEAK_CEILING = 10 ** (-1 / 20)
#: Loudness target of a stem's active part, dBFS RMS (before the joint peak scaling).
STEM_TARGET_DB = -26.0


@dataclass(frozen=True)
class Room:
    """A room: reverberation time (s) and how much reverberation each player gets."""

    rt60: float
    wet: tuple[float, ...]


def render_midi(
    fluidsynth: str, soundfont: Path, midi_path: Path, sample_rate: int, frames: int
) -> np.ndarray:
    """Render a MIDI file to mono float32 of exactly ``frames`` samples (no reverb/chorus).

    fluidsynth's own timing is kept: a file written by
    :func:`~vimss_cli.synth.performance.write_render_midi` is cut into players afterwards.
    """
    if not is_soundfont(soundfont):
        raise MediaError(f"fluidsynth cannot use {soundfont}: it is not a SoundFont file")
    with tempfile.TemporaryDirectory(prefix="vimss-fs-") as folder:
        wav = Path(folder) / "out.wav"
        command = [
            fluidsynth,
            "-ni",
            "-q",
            "-R",
            "0",
            "-C",
            "0",
            "-g",
            "0.5",
            "-r",
            str(sample_rate),
            "-O",
            "float",
            "-T",
            "wav",
            "-F",
            str(wav),
            str(soundfont),
            str(midi_path),
        ]
        # fluidsynth, not ffmpeg: ffmpeg_io's runner and message parsing do not apply
        result = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
        said = (result.stderr + result.stdout).strip()
        # fluidsynth exits 0 even when it cannot load the font; its words say so
        if result.returncode != 0 or not wav.exists() or "error" in said.lower():
            message = said.splitlines()
            raise MediaError(
                f"fluidsynth could not render with {soundfont}", message[-1] if message else None
            )
        audio, _ = soundfile.read(str(wav), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    out = np.zeros(frames, dtype=np.float32)
    out[: min(frames, mono.size)] = mono[:frames]
    return out


def render_players(
    fluidsynth: str,
    soundfont: Path,
    players: list[RenderPart],
    seconds: float,
    sample_rate: int,
) -> list[np.ndarray]:
    """Render several players with one soundfont load; one mono float32 array each.

    Each array holds exactly ``round(seconds * sample_rate)`` samples.
    """
    frames = round(seconds * sample_rate)
    stride = round((seconds + RENDER_GAP) * sample_rate)
    with tempfile.TemporaryDirectory(prefix="vimss-midi-") as folder:
        midi = Path(folder) / "players.mid"
        write_render_midi(midi, players, seconds)
        audio = render_midi(fluidsynth, soundfont, midi, sample_rate, stride * len(players))
    return [audio[k * stride : k * stride + frames].copy() for k in range(len(players))]


def draw_room(rng: np.random.Generator, players: int) -> Room:
    """A room with RT60 between 0.3 and 1.6 s and a wet share per player."""
    return Room(
        rt60=float(rng.uniform(0.3, 1.6)),
        wet=tuple(float(w) for w in rng.uniform(0.1, 0.35, size=players)),
    )


def impulse_response(
    rng: np.random.Generator, room: Room, player: int, sample_rate: int
) -> np.ndarray:
    """Direct sound plus an exponentially decaying, darkening noise tail."""
    length = int(min(room.rt60, 2.0) * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / room.rt60)
    # a one-pole low-pass makes the tail darker than the direct sound
    spectrum = np.fft.rfft(tail)
    freqs = np.fft.rfftfreq(length, 1 / sample_rate)
    spectrum /= 1 + 1j * freqs / 4000.0
    tail = np.fft.irfft(spectrum, n=length)
    predelay = int(rng.uniform(0.005, 0.02) * sample_rate)
    tail = np.concatenate([np.zeros(predelay), tail])[:length]
    tail *= room.wet[player] / max(np.sqrt(np.sum(tail**2)), 1e-12)
    response = tail
    response[0] += 1.0 - room.wet[player]
    return response


def convolve(signal: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Convolution by FFT, cut to the signal's length."""
    size = 1 << int(np.ceil(np.log2(signal.size + response.size)))
    out = np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(response, size), size)
    return out[: signal.size]


def active_loudness_db(signal: np.ndarray, sample_rate: int) -> float:
    """RMS level in dBFS over the 50 ms frames within 40 dB of the loudest (where it plays)."""
    hop = max(1, int(0.05 * sample_rate))
    frames = signal[: signal.size // hop * hop].reshape(-1, hop)
    energy = np.mean(frames.astype(np.float64) ** 2, axis=1)
    if energy.size == 0 or energy.max() <= 0:
        return -120.0
    active = energy[energy > energy.max() * 1e-4]
    return float(10 * np.log10(np.mean(active)))


def balance_and_quantise(
    stems: list[np.ndarray], rng: np.random.Generator, sample_rate: int
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Level the stems like an engineer and return int16 stems, the int16 mixture and gains.

    Each stem is brought to ``STEM_TARGET_DB`` plus a per-player offset within +-2 dB, then
    all are scaled together so the mixture peaks between -7 and -1 dBFS. Returns
    ``(stems (K, N) int16, mix (N,) int16, per-stem gains in dB)``.
    """
    gains_db = []
    leveled = []
    for stem in stems:
        loudness = active_loudness_db(stem, sample_rate)
        gain_db = STEM_TARGET_DB + rng.uniform(-2.0, 2.0) - loudness if loudness > -100 else 0.0
        gains_db.append(gain_db)
        leveled.append(stem.astype(np.float64) * 10 ** (gain_db / 20))
    stacked = np.stack(leveled)
    peak = float(np.max(np.abs(stacked.sum(axis=0)))) or 1.0
    target_peak = PEAK_CEILING * 10 ** (-rng.uniform(0.0, 6.0) / 20)
    scale = target_peak / peak
    quantised = np.round(stacked * scale * 32767).astype(np.int32)
    mix = quantised.sum(axis=0)
    if np.abs(mix).max() > 32767:  # impossible by construction: the ceiling leaves headroom
        raise RuntimeError("mixture would clip after quantisation")
    gains = [g + 20 * np.log10(scale) for g in gains_db]
    return quantised.astype(np.int16), mix.astype(np.int16), gains


def write_wav16(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write int16 samples as a 16-bit PCM mono WAV (byte-for-byte reproducible)."""
    soundfile.write(str(path), samples, sample_rate, subtype="PCM_16", format="WAV")
