"""Which instrument: ImageNet classes of a player's pictures mapped to the URMP instruments.

ImageNet-1k has a class for nine of the thirteen URMP instruments (none for viola, double
bass, clarinet or tuba, which this guess therefore never names) and for fifteen other
instruments (guitars, banjo, drums, accordion, panpipe, ...). "URMP or not" is asked first,
over the mean probabilities of the player's crops:

* another instrument (a banjo, a guitar) when the fifteen non-URMP classes together outweigh
  the best URMP class (a mandola or bouzouki spreads its mass over guitar, banjo and violin):
  reported as unknown, ``other`` set, so the user is told it is not a URMP instrument
  instead of getting the nearest URMP name;
* else the best URMP class, with its probability as the confidence; below
  :data:`MIN_CONFIDENCE` it is reported as unknown.

On the 65 instrument pictures of ``scripts/train_instrument_head.py`` the summed rule names
49 right against 46 for the single best class, with no URMP picture lost (docs/video.md has
the real-footage figures).

The summed probability of all instrument classes (:func:`instrument_mass`) says whether a
person holds an instrument at all: an actor on a stage scores almost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ImageNet-1k class index -> (URMP code, ImageNet class name).
IMAGENET_TO_URMP: dict[int, tuple[str, str]] = {
    889: ("vn", "violin, fiddle"),
    486: ("vc", "cello, violoncello"),
    558: ("fl", "flute, transverse flute"),
    683: ("ob", "oboe, hautboy, hautbois"),
    432: ("bn", "bassoon"),
    776: ("sax", "sax, saxophone"),
    513: ("tpt", "cornet, horn, trumpet, trump"),
    566: ("hn", "French horn, horn"),
    875: ("tbn", "trombone"),
}

#: ImageNet-1k classes of instruments that are not in URMP.
OTHER_INSTRUMENTS: dict[int, str] = {
    401: "accordion",
    402: "acoustic guitar",
    420: "banjo",
    541: "drum",
    546: "electric guitar",
    579: "grand piano",
    593: "harmonica",
    594: "harp",
    641: "maraca",
    642: "marimba",
    684: "ocarina",
    687: "organ",
    699: "panpipe",
    822: "steel drum",
    881: "upright piano",
}

#: Instrument classes that count towards :func:`instrument_mass` but never win a guess: round
#: and metallic shapes (the coloured discs behind the synthetic videos' players among them)
#: score high on them whatever the instrument.
MASS_ONLY = {494: "chime", 577: "gong"}

#: Below this probability a URMP instrument is reported as unknown.
MIN_CONFIDENCE = 0.05
#: A person whose instrument classes sum to less than this holds no instrument we can see:
#: about halfway between the most an actor scores on the real-footage test videos (0.080, on
#: the opera photo) and the least a player does (0.124, the didgeridoo, which ImageNet has no
#: class for; every other player 0.3 or more).
MIN_INSTRUMENT_MASS = 0.1

_URMP = np.array(sorted(IMAGENET_TO_URMP))
_OTHER = np.array(sorted(OTHER_INSTRUMENTS))
_ALL_INSTRUMENTS = np.array(sorted([*IMAGENET_TO_URMP, *OTHER_INSTRUMENTS, *MASS_ONLY]))


@dataclass(frozen=True)
class InstrumentGuess:
    """A player's instrument as guessed from pictures.

    Attributes:
        instrument: URMP code, or ``None`` when unknown.
        confidence: mean ImageNet probability of the chosen class (0..1); for another
            instrument, the summed probability of the non-URMP instrument classes.
        imagenet_class: the ImageNet class name behind the guess.
        other: the most likely instrument is one URMP does not have (``imagenet_class``).
    """

    instrument: str | None
    confidence: float
    imagenet_class: str
    other: bool = False

    def describe(self) -> str:
        """``"vn (0.93)"``, ``"unknown (looks like a banjo, not a URMP instrument)"``, ..."""
        if self.other:
            article = "an" if self.imagenet_class[0] in "aeiou" else "a"
            return f"unknown (looks like {article} {self.imagenet_class}, not a URMP instrument)"
        if self.instrument is None:
            return f"unknown (best guess {self.imagenet_class}, {self.confidence:.2f})"
        return f"{self.instrument} ({self.confidence:.2f})"


def instrument_mass(probabilities: np.ndarray) -> np.ndarray:
    """``(..., 1000)`` ImageNet probabilities -> ``(...)`` summed over instrument classes."""
    return np.asarray(probabilities)[..., _ALL_INSTRUMENTS].sum(axis=-1)


def guess_instrument(probabilities: np.ndarray) -> InstrumentGuess:
    """``(1000,)`` mean ImageNet probabilities of one player's crops -> the URMP guess."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    index = int(_URMP[np.argmax(probabilities[_URMP])])
    confidence = float(probabilities[index])
    other_mass = float(probabilities[_OTHER].sum())
    if other_mass > confidence:
        likeliest = int(_OTHER[np.argmax(probabilities[_OTHER])])
        return InstrumentGuess(None, other_mass, OTHER_INSTRUMENTS[likeliest], other=True)
    code, name = IMAGENET_TO_URMP[index]
    return InstrumentGuess(code if confidence >= MIN_CONFIDENCE else None, confidence, name)
