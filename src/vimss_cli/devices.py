"""Device and precision, decided at call time, shared by inference and training.

* :func:`resolve_device`: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or
  ``cuda:N``, checked against what this machine has.
* :func:`check_precision`: ``fp32``, ``fp16`` (CUDA only) or ``bf16`` (on CUDA, where the
  GPU supports it).
* :func:`autocast`: the autocast context of a precision (none for ``fp32``), for training.
* :func:`inference_precision`: the same for inference, where ``fp32`` on CUDA also turns
  TensorFloat-32 off, so that chunked equals whole there too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

from vimss_cli.errors import DeviceError, InputError

PRECISIONS = ("fp32", "fp16", "bf16")

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        index = "0" if spec == "cuda" else spec.split(":", 1)[1]
        if not (index.isascii() and index.isdecimal()):
            raise InputError(
                f"--device {spec!r} is not a valid device; use auto, cpu, cuda or cuda:N "
                "(N a number, such as cuda:0)"
            )
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {spec} asked for CUDA, but no CUDA device is available here"
            )
        if int(index) >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {spec}: no such CUDA device ({torch.cuda.device_count()} available)"
            )
        return torch.device(f"cuda:{int(index)}")
    raise InputError(f"unknown --device {spec!r}; use auto, cpu, cuda or cuda:N")


def check_precision(precision: str, device: torch.device, setting: str = "--precision") -> str:
    """Validate ``precision`` for ``device``; ``setting`` names it in the errors (the option,
    or a config key such as ``optim.precision =``).

    Raises :class:`InputError` for an unknown precision and :class:`DeviceError` for one
    this device cannot run: fp16 needs CUDA; bf16 on CUDA needs a GPU that supports it.
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown {setting} {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError(f"{setting} fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"{setting} bf16 is not supported by {torch.cuda.get_device_name(device)}"
        )
    return precision


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for ``fp32``); the
    precision is expected checked (:func:`check_precision`)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


#: TF32 is a process-wide setting: the first of overlapping fp32 passes (threads) saves it and
#: turns it off, the last one to end puts it back
_IEEE_LOCK = threading.Lock()
_ieee_passes = 0
_saved_tf32: tuple[bool, bool] = (True, False)


@contextmanager
def _ieee_fp32() -> Iterator[None]:
    """Within: CUDA convolutions and matrix products in IEEE float32, TensorFloat-32 off (the
    previous settings come back after the last overlapping pass)."""
    global _ieee_passes, _saved_tf32
    with _IEEE_LOCK:
        if _ieee_passes == 0:
            _saved_tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        _ieee_passes += 1
    try:
        yield
    finally:
        with _IEEE_LOCK:
            _ieee_passes -= 1
            if _ieee_passes == 0:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = _saved_tf32


def inference_precision(device: torch.device, precision: str) -> AbstractContextManager:
    """The arithmetic context of separating in ``precision`` on ``device``: autocast for
    ``fp16``/``bf16``; for ``fp32`` on CUDA, TensorFloat-32 off.

    PyTorch lets cuDNN run fp32 convolutions in TF32 (10-bit mantissa) by default, and cuDNN
    picks different algorithms for one pass over the whole input and for a window, so the
    engine's chunked output would no longer equal the whole pass: on the H200 (2026-12-04) the
    bundled default's stems of a 600 s quartet differed by up to 0.034 with TF32 and 3e-8
    without, at the same speed (95-111x realtime either way: the engine does not wait on the
    GPU's arithmetic there). A no-op on the CPU.
    """
    if precision != "fp32":
        return autocast(device, precision)
    if device.type == "cuda":
        return _ieee_fp32()
    return nullcontext()
