"""Where an input's stems go: ``--filename`` templates such as the default
``{input}/{player:02d}_{instrument}.{ext}``, relative to the output folder.

A template has four fields: ``input`` (the input's file name without its extension),
``player`` (1, 2, ... left to right; the rest stem comes last), ``instrument`` (its code,
``player`` when unknown, ``rest`` for the rest stem) and ``ext`` (``wav``, ``flac`` or ``mp3``).
It is checked whole before any work (:meth:`StemTemplate.__post_init__`): every stem of an
input must get its own name in one folder inside the output folder, and the name must end in
its format's extension.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NoReturn

from vimss_cli.errors import InputError
from vimss_cli.instruments import INSTRUMENT_CODES, MAX_PLAYERS

DEFAULT_TEMPLATE = "{input}/{player:02d}_{instrument}.{ext}"
FIELDS = ("input", "player", "instrument", "ext")
EXTENSIONS = ("wav", "flac", "mp3")
#: What ``{instrument}`` becomes: a code, ``player`` (no instrument given), ``rest``.
INSTRUMENT_VALUES = (*INSTRUMENT_CODES, "player", "rest")

#: The numbers ``{player}`` takes: the players, then the rest stem.
PLAYER_NUMBERS = range(1, MAX_PLAYERS + 2)
#: Players a template is tried with when it is checked (more than any input has).
_TRIAL_PLAYERS = range(1, 101)


@dataclass(frozen=True)
class StemTemplate:
    """A checked ``--filename`` template; :class:`InputError` in one sentence if it is not
    usable (unknown field, no ``{player}``, a folder outside OUTDIR, no ``.{ext}`` at the end).
    """

    text: str = DEFAULT_TEMPLATE
    #: ``(literal, field or None, format spec)`` of the file name, and of the folder part
    _name: list[tuple[str, str | None, str]] = field(init=False, repr=False, compare=False)
    _folder: list[tuple[str, str | None, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = self.text
        if "/" in text:
            folder_text, name_text = text.rsplit("/", 1)
        else:
            folder_text, name_text = "", text
        object.__setattr__(self, "_folder", self._parse(folder_text))
        object.__setattr__(self, "_name", self._parse(name_text))
        if not text.strip() or PurePosixPath(text).is_absolute():
            self._refuse("is not a path inside OUTDIR")
        misplaced = [name for _, name, _ in self._folder if name not in (None, "input")]
        if misplaced:
            self._refuse(f"puts {{{misplaced[0]}}} in a folder; only {{input}} may name one")
        last_literal, last_field, last_spec = self._name[-1] if self._name else ("", None, "")
        if last_field != "ext" or last_spec or not last_literal.endswith("."):
            self._refuse("must end with .{ext}, so each stem's name says its format")
        trial = [self._render(self._name, "x", n, "vn", "wav") for n in _TRIAL_PLAYERS]
        folder_parts = PurePosixPath(self._render(self._folder, "x", 1, "vn", "wav")).parts
        if any(part.startswith(".") and part != ".." for part in (*folder_parts, trial[0])):
            self._refuse("names hidden files or folders (a name that starts with '.')")
        if len(set(trial)) != len(trial):
            self._refuse("has no {player}: the stems of one input would share one name")
        for (_, first, _), (between, second, _) in itertools.pairwise(self._name):
            if {first, second} == {"input", "player"} and (not between or between.isdigit()):
                self._refuse(
                    "puts {input} and {player} side by side: the stems of 'a1.wav' and of "
                    "'a.wav' would be told apart by nothing; put a character other than a "
                    "digit between them"
                )
        for spec in (spec for _, name, spec in self._name if name == "player"):
            if not all(format(n, spec).isdigit() for n in _TRIAL_PLAYERS):
                self._refuse("writes {player} other than as digits; try {player:02d}")
        self.folder(Path("."), "input")  # a literal '..' leaves OUTDIR

    def _refuse(self, reason: str) -> NoReturn:
        raise InputError(f"--filename {self.text!r} {reason}")

    def _parse(self, text: str) -> list[tuple[str, str | None, str]]:
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as error:
            self._refuse(f"is not a template: {error}")
        parts = []
        for literal, name, spec, conversion in parsed:
            if name is not None and name not in FIELDS:
                self._refuse(
                    f"has an unknown field {{{name}}}; the fields are "
                    + ", ".join(f"{{{f}}}" for f in FIELDS)
                )
            if conversion or any(c in (spec or "") for c in "{/"):
                self._refuse(f"writes {{{name}}} in a way not supported here; use {{{name}}}")
            parts.append((literal, name, spec or ""))
        try:
            self._render(parts, "input", 1, "vn", "wav")
        except ValueError as error:
            self._refuse(f"cannot be filled in: {error}")
        return parts

    @staticmethod
    def _render(
        parts: list[tuple[str, str | None, str]], input: str, player: int, instrument: str, ext: str
    ) -> str:
        values = {"input": input, "player": player, "instrument": instrument, "ext": ext}
        return "".join(
            literal + ("" if name is None else format(values[name], spec))
            for literal, name, spec in parts
        )

    @property
    def names_input(self) -> bool:
        """Whether ``{input}`` appears: without it, the stems of two inputs share names."""
        return any(name == "input" for _, name, _ in self._folder + self._name)

    def folder(self, out_dir: Path, input_name: str) -> Path:
        """The folder all stems of an input go into (inside ``out_dir``)."""
        relative = PurePosixPath(self._render(self._folder, input_name, 1, "vn", "wav"))
        if ".." in relative.parts or relative.is_absolute():
            self._refuse("leaves OUTDIR through '..'")
        return Path(out_dir) / relative

    def path(self, out_dir: Path, input_name: str, player: int, instrument: str, ext: str) -> Path:
        """One stem's path (``ext`` without its dot)."""
        name = self._render(self._name, input_name, player, instrument, ext)
        return self.folder(out_dir, input_name) / name

    def report_path(self, out_dir: Path, input_name: str) -> Path:
        """Where ``separate --report`` writes the input's page: ``report.html`` beside the
        stems, or ``<input>.report.html`` when inputs share the folder."""
        shared = any(name == "input" for _, name, _ in self._name)
        return self.folder(out_dir, input_name) / (
            f"{input_name}.report.html" if shared else "report.html"
        )

    def stem_names(self, input_name: str) -> frozenset[str]:
        """Every file name in :meth:`folder` a run on the input can write: players 1 to
        :data:`PLAYER_NUMBERS`' last (the rest stem), every instrument value and format."""
        return frozenset(
            self._render(self._name, input_name, player, instrument, ext)
            for player in PLAYER_NUMBERS
            for instrument in INSTRUMENT_VALUES
            for ext in EXTENSIONS
        )

    def is_stem(self, input_name: str) -> Callable[[str], bool]:
        """Whether a file name in :meth:`folder` is a stem of the input (of any players and
        format): the earlier set that a new one replaces, or ``--skip-existing`` passes.
        Only names a run can write count (:meth:`stem_names`), so a template without
        ``{instrument}`` does not claim ``a_2023.wav``."""
        return self.stem_names(input_name).__contains__
