"""Fetch a sample library of real instrument recordings for ``vimss data synth``.

The ``tonejs-instrument-*-mp3`` packages on npm hold real recorded notes (every few
semitones, several seconds each) of 11 of the 13 URMP instruments: no viola, no oboe.
They are the "tonejs-instruments" collection of N. Brosowsky, edited from public-domain
sources; samples under CC-BY 3.0, code under MIT. This script downloads the pinned
tarballs from the npm registry (no npm needed), checks each one's SHA-256, and unpacks them
as ``OUT/<instrument>/<note>.mp3``, the layout :mod:`vimss_cli.synth.sampler` plays::

    python scripts/fetch_sample_library.py ~/vimss-work/tonejs
    vimss data synth -o data/train -n 320 --soundfonts FONT.sf2,~/vimss-work/tonejs

A data-preparation step, run once by hand; nothing in the package downloads at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import io
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
LICENCE = """tonejs-instruments (N. Brosowsky), from the npm packages tonejs-instrument-*-mp3.
Samples: CC-BY 3.0 (https://creativecommons.org/licenses/by/3.0/), edited from public-domain
sources (trimmed, levelled, denoised). Code of the packages: MIT. Credit them in whatever
you publish that was trained on these recordings.
"""


def fetch(instrument: str, version: str, digest: str) -> bytes:
    """The package's tarball, checked against its pinned SHA-256."""
    name = f"tonejs-instrument-{instrument}-mp3"
    url = f"{REGISTRY}/{name}/-/{name}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=120) as response:
        data: bytes = response.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise SystemExit(f"error: {url} does not match its pinned SHA-256")
    return data


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="library folder to write")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
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
