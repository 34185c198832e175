"""Which instrument: a zero-shot mapping from ImageNet classes to the URMP instruments.

ImageNet-1k has a class for nine of the thirteen URMP instruments (none for viola, double
bass, clarinet or tuba, which the zero-shot guess therefore never names). The guess for a
player is the URMP instrument whose ImageNet class has the highest mean probability over the
player's crops; its confidence is that probability. Below :data:`MIN_CONFIDENCE` the player
is reported as unknown (the model's "unknown" label). No trained guesser exists yet; one
trained on appearance embeddings of real players is open work.
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

#: Below this probability the instrument is reported as unknown.
MIN_CONFIDENCE = 0.05


@dataclass(frozen=True)
class InstrumentGuess:
    """A player's instrument as guessed from pictures.

    Attributes:
        instrument: URMP code, or ``None`` when no instrument class is likely enough.
        confidence: mean ImageNet probability of the chosen class (0..1).
        imagenet_class: the ImageNet class name behind the guess.
    """

    instrument: str | None
    confidence: float
    imagenet_class: str


def guess_instrument(probabilities: np.ndarray) -> InstrumentGuess:
    """``(1000,)`` mean ImageNet probabilities of one player's crops -> the URMP guess."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    index = max(IMAGENET_TO_URMP, key=lambda i: probabilities[i])
    code, name = IMAGENET_TO_URMP[index]
    confidence = float(probabilities[index])
    return InstrumentGuess(code if confidence >= MIN_CONFIDENCE else None, confidence, name)
