"""System resources the generator needs: fluidsynth, soundfonts and instrument images.

They come from Debian packages (``make system-deps`` installs them). Each lookup raises
:class:`~vimss_cli.errors.MissingDependencyError` naming the package to install, so a run
fails before it writes anything.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from vimss_cli.errors import InputError, MissingDependencyError
from vimss_cli.synth.sampler import SampleLibrary, open_library


@dataclass(frozen=True)
class Soundfont:
    """A General MIDI soundfont shipped by a Debian package."""

    name: str
    path: Path
    package: str


#: Soundfonts for train/valid ("seen makers") and the one held out for the test split.
TRAIN_SOUNDFONTS: tuple[Soundfont, ...] = (
    Soundfont("FluidR3_GM", Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), "fluid-soundfont-gm"),
    Soundfont(
        "MuseScore_General_Lite",
        Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
        "musescore-general-soundfont-small",
    ),
)
TEST_SOUNDFONTS: tuple[Soundfont, ...] = (
    Soundfont("TimGM6mb", Path("/usr/share/sounds/sf2/TimGM6mb.sf2"), "timgm6mb-soundfont"),
)

OPENCLIPART_MUSIC = Path("/usr/share/openclipart/png/recreation/music")
TUXPAINT_MUSIC = Path("/usr/share/tuxpaint/stamps/hobbies/music")


def install_hint(packages: list[str] | tuple[str, ...]) -> str:
    """The command that installs ``packages`` (the Makefile target does the same)."""
    return f"apt-get install {' '.join(packages)} (or run `make system-deps` as root)"


def fluidsynth_executable() -> str:
    """Path of the ``fluidsynth`` binary; raises :class:`MissingDependencyError` if absent."""
    path = shutil.which("fluidsynth")
    if path is None:
        raise MissingDependencyError(
            f"fluidsynth is not installed; install it with: {install_hint(['fluidsynth'])}"
        )
    return path


def default_soundfonts(split: str) -> list[Soundfont]:
    """The soundfont pool of ``split``, checked to exist on disk."""
    pool = TEST_SOUNDFONTS if split == "test" else TRAIN_SOUNDFONTS
    missing = [font for font in pool if not font.path.is_file()]
    if missing:
        packages = [font.package for font in missing]
        raise MissingDependencyError(
            f"soundfont {missing[0].path} is missing; install it with: {install_hint(packages)}"
        )
    return list(pool)


def is_soundfont(path: Path) -> bool:
    """True when ``path`` starts like a SoundFont (a RIFF file of form ``sfbk``)."""
    try:
        with path.open("rb") as handle:
            header = handle.read(12)
    except OSError:
        return False
    return header[:4] == b"RIFF" and header[8:12] == b"sfbk"


def user_soundfonts(paths: list[Path]) -> list[Soundfont | SampleLibrary]:
    """Makers named on the command line: soundfont files and sample-library folders
    (:mod:`vimss_cli.synth.sampler`). A path named twice is drawn twice as often.
    Raises :class:`InputError` for a bad path."""
    fonts: list[Soundfont | SampleLibrary] = []
    for path in paths:
        if path.is_dir():
            fonts.append(open_library(path))
            continue
        if not path.is_file():
            raise InputError(f"soundfont not found: {path}")
        if path.suffix.lower() not in (".sf2", ".sf3") or not is_soundfont(path):
            raise InputError(f"not a SoundFont file (.sf2 or .sf3): {path}")
        fonts.append(Soundfont(path.stem, path.resolve(), "user"))
    return fonts
