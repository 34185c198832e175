"""The installed command as a real process: ``python -m vimss_cli`` and a real Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import noise, write_wav


def test_python_dash_m_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vimss_cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("vimss ")


def test_sigint_mid_run_leaves_no_partial_stems(tiny_models_dir: Path, tmp_path: Path) -> None:
    long_mix = write_wav(tmp_path / "long.wav", noise(600))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vimss_cli",
            "separate",
            str(long_mix),
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
    )
    deadline = time.monotonic() + 60
    while not any(out.rglob(".*.partial-*")):  # wait until stems are being written
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
