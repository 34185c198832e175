"""What the players' instruments look like: image pools from Debian packages, per split.

Train and valid draw from openclipart drawings; the test split uses tuxpaint's photo
cut-outs where one exists (violin, viola, cello, double bass, trumpet, bassoon) and, for the
instruments with a single picture in these packages, a mirrored, recoloured variant of the
training drawing (recorded as such in the manifest).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np

from vimss_cli.errors import MissingDependencyError
from vimss_cli.synth.resources import OPENCLIPART_MUSIC, TUXPAINT_MUSIC, install_hint


@dataclass(frozen=True)
class ImageSpec:
    """One instrument picture: a source file and how it is varied."""

    source: Path
    package: str
    scale: float = 1.0  # relative size (viola vs violin, bass vs cello)
    mirror: bool = False
    tint: tuple[int, int, int] | None = None  # RGB colour blended in at TINT_SHARE

    @property
    def label(self) -> str:
        extra = ("-mirrored" if self.mirror else "") + ("-tinted" if self.tint else "")
        extra += f"-x{self.scale:g}" if self.scale != 1.0 else ""
        return f"{self.package}:{self.source.name}{extra}"


class _Variation(TypedDict, total=False):
    """The keyword arguments of :class:`ImageSpec` after its source and package."""

    scale: float
    mirror: bool
    tint: tuple[int, int, int] | None


def _oc(name: str, **kw: Unpack[_Variation]) -> ImageSpec:
    return ImageSpec(OPENCLIPART_MUSIC / name, "openclipart-png", **kw)


def _tux(name: str, **kw: Unpack[_Variation]) -> ImageSpec:
    return ImageSpec(TUXPAINT_MUSIC / name, "tuxpaint-stamps-default", **kw)


#: How much of a tint colour is blended into a picture.
TINT_SHARE = 0.35
_SILVER = (200, 200, 210)
_BROWN = (150, 90, 40)
_VARIANT: _Variation = {"mirror": True, "tint": (60, 110, 200)}

TRAIN_IMAGES: dict[str, tuple[ImageSpec, ...]] = {
    "vn": (_oc("violin_ganson.png"), _oc("violin_colour_ganson.png")),
    "va": (_oc("violin_ganson.png", scale=1.12), _oc("violin_colour_ganson.png", scale=1.12)),
    "vc": (_oc("cello_ganson.png"),),
    "db": (_oc("cello_ganson.png", scale=1.3, tint=_BROWN),),
    "fl": (_oc("flute_ganson.png"),),
    "ob": (_oc("oboe_ganson.png"),),
    "cl": (_oc("oboe_ganson.png", scale=1.1, tint=_SILVER),),
    "bn": (_oc("oboe_ganson.png", scale=1.5, tint=_BROWN),),
    "sax": (_oc("saxophone_jarno_vasamaa_.png"),),
    "tpt": (
        _oc("trumpet_b_flat__ganson.png"),
        _oc("trumpet_b_flat_colour_ganso.png"),
        _oc("trumpet_pocket_colour_ganso.png"),
    ),
    "hn": (_oc("french_horn_ganson.png"),),
    "tbn": (_oc("tenor_trombone_ganson.png"),),
    "tba": (_oc("french_horn_ganson.png", scale=1.5, tint=_SILVER),),
}

TEST_IMAGES: dict[str, tuple[ImageSpec, ...]] = {
    "vn": (_tux("string/violin.png"),),
    "va": (_tux("string/violin.png", scale=1.12),),
    "vc": (_tux("string/cello.png"),),
    "db": (_tux("string/cello.png", scale=1.3),),
    "fl": (_oc("flute_ganson.png", **_VARIANT),),
    "ob": (_oc("oboe_ganson.png", **_VARIANT),),
    "cl": (_oc("oboe_ganson.png", scale=1.1, mirror=True, tint=(90, 60, 160)),),
    "bn": (_tux("wind/bassoon.png"),),
    "sax": (_oc("saxophone_jarno_vasamaa_.png", **_VARIANT),),
    "tpt": (_tux("brass/trumpet.png"),),
    "hn": (_oc("french_horn_ganson.png", **_VARIANT),),
    "tbn": (_oc("tenor_trombone_ganson.png", **_VARIANT),),
    "tba": (_oc("french_horn_ganson.png", scale=1.5, mirror=True, tint=(120, 120, 140)),),
}


def image_pool(split: str) -> dict[str, tuple[ImageSpec, ...]]:
    """The pool of ``split``, after checking that its files are installed."""
    pool = TEST_IMAGES if split == "test" else TRAIN_IMAGES
    for specs in pool.values():
        for spec in specs:
            if not spec.source.is_file():
                raise MissingDependencyError(
                    f"instrument image {spec.source} is missing; install it with: "
                    f"{install_hint([spec.package])}"
                )
    return pool


@lru_cache(maxsize=64)
def load_rgba(spec: ImageSpec) -> np.ndarray:
    """The picture as RGBA uint8, cropped to its opaque part, varied as the spec says."""
    import cv2

    image = cv2.imread(str(spec.source), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4:
        raise MissingDependencyError(f"cannot read instrument image {spec.source} as RGBA PNG")
    rgba = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    ys, xs = np.nonzero(rgba[..., 3] > 16)
    rgba = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if spec.mirror:
        rgba = rgba[:, ::-1]
    rgb = rgba[..., :3].astype(np.float32)
    if spec.tint is not None:
        rgb = (1 - TINT_SHARE) * rgb + TINT_SHARE * np.array(spec.tint, dtype=np.float32)
    rgba = np.concatenate([np.clip(rgb, 0, 255).astype(np.uint8), rgba[..., 3:]], axis=2)
    return np.ascontiguousarray(rgba)
