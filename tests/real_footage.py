"""Test videos made from real photographs of musicians, with the truth beside them.

The photographs are those Debian's ``gcompris-qt-data`` ships in ``explore_world_music.rcc``
(public domain, CC0 and CC-BY 2.0 photos inside a GPL-3+ package; see
``/usr/share/doc/gcompris-qt-data/copyright``). Nothing derived from them is committed: the
videos are composed here, on demand, into a cache folder.

From them: a real stage photo of four Irish folk musicians (a mandola, a guitar, uilleann pipes
and a fiddle), filmed with a drifting, zooming camera, dark, low-contrast and at 1080p; the four
players cut out and set side by side on a plain and on a busy backdrop, as abutting URMP-style
panels (with two fiddles, and as a quintet), overlapping, and in a portrait frame; a mariachi
violinist and trumpeter partly hidden by a guitar; a solo didgeridoo player; frames with no
musicians (an opera stage, drums on grass, a lute on a plain ground); and players of URMP's
own string instruments cut from a photo of a chamber orchestra on stage (three cellists, a
double bassist, two violinists; small in the photo, so their cut-outs are blown up three to
five times, soft as a zoomed phone video is), side by side and as URMP panels.

The truth of each video is its player count and, left to right, each player's instrument: a
URMP code, or ``"other"`` for an instrument outside URMP (the right answer is then unknown).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from vimss_cli.ffmpeg_io import ffmpeg_executable

RCC = Path("/usr/share/gcompris-qt/rcc/explore_world_music.rcc")
PHOTO_FOLDER = "/gcompris/src/activities/explore_world_music/resource/music/"
OTHER = "other"

#: The four players of the Irish stage photo (1024 x 416): crop ``(x0, y0, x1, y1)`` and
#: instrument, left to right.
IRISH = [
    ((15, 90, 215, 300), OTHER),  # mandola
    ((335, 100, 515, 320), OTHER),  # guitar
    ((590, 95, 800, 416), OTHER),  # uilleann pipes
    ((820, 115, 1015, 330), "vn"),  # fiddle
]

#: Players of the chamber orchestra photo (1024 x 613), by name: crop ``(x0, y0, x1, y1)``
#: and instrument. Seated cellists, a standing double bassist, seated violinists; each crop
#: holds a little of its neighbours, as a real cut-out would.
ORCHESTRA = {
    "cello_front": ((518, 248, 578, 404), "vc"),  # behind the conductor's shoulder
    "cello_back": ((556, 204, 638, 344), "vc"),
    "cello_bald": ((600, 266, 686, 424), "vc"),
    "bass": ((0, 175, 96, 342), "db"),  # standing
    "violin_woman": ((105, 262, 182, 372), "vn"),
    "violin_man": ((45, 345, 175, 505), "vn"),
}


@dataclass(frozen=True)
class Truth:
    """What a video shows: ``instruments`` left to right (``[]``: no musicians)."""

    name: str
    instruments: list[str]
    kind: str

    @property
    def count(self) -> int:
        return len(self.instruments)


def load_photos() -> dict[str, np.ndarray]:
    """The package's photos by name (``"ireland"``, ...) as ``(H, W, 3)`` uint8 RGB."""
    from vimss_cli.synth.real_solos import read_rcc

    photos = {}
    for name, data in read_rcc(RCC):
        if name.startswith(PHOTO_FOLDER) and name.endswith(".webp"):
            picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            photos[Path(name).stem] = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
    return photos


