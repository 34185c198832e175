"""The installed command as a real process: ``python -m vimss_cli``, real signals, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import noise, write_wav
from vimss_cli.cli import app


def test_python_dash_m_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vimss_cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("vimss ")


def default_sigint() -> None:
    """Run in the child before it starts: Ctrl-C as at a terminal. Under ``nohup`` or in a
    background job SIGINT starts out ignored, and Python then keeps ignoring it, so a test
    that sends SIGINT would only test the shell it was started from."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_long_run(mix: Path, out: Path) -> subprocess.Popen[str]:
    """``vimss separate`` of ``mix`` as a process, returned once it writes stems."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vimss_cli",
            "separate",
            str(mix),
            "-o",
            str(out),
            "-i",
            "vn,vc,fl",
            "--batch-size",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    while not any(out.rglob(".*.partial-*")):  # wait until stems are being written
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return process


def test_sigint_mid_run_leaves_no_partial_stems(tiny_models_dir: Path, tmp_path: Path) -> None:
    long_mix = write_wav(tmp_path / "long.wav", noise(600))
    out = tmp_path / "out"
    process = start_long_run(long_mix, out)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_like_ctrl_c(
    tiny_models_dir: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    long_mix = write_wav(tmp_path / "long.wav", noise(600))
    out = tmp_path / "out"
    process = start_long_run(long_mix, out)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + stop, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted by {stop.name}: nothing half-written was left behind"
    )
    assert "Traceback" not in stderr
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_ctrl_c_wrapped_by_python_while_loading_is_still_an_interrupt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python 3.11 turns a Ctrl-C inside a dataclass's ``__set_name__`` (rich.progress
    loading) into ``RuntimeError`` caused by ``KeyboardInterrupt``: seen once in CI."""
    import vimss_cli.__main__ as entry
    import vimss_cli.cli as cli

    def wrapped_interrupt() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("Error calling __set_name__") from interrupt

    monkeypatch.setattr(cli, "main", wrapped_interrupt)
    with pytest.raises(SystemExit) as stop:
        entry.main()
    assert stop.value.code == 130
    assert capsys.readouterr().err == "interrupted: nothing was written\n"

    def plain_error() -> None:
        raise RuntimeError("a real bug")

    monkeypatch.setattr(cli, "main", plain_error)
    with pytest.raises(RuntimeError, match="a real bug"):
        entry.main()


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2, 0.4])
def test_sigint_while_starting_prints_no_traceback(
    tiny_models_dir: Path, tmp_path: Path, delay: float
) -> None:
    # long enough that the run cannot finish before the signal, even on a fast machine
    mix = write_wav(tmp_path / "duet.wav", noise(120))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "vimss_cli", "separate", str(mix), "-o", str(out), "-i", "vn"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0, stderr
    frames = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("File ")]
    if any(not frame.startswith('File "<frozen') for frame in frames):
        pytest.fail(f"a traceback through the program's own code:\n{stderr}")
    # before its first module runs, Python itself may still print one (importing runpy)
    if not frames:
        assert len(stderr.strip().splitlines()) <= 1, stderr
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_partials_of_a_killed_run_are_removed_by_the_next(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    long_mix = write_wav(tmp_path / "long.wav", noise(600))
    out = tmp_path / "out"
    process = start_long_run(long_mix, out)
    process.kill()  # kill -9: no cleanup runs
    process.communicate(timeout=60)
    folder = out / "long"
    assert len(list(folder.glob(".*.partial-*"))) == 3
    (tmp_path / "short").mkdir()
    short = write_wav(tmp_path / "short" / "long.wav", noise(1))  # same stem folder
    result = CliRunner().invoke(app, ["separate", str(short), "-o", str(out), "-i", "vn,vc,fl"])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["01_vn.wav", "02_vc.wav", "03_fl.wav"]
