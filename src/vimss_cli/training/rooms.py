"""Random rooms for training: each player heard through its own synthetic room response.

Soundfonts and sample libraries are recorded close and nearly dry; real ensembles are
recorded in rooms, each player at its own place, so every real stem carries its own
reverberation. :func:`room_response` draws a plausible impulse response: the direct sound,
a few early reflections, then a tail of exponentially decaying noise whose high band dies
away sooner than its low band (air and walls absorb high frequencies first), at a random
reverberation time and direct-to-reverberant ratio. :func:`reverberate` applies it to a
window that starts early enough for the tail of earlier notes to be heard. Mixture and
target go through the same room, so the model learns to return the player as recorded.
"""

from __future__ import annotations

import numpy as np

#: shortest reverberation time drawn (RT60, seconds): a small, damped room
MIN_RT60 = 0.2
#: the tail is cut where it has decayed by this many dB (a -60 dB tail would be RT60 long)
TAIL_DB = 40.0
#: direct-to-reverberant energy ratio drawn uniformly in this range (dB): from a close
#: microphone (12) to one farther away than the room's critical distance (-3)
DRR_DB = (-3.0, 12.0)


def room_response(rng: np.random.Generator, rate: int, max_rt60: float) -> np.ndarray:
    """A random room impulse response ``(L,)`` float32 at ``rate`` Hz, ``L - 1`` samples of
    memory; ``response[0] == 1`` is the direct sound.

    Draws, in order: the reverberation time (RT60) uniformly in ``[MIN_RT60, max_rt60]`` s,
    the high band's RT60 as 0.35-0.8 of it, the crossover (1.5-5 kHz, below 0.4 x rate), the
    gap before the tail (5-25 ms), 3-8 early reflections within it and shortly after, and the
    direct-to-reverberant ratio (``DRR_DB``). The tail ends where the low band has fallen by
    ``TAIL_DB`` dB.
    """
    from scipy.signal import butter, sosfilt

    rt60 = rng.uniform(MIN_RT60, max(max_rt60, MIN_RT60))
    rt60_high = rt60 * rng.uniform(0.35, 0.8)
    crossover = min(rng.uniform(1500.0, 5000.0), 0.4 * rate)
    gap = int(rng.uniform(0.005, 0.025) * rate)
    length = max(int(rt60 * TAIL_DB / 60.0 * rate), gap + 2)
    time = np.arange(length) / rate
    noise = rng.standard_normal(length)
    low = sosfilt(butter(2, crossover, "low", fs=rate, output="sos"), noise)
    high = noise - low
    decay = np.log(1000.0)  # an RT60 is a fall of 60 dB, a factor of 1000 in amplitude
    tail = low * np.exp(-decay * time / rt60) + high * np.exp(-decay * time / rt60_high)
    tail[:gap] = 0.0
    ramp = min(gap, length - gap)  # the tail builds up over about the gap's length
    tail[gap : gap + ramp] *= np.linspace(0.0, 1.0, ramp, endpoint=False)
    reflections = rng.integers(3, 9)
    where = rng.integers(max(gap // 3, 1), gap * 2 + 1, size=reflections)
    tail[np.minimum(where, length - 1)] += rng.uniform(0.1, 0.5, reflections) * rng.choice(
        [-1.0, 1.0], reflections
    )
    drr_db = rng.uniform(*DRR_DB)
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(float(np.sum(tail**2)), 1e-12))
    response = tail.astype(np.float32)
    response[0] = 1.0
    return response


def reverberate(audio: np.ndarray, response: np.ndarray) -> np.ndarray:
    """``audio (lead + T,)`` through ``response (lead + 1,)`` -> ``(T,)``: the last ``T``
    samples, each with its full ``lead`` samples of history (a valid convolution)."""
    from scipy.signal import oaconvolve

    return oaconvolve(audio, response, mode="valid").astype(np.float32)