def _fit(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale and centre-crop ``picture`` to fill ``width`` x ``height``."""
    scale = max(width / picture.shape[1], height / picture.shape[0])
    resized = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    y = (resized.shape[0] - height) // 2
    x = (resized.shape[1] - width) // 2
    return resized[y : y + height, x : x + width]


def _letterbox(picture: np.ndarray, width: int, height: int, colour: int = 0) -> np.ndarray:
    scale = min(width / picture.shape[1], height / picture.shape[0])
    resized = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), colour, np.uint8)
    y, x = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def _players(photos: dict[str, np.ndarray], order: list[int]) -> list[np.ndarray]:
    crops = []
    for index in order:
        (x0, y0, x1, y1), _ = IRISH[abs(index)]
        crop = photos["ireland"][y0:y1, x0:x1]
        crops.append(crop[:, ::-1] if index < 0 else crop)
    return crops


def _orchestra(photos: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    crops = []
    for name in names:
        (x0, y0, x1, y1), _ = ORCHESTRA[name]
        crops.append(photos["orchestra"][y0:y1, x0:x1])
    return crops


def _orchestra_truth(names: list[str]) -> list[str]:
    return [ORCHESTRA[name][1] for name in names]


def _side_by_side(
    crops: list[np.ndarray], width: int, height: int, backdrop: np.ndarray, overlap: float = 0.0
) -> np.ndarray:
    """The crops at a common height over ``backdrop``: evenly spaced, or each one covering
    ``overlap`` of the width of the one before it."""
    canvas = backdrop.copy()
    scale = int(height * 0.7)
    scaled = [cv2.resize(c, None, fx=scale / c.shape[0], fy=scale / c.shape[0]) for c in crops]

    def span(pictures: list[np.ndarray]) -> float:
        widths = [p.shape[1] for p in pictures]
        return sum(widths[:-1]) * (1 - overlap) + widths[-1]

    if span(scaled) > 0.95 * width:
        factor = 0.95 * width / span(scaled)
        scaled = [cv2.resize(s, None, fx=factor, fy=factor) for s in scaled]
    gap = 0.0 if overlap else (width - span(scaled)) / (len(scaled) + 1)
    x = (width - span(scaled)) / 2 if overlap else gap
    for crop in scaled:
        y = height - crop.shape[0] - height // 10
        left = int(x)
        canvas[y : y + crop.shape[0], left : left + crop.shape[1]] = crop
        x += crop.shape[1] * (1 - overlap) + gap
    return canvas


def _panels(crops: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """Abutting equal panels, URMP style: each crop fills its panel."""
    panel = width // len(crops)
    tiles = [_fit(c, panel, height) for c in crops]
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:, : panel * len(crops)] = np.hstack(tiles)
    return canvas


def compose(photos: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, bool, Truth]]:
    """Every test picture: name -> (first frame RGB, whether the camera drifts, truth)."""
    irish = [instrument for _, instrument in IRISH]
    grey = np.full((720, 1280, 3), (118, 120, 124), np.uint8)
    busy = _fit(photos["japan"], 1280, 720)
    stage = _fit(photos["ireland"], 1280, 520)
    stage = _letterbox(stage, 1280, 720)
    cellos = ["cello_front", "cello_back", "cello_bald"]
    strings = ["bass", "violin_woman", "cello_bald", "violin_man"]
    panels = ["bass", "cello_back", "violin_woman"]
    pictures = {
        "stage": (stage, True, Truth("stage", irish, "stage photo, camera drift")),
        "stage_dark": (
            (stage.astype(np.float32) * 0.35).astype(np.uint8),
            True,
            Truth("stage_dark", irish, "dark"),
        ),
        "stage_low_contrast": (
            (stage.astype(np.float32) * 0.4 + 90).astype(np.uint8),
            True,
            Truth("stage_low_contrast", irish, "low contrast"),
        ),
        "stage_1080p": (
            cv2.resize(stage, (1920, 1080), interpolation=cv2.INTER_CUBIC),
            True,
            Truth("stage_1080p", irish, "1080p"),
        ),
        "plain_quartet": (
            _side_by_side(_players(photos, [0, 1, 2, 3]), 1280, 720, grey),
            False,
            Truth("plain_quartet", irish, "side by side, plain backdrop"),
        ),
        "plain_duet": (
            _side_by_side(_players(photos, [1, 3]), 1280, 720, grey),
            False,
            Truth("plain_duet", [OTHER, "vn"], "side by side, plain backdrop"),
        ),
        "busy_trio": (
            _side_by_side(_players(photos, [0, 2, 3]), 1280, 720, busy),
            False,
            Truth("busy_trio", [OTHER, OTHER, "vn"], "side by side, busy backdrop"),
        ),
        "panels_quartet": (
            _panels(_players(photos, [0, 1, 2, 3]), 1280, 720),
            False,
            Truth("panels_quartet", irish, "abutting URMP panels"),
        ),
        "panels_two_fiddles": (
            _panels(_players(photos, [3, -3, 1]), 1280, 720),
            False,
            Truth("panels_two_fiddles", ["vn", "vn", OTHER], "abutting URMP panels"),
        ),
        "panels_quintet": (
            _panels(_players(photos, [0, 1, 2, 3, -1]), 1280, 720),
            False,
            Truth("panels_quintet", [*irish, OTHER], "abutting URMP panels"),
        ),
        "overlap_trio": (
            _side_by_side(_players(photos, [1, 2, 3]), 1280, 720, grey, overlap=0.25),
            False,
            Truth("overlap_trio", [OTHER, OTHER, "vn"], "overlapping players"),
        ),
        "portrait_duet": (
            _side_by_side(
                _players(photos, [2, 3]), 720, 1280, np.full((1280, 720, 3), 40, np.uint8)
            ),
            False,
            Truth("portrait_duet", [OTHER, "vn"], "portrait"),
        ),
        "mariachi_duet": (
            _letterbox(photos["mexico"][60:520, 60:520], 1280, 720),
            False,
            Truth("mariachi_duet", ["vn", "tpt"], "overlapping, hidden by a guitar"),
        ),
        "orchestra_cellos": (
            _side_by_side(_orchestra(photos, cellos), 1280, 720, grey),
            False,
            Truth("orchestra_cellos", _orchestra_truth(cellos), "orchestra cut-outs, plain"),
        ),
        "orchestra_strings": (
            _side_by_side(_orchestra(photos, strings), 1280, 720, grey),
            False,
            Truth("orchestra_strings", _orchestra_truth(strings), "orchestra cut-outs, plain"),
        ),
        "orchestra_panels": (
            _panels(_orchestra(photos, panels), 1280, 720),
            False,
            Truth("orchestra_panels", _orchestra_truth(panels), "orchestra cut-outs, panels"),
        ),
        "didgeridoo_solo": (
            _letterbox(photos["australia"], 1280, 720),
            False,
            Truth("didgeridoo_solo", [OTHER], "solo"),
        ),
        "opera_no_musicians": (
            _letterbox(photos["italy"], 1280, 720),
            False,
            Truth("opera_no_musicians", [], "people, no musicians"),
        ),
        "drums_no_people": (
            _letterbox(photos["africa"], 1280, 720),
            False,
            Truth("drums_no_people", [], "instruments, no people"),
        ),
        "lute_no_people": (
            _letterbox(photos["middleeast"], 1280, 720),
            False,
            Truth("lute_no_people", [], "instrument, no people"),
        ),
    }
    return pictures


def _drift(picture: np.ndarray, t: float) -> np.ndarray:
    """The camera drifts: a slow zoom (to 1.08) and pan (3 % of the width) at time ``t`` in 0..1."""
    height, width = picture.shape[:2]
    zoom = 1 + 0.08 * t
    dx, dy = 0.03 * width * np.sin(np.pi * t), 0.01 * height * t
    matrix = np.array(
        [[zoom, 0, (1 - zoom) * width / 2 + dx], [0, zoom, (1 - zoom) * height / 2 + dy]]
    )
    return cv2.warpAffine(picture, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def write_video(
    path: Path,
    picture: np.ndarray,
    drift: bool,
    seconds: float = 2.0,
    fps: int = 5,
    overlay: Callable[[np.ndarray, float], np.ndarray] | None = None,
) -> None:  # a 2 s clip at 5 frames/s: the analysis samples 6 frames whatever the length
    """An H.264 mp4 of ``picture`` (drifting when asked, then drawn on by ``overlay(frame,
    t)`` with ``t`` in 0..1 when given) with a quiet tone as its sound."""
    height, width = picture.shape[:2]
    frames = int(seconds * fps)
    command = [
        ffmpeg_executable(), "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
        "-i", "-",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=22050:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", str(path),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    assert process.stdin is not None
    for index in range(frames):
        t = index / max(1, frames - 1)
        frame = _drift(picture, t) if drift else picture
        if overlay is not None:
            frame = overlay(frame.copy(), t)
        process.stdin.write(np.ascontiguousarray(frame).tobytes())
    process.stdin.close()
    if process.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}")


def build(folder: Path, names: list[str] | None = None) -> list[tuple[Path, Truth]]:
    """Write the test videos (those not already there) and ``truth.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pictures = compose(load_photos())
    chosen = names or list(pictures)
    made = []
    for name in chosen:
        picture, drift, truth = pictures[name]
        path = folder / f"{name}.mp4"
        if not path.is_file():
            partial = path.with_suffix(".partial.mp4")
            write_video(partial, picture, drift)
            partial.replace(path)
        made.append((path, truth))
    (folder / "truth.json").write_text(
        json.dumps({t.name: asdict(t) for _, t in made}, indent=1) + "\n"
    )
    return made
