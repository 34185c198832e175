"""The listening report: a self-contained page, checked in headless Chromium when present."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from conftest import RATE, missing_fixture, noise, write_wav
from vimss_cli.cli import app
from vimss_cli.listening_report import Track, envelope_svg, render

runner = CliRunner()
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
]  # fmt: skip


def test_page_embeds_every_track_decodably_and_fetches_nothing() -> None:
    tracks = [Track("mixture", noise(1.0), RATE), Track("01_vn", noise(1.0, seed=1) * 0.5, RATE)]
    page = render("duet", tracks, scores=[{"player": "1", "SDR": "3.2"}])
    uris = re.findall(r'src="data:audio/ogg;base64,([^"]+)"', page)
    assert len(uris) == 2
    decoded, rate = soundfile.read(io.BytesIO(base64.b64decode(uris[1])))
    assert rate == RATE and abs(len(decoded) - RATE) < 64
    assert "http://" not in page and "https://" not in page  # nothing is fetched
    assert "<td>3.2</td>" in page and 'id="solo1"' in page and 'id="mute0"' in page


def _embedded(page: str) -> list[tuple[np.ndarray, int]]:
    uris = re.findall(r'src="data:audio/ogg;base64,([^"]+)"', page)
    return [soundfile.read(io.BytesIO(base64.b64decode(uri))) for uri in uris]


def test_loud_tracks_share_one_gain_and_high_rates_are_embedded_at_48k() -> None:
    """Found by a review: each track louder than full scale was scaled to its own peak (the
    stems stopped adding up to the mixture), and libsndfile's Vorbis encoder crashed the
    process on 384 kHz stems."""
    tone = np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE).astype(np.float32)
    page = render("loud", [Track("mixture", 3 * tone, RATE), Track("01_vn", tone, RATE)])
    (mixture, _), (stem, _) = _embedded(page)
    assert np.abs(mixture).max() == pytest.approx(1.0, abs=0.1)
    assert np.abs(stem).max() == pytest.approx(1 / 3, abs=0.05)
    high = 384000
    fast = np.sin(np.arange(high // 4) * 2 * np.pi * 440 / high).astype(np.float32)
    ((audio, rate),) = _embedded(render("high", [Track("01_vn", fast, high)]))
    assert rate == 48000 and abs(len(audio) - len(fast) * 48000 // high) < 64


def test_minutes_of_audio_embed_without_crashing_the_encoder() -> None:
    """Found by a review: libsndfile's Vorbis encoder, given 2 minutes or more in one write,
    overflowed the stack and killed the process (exit 139) after the stems were written."""
    code = (
        "import numpy as np\n"
        "from vimss_cli.listening_report import Track, render\n"
        "tone = (0.3 * np.sin(np.arange(22050 * 150) * 0.05)).astype(np.float32)\n"
        "print(len(render('long', [Track('mixture', tone, 22050)])))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]
    assert int(result.stdout) > 100_000


def test_envelope_follows_the_waveform() -> None:
    audio = np.concatenate([np.zeros(1000), np.ones(1000)]).astype(np.float32)
    svg = envelope_svg(audio, points=4, height=10)
    assert "0,5.0" in svg and "3,0.0" in svg  # silent start on the midline, full scale at the end


@pytest.fixture()
def stem_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "out" / "duet"
    folder.mkdir(parents=True)
    write_wav(folder / "01_vn.wav", noise(1.0, seed=1) * 0.3)
    write_wav(folder / "02_vc.wav", noise(1.0, seed=2) * 0.3)
    return folder


def test_report_command_and_its_refusals(stem_folder: Path, tmp_path: Path) -> None:
    mixture = write_wav(tmp_path / "duet.wav", noise(1.0))
    result = runner.invoke(app, ["report", str(stem_folder), "--mixture", str(mixture)])
    assert result.exit_code == 0, result.output
    page = (stem_folder / "report.html").read_text()
    assert page.count("<audio") == 3 and ">mixture<" in page
    again = runner.invoke(app, ["report", str(stem_folder)])
    assert again.exit_code != 0 and "already exists" in again.output
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = runner.invoke(app, ["report", str(empty)])
    assert nothing.exit_code != 0 and "no stems" in nothing.output
    not_a_page = runner.invoke(app, ["report", str(stem_folder), "-o", str(tmp_path / "r.txt")])
    assert not_a_page.exit_code == 2 and "must be an .html file" in not_a_page.output
    # found by a new user's trial: inspect made missing folders, report failed on them
    deep = tmp_path / "new" / "deeper" / "r.html"
    nested = runner.invoke(app, ["report", str(stem_folder), "-o", str(deep)])
    assert nested.exit_code == 0, nested.output
    assert deep.is_file()
    under_a_file = runner.invoke(app, ["report", str(stem_folder), "-o", str(deep / "x.html")])
    assert under_a_file.exit_code != 0 and "it is not a folder" in under_a_file.output
    assert "warning" not in result.stderr  # the right mixture: no word about its length


def test_report_warns_of_a_mixture_that_is_not_the_stems_input(
    stem_folder: Path, tmp_path: Path
) -> None:
    other = write_wav(tmp_path / "other.wav", noise(3.0))
    out = tmp_path / "page.html"
    arguments = ["report", str(stem_folder), "--mixture", str(other), "-o", str(out)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "warning: other.wav lasts 3.00 s but the stems 1.00 s" in result.stderr
    assert out.is_file()


def test_report_refuses_a_stem_with_nan_and_warns_of_stems_of_other_lengths(
    stem_folder: Path, tmp_path: Path
) -> None:
    """Found by a review: one NaN sample in one stem silenced every track of the page (the
    gain they share became NaN), and stems of different lengths were put on one clock
    without a word."""
    from test_cli import assert_clean_failure

    first, second = sorted(stem_folder.glob("*.wav"))
    audio, rate = soundfile.read(first, dtype="float32")
    audio[100] = np.nan
    soundfile.write(first, audio, rate, subtype="FLOAT")
    out = tmp_path / "page.html"
    refused = runner.invoke(app, ["report", str(stem_folder), "-o", str(out)])
    assert_clean_failure(refused, str(first), "NaN or infinite samples")
    assert not out.exists()

    audio[100] = 0.0
    soundfile.write(first, np.concatenate([audio, audio, audio]), rate, subtype="FLOAT")
    warned = runner.invoke(app, ["report", str(stem_folder), "-o", str(out)])
    assert warned.exit_code == 0, warned.output
    assert f"warning: the stems differ in length ({first.stem} 3.00 s, {second.stem} 1.00 s)" \
        in warned.stderr  # fmt: skip
    assert out.is_file()


def test_separate_report_has_the_mixture_and_the_stems(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    mixture = write_wav(tmp_path / "duet.wav", noise(1.0))
    result = runner.invoke(
        app, ["separate", str(mixture), "-i", "vn,vc", "-o", str(tmp_path / "out"), "--report"]
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "duet" / "report.html").read_text()
    assert page.count("<audio") == 3


def test_separate_report_keeps_a_users_page_and_says_when_only_the_page_failed(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: --report replaced a report.html already in the stems' folder
    without --force, and a page that could not be written hid that the stems were."""
    mixture = write_wav(tmp_path / "duet.wav", noise(1.0))
    page = tmp_path / "out" / "duet" / "report.html"
    page.parent.mkdir(parents=True)
    page.write_text("my notes")
    arguments = ["separate", str(mixture), "-i", "vn,vc", "-o", str(tmp_path / "out"), "--report"]
    refused = runner.invoke(app, arguments)
    assert refused.exit_code != 0 and f"outputs already exist: {page}" in refused.stderr
    assert page.read_text() == "my notes" and not (page.parent / "01_vn.wav").exists()
    folder = tmp_path / "out" / "trio" / "report.html"  # a folder: refused even with --force
    folder.mkdir(parents=True)
    trio = write_wav(tmp_path / "trio.wav", noise(1.0))
    blocked = runner.invoke(app, ["separate", str(trio), "-i", "vn", "-o", str(tmp_path / "out"),
                                  "--report", "--force"])  # fmt: skip
    assert blocked.exit_code != 0 and "a folder of that name is there" in blocked.stderr
    assert "Traceback" not in blocked.output and not (folder.parent / "01_vn.wav").exists()

    from vimss_cli import listening_report
    from vimss_cli.errors import OutputError

    def full_disk(path: Path, *_: object, **__: object) -> Path:
        raise OutputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(listening_report, "write_report", full_disk)
    failed = runner.invoke(app, [*arguments, "--force"])
    assert failed.exit_code != 0
    assert "the stems of duet.wav are written; only the listening report is missing" in (
        failed.stderr
    )
    assert (page.parent / "01_vn.wav").is_file() and page.read_text() == "my notes"


def test_every_track_loads_and_plays_in_headless_chromium(
    stem_folder: Path, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        missing_fixture("chromium is not installed (Debian package chromium)")
    runner.invoke(app, ["report", str(stem_folder)])
    page = (stem_folder / "report.html").as_uri()
    dom = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         "--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=8000",
         "--dump-dom", page + "#selftest"],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert "selftest: 2/2 played" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
         "--window-size=1000,500", f"--screenshot={shot}", page],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 2000
