"""The 13 instruments of the URMP dataset, with the codes URMP uses in its file names."""

from __future__ import annotations

from vimss_cli.errors import InputError

#: Most players one separation takes (URMP has up to five).
MAX_PLAYERS = 8

#: URMP code -> English name, in the fixed order that defines the label index.
INSTRUMENTS: dict[str, str] = {
    "vn": "violin",
    "va": "viola",
    "vc": "cello",
    "db": "double bass",
    "fl": "flute",
    "ob": "oboe",
    "cl": "clarinet",
    "bn": "bassoon",
    "sax": "saxophone",
    "tpt": "trumpet",
    "hn": "horn",
    "tbn": "trombone",
    "tba": "tuba",
}

INSTRUMENT_CODES: tuple[str, ...] = tuple(INSTRUMENTS)

#: Sounding MIDI range (lowest, highest) each instrument plays comfortably (what the data
#: generator writes for it, and where the pitch split looks for its notes).
SOUNDING_RANGES: dict[str, tuple[int, int]] = {
    "vn": (55, 100),
    "va": (48, 88),
    "vc": (36, 76),
    "db": (28, 67),
    "fl": (60, 96),
    "ob": (58, 91),
    "cl": (50, 91),
    "bn": (34, 75),
    "sax": (44, 84),  # tenor's low A-flat to soprano's high C (program_for picks the sax)
    "tpt": (54, 84),
    "hn": (41, 77),
    "tbn": (40, 72),
    "tba": (28, 58),
}
NUM_INSTRUMENTS: int = len(INSTRUMENT_CODES)


def instrument_index(code: str) -> int:
    """Label index (0..12) of a URMP instrument code; raises :class:`InputError` if unknown."""
    try:
        return INSTRUMENT_CODES.index(code)
    except ValueError:
        known = ", ".join(f"{c} ({n})" for c, n in INSTRUMENTS.items())
        raise InputError(f"unknown instrument code {code!r}; known codes: {known}") from None


def parse_instrument_list(text: str) -> list[str]:
    """Parse ``"vn,vc"`` into ``["vn", "vc"]``, validating every code (case-insensitive)."""
    codes = [part.strip().lower() for part in text.split(",")]
    if not text.strip() or any(not c for c in codes):
        raise InputError(f"--instruments expects a comma-separated list of codes, got {text!r}")
    for code in codes:
        instrument_index(code)
    return codes
