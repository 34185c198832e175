"""The library API: load a model once, separate files or arrays with it.

Example::

    from vimss_cli.api import Separator
    from vimss_cli.conditioning import Query

    separator = Separator("default", device="auto")
    report = separator.separate_file("duet.wav", [Query("vn"), Query("vc")], "stems/")
    stems = separator.separate_array(mixture, [Query("vn"), Query("vc")])  # (2, N)

Nothing here prints: progress goes to an optional callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vimss_cli.checkpoint import DEFAULT_MODEL_ALIAS, LoadedModel, load_model
from vimss_cli.conditioning import Query
from vimss_cli.engine import DEFAULT_TILE, separate_array, separate_blocks
from vimss_cli.errors import DeviceError, InputError, OutputError
from vimss_cli.media import AudioStream
from vimss_cli.stem_writer import StemSetWriter, check_wav_format

PRECISIONS = ("fp32", "fp16", "bf16")

#: ``callback({"input": str, "done_seconds": float, "total_seconds": float | None})``
ProgressCallback = Callable[[dict[str, Any]], None]


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {spec} asked for CUDA, but no CUDA device is available here"
            )
        index = 0 if spec == "cuda" else spec.split(":", 1)[1]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {spec}: no such CUDA device ({torch.cuda.device_count()} available)"
            )
        return torch.device(f"cuda:{int(index)}")
    raise InputError(f"unknown --device {spec!r}; use auto, cpu, cuda or cuda:N")


def check_precision(precision: str, device: torch.device) -> str:
    """Validate ``precision`` for ``device``."""
    if precision not in PRECISIONS:
        raise InputError(
            f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        )
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"--precision bf16 is not supported by {torch.cuda.get_device_name(device)}"
        )
    return precision


@dataclass
class StemReport:
    player: int
    instrument: str | None
    path: Path


@dataclass
class SeparationReport:
    """What :meth:`Separator.separate_file` did."""

    input: Path
    samples: int
    sample_rate: int
    wall_seconds: float
    stems: list[StemReport] = field(default_factory=list)

    @property
    def audio_seconds(self) -> float:
        return self.samples / self.sample_rate

    def to_json(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "audio_seconds": round(self.audio_seconds, 6),
            "wall_seconds": round(self.wall_seconds, 3),
            "realtime_factor": round(self.audio_seconds / max(self.wall_seconds, 1e-9), 3),
            "samples": self.samples,
            "sample_rate": self.sample_rate,
            "stems": [
                {"player": s.player, "instrument": s.instrument, "path": str(s.path)}
                for s in self.stems
            ],
        }


def stem_paths(input_path: Path, out_dir: Path, queries: list[Query]) -> list[Path]:
    """``OUTDIR/<input stem>/<NN>_<instrument>.wav`` for each player, numbered from 01."""
    folder = Path(out_dir) / Path(input_path).stem
    return [
        folder / f"{number:02d}_{query.instrument or 'player'}.wav"
        for number, query in enumerate(queries, start=1)
    ]


def check_outputs_free(paths: list[Path], force: bool) -> None:
    """Refuse to overwrite existing stems unless ``force``."""
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise OutputError(f"outputs already exist: {shown}{more} (use --force to overwrite)")


class Separator:
    """A loaded model on a device, ready to separate.

    Args:
        model: bundled name, ``default``, a ``.safetensors`` path or ``hf:OWNER/REPO...``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``, ``fp16`` (CUDA) or ``bf16``.
        batch_size: windows per forward pass (default: 16 on CUDA, 2 on the CPU).
        tile: output samples per window.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL_ALIAS,
        device: str = "auto",
        precision: str = "fp32",
        batch_size: int | None = None,
        tile: int = DEFAULT_TILE,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = check_precision(precision, self.device)
        if batch_size is not None and batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {batch_size}")
        self.batch_size = batch_size or (16 if self.device.type == "cuda" else 2)
        if tile < 1:
            raise InputError(f"tile must be at least 1 sample, got {tile}")
        self.tile = tile
        self.loaded: LoadedModel = load_model(model)
        self.model = self.loaded.model.to(self.device).eval()

    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    def separate_array(
        self, audio: np.ndarray, queries: list[Query], split: bool = True
    ) -> np.ndarray:
        """Mono mixture ``(N,)`` at the model rate -> stems ``(K, N)``."""
        return separate_array(
            self.model,
            audio,
            queries,
            tile=self.tile if split else None,
            batch_size=self.batch_size if split else 1,
            precision=self.precision,
        )

    def separate_file(
        self,
        input_path: str | Path,
        queries: list[Query],
        out_dir: str | Path,
        *,
        wav_format: str = "wav16",
        split: bool = True,
        force: bool = False,
        progress: ProgressCallback | None = None,
    ) -> SeparationReport:
        """Separate one media file into ``OUTDIR/<input stem>/<NN>_<instrument>.wav``.

        The stems are written block by block to temporary files and published together at
        the end; on any error or interruption nothing is left behind.
        """
        if not queries:
            raise InputError("nothing to separate: no players given")
        check_wav_format(wav_format)
        input_path = Path(input_path)
        paths = stem_paths(input_path, Path(out_dir), queries)
        check_outputs_free(paths, force)
        started = time.perf_counter()
        with AudioStream(input_path, self.sample_rate) as stream:
            total_hint = stream.duration_hint

            def report(done_samples: int) -> None:
                if progress is not None:
                    progress(
                        {
                            "input": str(input_path),
                            "done_seconds": done_samples / self.sample_rate,
                            "total_seconds": total_hint,
                        }
                    )

            with StemSetWriter(paths, self.sample_rate, wav_format) as writer:
                if split:
                    samples = separate_blocks(
                        self.model,
                        stream,
                        queries,
                        writer.write,
                        tile=self.tile,
                        batch_size=self.batch_size,
                        precision=self.precision,
                        progress=report,
                    )
                else:
                    audio = np.concatenate(list(stream))
                    writer.write(self.separate_array(audio, queries, split=False))
                    samples = audio.size
                    report(samples)
        return SeparationReport(
            input=input_path,
            samples=samples,
            sample_rate=self.sample_rate,
            wall_seconds=time.perf_counter() - started,
            stems=[
                StemReport(player=i, instrument=q.instrument, path=p)
                for i, (q, p) in enumerate(zip(queries, paths, strict=True), start=1)
            ],
        )
