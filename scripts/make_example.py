"""Write ``examples/duet_vn_vc.flac``: a 12 s synthetic violin + cello duet (additive synthesis).

Two melodic lines of harmonic tones with vibrato, bow-like attacks and different spectral
tilts, mixed at 22.05 kHz. It is a smoke-test input for ``make demo``, not music.

    python scripts/make_example.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

RATE = 22050
OUT = Path(__file__).resolve().parents[1] / "examples" / "duet_vn_vc.flac"


def voice(midi_notes: list[int], beat: float, harmonics: int, tilt: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pieces = []
    for note in midi_notes:
        n = int(beat * RATE)
        t = np.arange(n) / RATE
        f0 = 440.0 * 2 ** ((note - 69) / 12)
        vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 6.28))
        phase = 2 * np.pi * np.cumsum(f0 * vibrato) / RATE
        tone = sum(np.sin(h * phase) / h**tilt for h in range(1, harmonics + 1))
        envelope = np.minimum(1, t / 0.06) * np.minimum(1, (beat - t) / 0.08)
        pieces.append(tone * envelope)
    return np.concatenate(pieces)


def main() -> None:
    violin = voice([76, 74, 72, 71, 72, 74, 76, 79, 77, 76, 74, 72], 1.0, 12, 1.0, 1)
    cello = voice([48, 55, 52, 43, 45, 52, 48, 43, 41, 48, 43, 48], 1.0, 10, 1.4, 2)
    mix = 0.25 * violin / np.abs(violin).max() + 0.3 * cello / np.abs(cello).max()
    OUT.parent.mkdir(exist_ok=True)
    soundfile.write(OUT, mix.astype(np.float32), RATE, subtype="PCM_16")
    print(f"wrote {OUT} ({mix.size / RATE:.1f} s)")


if __name__ == "__main__":
    main()
