"""Random synthetic rooms for training (``training/rooms.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from vimss_cli.training.rooms import DRR_DB, MIN_RT60, TAIL_DB, reverberate, room_response

RATE = 22050


@pytest.mark.parametrize("seed", range(8))
def test_a_room_is_direct_sound_then_a_decaying_tail_at_the_drawn_ratio(seed: int) -> None:
    response = room_response(np.random.default_rng(seed), RATE, 1.2)
    assert response.dtype == np.float32 and response[0] == 1.0
    seconds = response.size / RATE
    assert MIN_RT60 * TAIL_DB / 60 - 0.01 <= seconds <= 1.2 * TAIL_DB / 60 + 0.01
    tail = response[1:].astype(np.float64)
    drr = 10 * np.log10(1.0 / np.sum(tail**2))
    assert DRR_DB[0] - 0.5 <= drr <= DRR_DB[1] + 0.5
    quarters = [float(np.sum(q**2)) for q in np.array_split(tail, 4)]
    assert quarters[1] > quarters[2] > quarters[3]  # it dies away
    assert quarters[3] < 1e-2 * max(quarters)


def test_high_frequencies_die_away_sooner_than_low_ones() -> None:
    response = room_response(np.random.default_rng(3), RATE, 1.0).astype(np.float64)
    late = response[response.size // 2 :]
    early = response[1 : response.size // 4]

    def high_share(part: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(part)) ** 2
        bins = np.fft.rfftfreq(part.size, 1 / RATE)
        return float(spectrum[bins > 6000].sum() / spectrum.sum())

    assert high_share(late) < 0.5 * high_share(early)


def test_rooms_are_a_function_of_the_generator_and_stay_short_for_a_dry_setting() -> None:
    one = room_response(np.random.default_rng(5), RATE, 1.0)
    np.testing.assert_array_equal(one, room_response(np.random.default_rng(5), RATE, 1.0))
    small = room_response(np.random.default_rng(5), RATE, MIN_RT60)
    assert small.size <= MIN_RT60 * TAIL_DB / 60 * RATE + 1


def test_reverberate_gives_each_output_sample_its_full_history() -> None:
    rng = np.random.default_rng(0)
    response = room_response(rng, 8000, 0.5)
    lead = response.size - 1
    audio = rng.standard_normal(lead + 500).astype(np.float32)
    wet = reverberate(audio, response)
    assert wet.shape == (500,)
    full = np.convolve(audio.astype(np.float64), response.astype(np.float64))
    np.testing.assert_allclose(wet, full[lead : lead + 500], atol=1e-4)
    click = np.zeros(lead + 500, np.float32)
    click[lead - 100] = 1.0  # a note 100 samples before the window: its tail is heard in it
    np.testing.assert_allclose(reverberate(click, response)[:5], response[100:105], atol=1e-6)
