"""One pass over a video: players, their boxes, instrument guesses, appearance and motion.

Frames are decoded once, at a low rate and size (:mod:`.frames`). Every frame feeds the motion
grid (:mod:`.motion`); a handful spread over the video are kept for finding the players
(:mod:`.players`) and for their appearance (:mod:`.appearance`). Memory holds those few frames
and a small grid per frame, whatever the length of the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vimss_cli.errors import InputError, MediaError
from vimss_cli.vision.appearance import Appearance, describe_players
from vimss_cli.vision.frames import (
    DEFAULT_MAX_SIDE,
    DEFAULT_RATE,
    FrameStream,
    VideoInfo,
    probe_video,
    stream_duration,
)
from vimss_cli.vision.instrument_guess import (
    MIN_INSTRUMENT_MASS,
    InstrumentGuess,
    guess_instrument,
    instrument_mass,
)
from vimss_cli.vision.motion import (
    MotionAccumulator,
    box_motion,
    column_profile,
    compress,
    multiscale,
    scene_cuts,
)
from vimss_cli.vision.panels import fit_to_panels, panel_count
from vimss_cli.vision.people import contained_share
from vimss_cli.vision.players import (
    MIN_MOTION,
    MOVING_SHARE,
    Box,
    column_runs,
    find_players,
    parse_boxes,
)
from vimss_cli.vision.tracking import MIN_FACE_PIXELS, TrackedPerson, track_people

#: Frames kept for finding the players; every other one is also used for their appearance.
DEFAULT_SAMPLES = 6
#: Picture and sound may differ in length by this many seconds (or 5 %, if more) at most.
LENGTH_TOLERANCE = 1.0
#: A run of moving columns less than this share under the players' boxes is unclaimed motion
#: (:func:`unclaimed_motion`): perhaps a player the person detector missed.
CLAIMED_SHARE = 0.5


@dataclass(frozen=True)
class Player:
    """One player, numbered from 1 left to right.

    Attributes:
        box: ``(x, y, w, h)`` in source pixels.
        guess: the instrument guessed from the pictures.
        appearance: ``(1280,)`` float32 L2-normalised EfficientNet-Lite0 embedding.
        keypoints: ``(33, 3)`` BlazePose ``(x, y, visibility)`` in source pixels (see
            :data:`.people.KEYPOINTS`), when the player was found as a person.
    """

    number: int
    box: Box
    guess: InstrumentGuess
    appearance: np.ndarray
    keypoints: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """``vimss inspect --json``'s row: ``keypoints`` is ``None`` when the player was not
        found as a person."""
        keypoints = self.keypoints
        return {
            "player": self.number,
            "box": list(self.box),
            "instrument": self.guess.instrument,
            # an instrument URMP does not have (the table's "other"), and the picture's class
            "other": self.guess.other,
            "imagenet_class": self.guess.imagenet_class,
            "confidence": round(self.guess.confidence, 4),
            "keypoints": None
            if keypoints is None
            else [[round(float(v), 1) for v in k] for k in keypoints],
        }


@dataclass
class VideoAnalysis:
    """What the front end learnt from one video.

    Attributes:
        rate: frames per second of the motion grids (on the audio clock).
        grids: ``(T, rows, cols)`` motion energy, frame ``t`` at audio time ``t / rate``.
        snapshot: ``(H, W, 3)`` uint8 RGB decoded frame from the middle of the video.
        source: what decided the number of players: ``"people"`` (the person detector),
            ``"boxes"``, ``"panels"`` or ``"people and panels"`` (URMP-style equal panels,
            one player each, :func:`.panels.fit_to_panels`), or the picture's layout (see
            :class:`.players.Layout`).
        warnings: what the user should know about how sure the finding is.
    """

    info: VideoInfo
    rate: float
    players: list[Player]
    grids: np.ndarray
    snapshot: np.ndarray
    source: str
    warnings: list[str] = field(default_factory=list)

    def motion(self, player: Player, channels: int, features: str = "bands") -> np.ndarray:
        """``(channels, T)`` compressed motion of ``player`` at :attr:`rate` on the audio clock.

        ``features``: ``"bands"`` (horizontal bands of the box) or ``"multiscale"`` (the whole
        box averaged over :data:`~vimss_cli.vision.motion.MULTISCALE_SECONDS` windows).
        """
        x, y, w, h = player.box
        width, height = self.info.width, self.info.height
        fraction = (x / width, y / height, w / width, h / height)
        if features == "multiscale":
            whole = compress(box_motion(self.grids, fraction, 1))[0]
            return multiscale(whole, self.rate, channels)
        if features != "bands":
            raise ValueError(f"unknown motion features {features!r}")
        return compress(box_motion(self.grids, fraction, channels))

    def to_json(self) -> dict[str, Any]:
        """The players, what decided their number, and the warnings (``inspect --json``)."""
        players = [p.to_json() for p in self.players]
        return {"players": players, "source": self.source, "warnings": self.warnings}


def _sample_indices(duration: float | None, rate: float, samples: int) -> set[int]:
    """Frame indices spread over the video (the first seconds when the length is unknown)."""
    if duration is None or duration <= 0:
        return {round(i * rate) for i in range(samples)}
    frames = duration * rate
    return {int((i + 0.5) * frames / samples) for i in range(samples)}


#: how the length-mismatch message points at a label-only model
LABEL_MODEL_HINT = "`vimss models list` says which"


def lengths_disagree(first: float, second: float) -> bool:
    """Whether two durations (seconds) of one recording's picture and sound differ by more
    than :data:`LENGTH_TOLERANCE` or 5 % of the longer."""
    return abs(first - second) > max(LENGTH_TOLERANCE, 0.05 * max(first, second))


#: A picture stream shorter than this beside a longer sound is a still (one picture, as
#: a recording published with a photo): its players are found, with no motion to follow.
STILL_SECONDS = 0.5


def check_lengths(info: VideoInfo) -> list[str]:
    """Refuse a video whose picture is much longer or shorter than its sound, unless the
    picture is a still (:data:`STILL_SECONDS`): then a warning, returned."""
    if not info.has_audio:
        return []
    audio = stream_duration(info.path, f"a:{info.audio_index}")
    video = stream_duration(info.path, "v:0")
    if audio is None or video is None:
        return []
    if video < STILL_SECONDS < audio:
        return [
            f"{info.path.name}: the picture is a still ({video:.2f} s beside {audio:.1f} s of "
            "sound): the players are found in it, but nobody can be seen playing"
        ]
    if lengths_disagree(audio, video):
        raise MediaError(
            f"{info.path}: the picture lasts {video:.1f} s but the sound {audio:.1f} s, so the "
            "players cannot be followed in time; to separate by sound alone, name the players "
            f"with --instruments (the model must take labels: {LABEL_MODEL_HINT})"
        )
    return []


def _to_source(box: Box, scale_x: float, scale_y: float, info: VideoInfo) -> Box:
    x, y, w, h = box
    x0, y0 = round(x / scale_x), round(y / scale_y)
    x1 = min(info.width, round((x + w) / scale_x))
    y1 = min(info.height, round((y + h) / scale_y))
    return (x0, y0, x1 - x0, y1 - y0)


def _to_decoded(box: Box, scale_x: float, scale_y: float, size: tuple[int, int]) -> Box:
    x, y, w, h = box
    x0, y0 = int(x * scale_x), int(y * scale_y)
    x1 = min(size[0], max(x0 + 1, round((x + w) * scale_x)))
    y1 = min(size[1], max(y0 + 1, round((y + h) * scale_y)))
    return (x0, y0, x1 - x0, y1 - y0)


def analyse_video(
    path: str | Path,
    *,
    players: int | None = None,
    boxes: str | None = None,
    rate: float = DEFAULT_RATE,
    max_side: int = DEFAULT_MAX_SIDE,
    samples: int = DEFAULT_SAMPLES,
    check_sound: bool = True,
) -> VideoAnalysis:
    """Find the players in a video and describe each one.

    Args:
        path: any file ffmpeg reads with a picture stream.
        players: the number of players, when known (a hint for the layout).
        boxes: ``"x,y,w,h;..."`` in source pixels: use these boxes instead of finding them.
        rate: frames per second decoded (the motion rate).
        max_side: longest side of decoded frames in pixels.
        samples: frames kept for the layout and the appearance.
        check_sound: refuse a picture much longer or shorter than the sound
            (:func:`check_lengths`); ``vimss inspect``, which does not use the sound, does not.

    Raises:
        InputError: no picture stream, bad ``boxes``, or no player found.
        MediaError: undecodable pictures, or picture and sound of very different lengths.
    """
    info = probe_video(Path(path))
    user_boxes = parse_boxes(boxes, info.width, info.height) if boxes is not None else None
    if user_boxes is not None and players is not None and players != len(user_boxes):
        count = len(user_boxes)
        raise InputError(f"--players {players} but --boxes gives {count} box{'es' * (count != 1)}")
    warnings: list[str] = check_lengths(info) if check_sound else []
    wanted = _sample_indices(info.duration, rate, samples)
    kept: list[np.ndarray] = []
    last: np.ndarray | None = None
    motion = MotionAccumulator()
    with FrameStream(info, rate, max_side) as stream:
        size = stream.size
        for index, frame in stream:
            motion.push(frame)
            if index in wanted:
                kept.append(frame)
            last = frame
    if len(kept) < samples and last is not None and (not kept or kept[-1] is not last):
        kept.append(last)
    grids = motion.grids()
    scale_x, scale_y = size[0] / info.width, size[1] / info.height
    warnings.extend(picture_warnings(kept, info.width, info.height, info.path.name))
    cuts = scene_cuts(grids, rate)
    if cuts:
        more = f" and {len(cuts) - 1} more time(s)" if len(cuts) > 1 else ""
        warnings.append(
            f"{info.path.name} cuts to another shot at {cuts[0]:.1f} s{more}: the players' "
            "boxes are found once for the whole video and may not hold across shots; check "
            "with `vimss inspect`, or separate each shot on its own"
        )
    appearance = None
    if user_boxes is not None:
        decoded = [_to_decoded(b, scale_x, scale_y, size) for b in user_boxes]
        tracked: list[TrackedPerson | None] = [None] * len(decoded)
        source = "boxes"
        warnings.extend(overlap_warnings(user_boxes, info.path.name))
    else:
        people, appearance = _musicians(kept, size, info.width, players, warnings, info.path.name)
        too_few = players is not None and 0 < len(people) < players
        if too_few:
            warnings.append(
                f"--players {players} but only {len(people)} "
                f"player{'s were' if len(people) != 1 else ' was'} seen; the picture "
                f"was cut into {players} strips instead (check with `vimss inspect`, or pass "
                "--boxes)"
            )
            people, appearance = [], None
        decoded, source = [t.box(*size) for t in people], "people"
        tracked = list(people)
        panels = panel_count(kept) if players is None else None
        if panels is not None:  # URMP's layout: one player per panel
            decoded, tracked, fitted = _fit_panels(people, appearance, panels, size, warnings, info)
            if fitted:
                appearance, source = None, "panels" if not people else "people and panels"
        if not decoded and (players is not None or float(grids.mean()) > MIN_MOTION):
            # no people (or fewer than --players): players drawn or filmed so that no face
            # shows; the layout of a moving picture is the only evidence left (a still one
            # has none)
            layout = find_players(kept, column_profile(grids, size[0]), players)
            decoded, source = layout.boxes, layout.source
            tracked = [None] * len(decoded)
            if decoded and not too_few:
                how = {"players": f"into --players {players} strips", "layout": "into equal panels"}
                warnings.append(
                    f"no people seen in {info.path.name}: the {len(decoded)} player(s) were "
                    f"cut from the picture's layout {how.get(source, f'({source})')}; "
                    "check them with `vimss inspect`"
                )
        if not decoded:
            raise InputError(
                f"no players found in {info.path}: no people and nothing moving; pass "
                "--players N or --boxes 'x,y,w,h;...'"
            )
        if source == "people" and players is None and not cuts:  # a cut moves everything
            unclaimed = unclaimed_motion(grids, decoded, size[0])
            if unclaimed:
                where = ", ".join(f"{round(x / scale_x)}" for x in unclaimed)
                warnings.append(
                    f"{info.path.name}: something moves where no player was found (around "
                    f"x = {where} px); if a player was missed, pass --players N or --boxes "
                    "'x,y,w,h;...' (check with `vimss inspect`)"
                )
        detected = [person is not None for person in tracked]
        warnings.extend(unlikely_box_warnings(decoded, detected, size, info.path.name, source))
        one_wide_box = len(decoded) == 1 and decoded[0][2] > 0.8 * size[0]
        if panels is None and one_wide_box and source != "people":
            warnings.append(
                f"{info.path.name}: one player box spans the whole width of the frame; if more "
                "than one person plays, pass --players N or --boxes 'x,y,w,h;...'"
            )
    if appearance is None:
        appearance = describe_players(kept[::2], decoded)
    found = [
        Player(
            number=j + 1,
            box=user_boxes[j] if user_boxes is not None else _to_source(b, scale_x, scale_y, info),
            guess=guess_instrument(appearance.probabilities[j]),
            appearance=appearance.embeddings[j],
            keypoints=None if person is None else _keypoints_to_source(person, scale_x, scale_y),
        )
        for j, (b, person) in enumerate(zip(decoded, tracked, strict=True))
    ]
    return VideoAnalysis(info, rate, found, grids, kept[len(kept) // 2], source, warnings)


#: A player's box shorter than this share of the picture is no player: the real test videos'
#: players are at least 0.26 of it; a speck of background found by the layout was 0.04.
MIN_PLAYER_HEIGHT = 0.1
#: A person's box wider than this times its height is more likely an instrument taken for a
#: person: on the real test videos the widest is 1.42; a cartoon violin was 2.35 and 2.7.
MAX_PERSON_ASPECT = 2.0


def unlikely_box_warnings(
    boxes: list[Box], detected: list[bool], size: tuple[int, int], name: str, source: str = ""
) -> list[str]:
    """A warning for each found box (``(x, y, w, h)`` in a ``size`` picture) that a person
    detector found (``detected``) but is too wide to be a person, or that the picture's
    layout gave but is too small to be a player (a person far away in a wide shot is small
    and still a player). ``source`` ``"players"``: the user gave ``--players`` already."""
    warnings = []
    for number, ((_, _, w, h), person) in enumerate(zip(boxes, detected, strict=True), start=1):
        if person and w > MAX_PERSON_ASPECT * h:
            why = "much wider than tall: perhaps an instrument taken for a person"
        elif not person and h < MIN_PLAYER_HEIGHT * size[1]:
            why = "too small to be a player"
        else:
            continue
        advice = "--boxes 'x,y,w,h;...'"
        if source != "players":
            advice = f"--players N or {advice}"
        warnings.append(
            f"{name}: player {number}'s box is {why}; check with `vimss inspect`, and if the "
            f"players are wrong, pass {advice}"
        )
    return warnings


#: A picture whose pixels spread less than this (grey levels, standard deviation) is blank.
BLANK_SPREAD = 4.0
#: Pictures smaller than this (pixels, shorter side) are too small to see who plays in.
MIN_PICTURE_SIDE = 112


def picture_warnings(frames: list[np.ndarray], width: int, height: int, name: str) -> list[str]:
    """Warnings for a picture nobody can be seen in: blank (every sampled frame one flat
    colour, as a black video is) or smaller than :data:`MIN_PICTURE_SIDE` on a side. Boxes
    cut from it (``--players``) and the instruments guessed in them are guesses."""
    found = []
    if frames and max(float(frame.std()) for frame in frames) < BLANK_SPREAD:
        found.append(
            f"{name}: the picture is blank (one flat colour): nobody can be seen in it, so "
            "the players' boxes and instruments are guesses; name them with --instruments"
        )
    if min(width, height) < MIN_PICTURE_SIDE:
        found.append(
            f"{name}: the picture is only {width}x{height} pixels, too small to see who "
            "plays; the players' boxes and instruments are guesses; name them with "
            "--instruments"
        )
    return found


#: Two --boxes sharing more than this share of the smaller one's area are told.
MAX_BOX_OVERLAP = 0.5


def overlap_warnings(boxes: list[Box], name: str) -> list[str]:
    """A warning for each pair of ``boxes`` ``(x, y, w, h)`` that mostly overlap: their
    players' appearance and motion would be measured on the same pixels."""
    corners = [(x, y, x + w, y + h) for x, y, w, h in boxes]
    found = []
    for first in range(len(boxes)):
        for second in range(first + 1, len(boxes)):
            shared = contained_share(corners[first], corners[second])
            if shared > MAX_BOX_OVERLAP:
                found.append(
                    f"{name}: boxes {first + 1} and {second + 1} share {shared:.0%} of the "
                    "smaller one: their players' pictures and motion will mix"
                )
    return found


def unclaimed_motion(grids: np.ndarray, boxes: list[Box], width: int) -> list[int]:
    """Centres (decoded pixels) of the runs of moving columns that no player's box covers.

    ``grids``: the motion grids ``(T, rows, cols)``; ``boxes``: the players in a frame
    ``width`` pixels wide. A run is columns whose mean motion reaches :data:`MOVING_SHARE` of
    the strongest (as the fallback layout reads them); it is unclaimed when less than
    :data:`CLAIMED_SHARE` of it lies under the boxes. Camera drift moves every column, and the
    players then cover most of that one wide run; a player the detector missed moves alone.
    A still picture has no runs.
    """
    profile = column_profile(grids, width)
    if profile.max() <= MIN_MOTION:
        return []
    covered = np.zeros(width, bool)
    for x, _, w, _ in boxes:
        covered[x : x + w] = True
    return [
        (start + stop) // 2
        for start, stop in column_runs(profile / profile.max() >= MOVING_SHARE)
        if covered[start:stop].mean() < CLAIMED_SHARE
    ]


def _keypoints_to_source(
    person: TrackedPerson, scale_x: float, scale_y: float
) -> np.ndarray | None:
    keypoints = person.keypoints()
    if keypoints is None:
        return None
    return keypoints / np.array([scale_x, scale_y, 1.0], np.float32)


def _fit_panels(
    people: list[TrackedPerson],
    appearance: Appearance | None,
    panels: int,
    size: tuple[int, int],
    warnings: list[str],
    info: VideoInfo,
) -> tuple[list[tuple[int, int, int, int]], list[TrackedPerson | None], bool]:
    """One player per panel of a picture made of ``panels`` equal panels (URMP's layout):
    ``(boxes, person per box or None, whether the panels changed the people's layout)``.

    Where each panel holds one of ``people`` nothing changes. Otherwise (a player blown up to
    fill their panel is easily missed by the person detector, and a panel shows a neighbour's
    elbow) each panel keeps the person who most clearly holds an instrument, within its
    bounds, and a panel nobody was seen in is taken whole; both are warned of.
    """
    strength = [] if appearance is None else list(instrument_mass(appearance.probabilities))
    boxes = [person.box(*size) for person in people]
    fit = fit_to_panels([person.centre_x() for person in people], boxes, strength, panels, size)
    if not fit.changed:
        return boxes, list(people), False
    layout = f"{info.path.name} looks like {panels} equal panels side by side (URMP's layout)"
    if not people:
        warnings.append(
            f"no people seen in {info.path.name}, which looks like {panels} equal panels side "
            "by side (URMP's layout): each panel is taken whole as its player's box (check "
            "with `vimss inspect`; --players N or --boxes 'x,y,w,h;...' overrule the panels)"
        )
    elif fit.empty:
        where = ", ".join(str(panel + 1) for panel in fit.empty)
        warnings.append(
            f"{layout}; nobody was seen in panel {where} of them, so each such panel is taken "
            "whole as its player's box (check with `vimss inspect`; --players N or --boxes "
            "'x,y,w,h;...' overrule the panels)"
        )
    for panel, seen in fit.crowded:
        warnings.append(
            f"{layout}; {seen} people were seen in panel {panel + 1}: the one who most clearly "
            "holds an instrument is taken as its player (if more than one plays there, pass "
            "--players N or --boxes 'x,y,w,h;...')"
        )
    tracked = [None if j is None else people[j] for j in fit.people]
    return fit.boxes, tracked, True


def _musicians(
    frames: list[np.ndarray],
    size: tuple[int, int],
    width: int,
    players: int | None,
    warnings: list[str],
    name: str,
) -> tuple[list[TrackedPerson], Appearance | None]:
    """The people who play, left to right, and their appearance; ``([], None)`` if none.

    ``size``: the decoded frames' ``(width, height)``; ``width``: the video's own width.

    People whose crops show no instrument (:func:`.instrument_guess.instrument_mass` below
    :data:`.instrument_guess.MIN_INSTRUMENT_MASS`) are left out, with a warning; if nobody
    holds one, that is an error. With ``players``, the ``players`` of the rest whose crops
    hold the most instrument (:func:`.instrument_guess.instrument_mass`) and a warning that
    names how many were left out (fewer than ``players`` are all returned: the caller cuts
    the picture instead).
    """
    people = track_people(frames, min_face=MIN_FACE_PIXELS * size[0] / width)
    if not people:
        return [], None
    appearance = describe_players(frames, [t.box(*size) for t in people])
    holds = instrument_mass(appearance.probabilities) >= MIN_INSTRUMENT_MASS
    if not holds.any():
        raise InputError(
            f"{len(people)} people seen in {name} but none holds an instrument the front end "
            "knows; if they are the players, pass --boxes 'x,y,w,h;...' (see `vimss inspect`)"
        )
    if not holds.all():
        warnings.append(
            f"{name}: {int((~holds).sum())} person(s) with no visible instrument left out"
        )
    chosen = [j for j in range(len(people)) if holds[j]]
    if players is not None and len(chosen) > players:
        left_out = len(chosen) - players
        warnings.append(
            f"--players {players}: the {players} of the {len(chosen)} players seen who most "
            f"clearly hold an instrument are kept, {left_out} left out (check with `vimss "
            "inspect`)"
        )
        mass = instrument_mass(appearance.probabilities)
        chosen = sorted(sorted(chosen, key=lambda j: -mass[j])[:players])
    subset = Appearance(appearance.embeddings[chosen], appearance.probabilities[chosen])
    return [people[j] for j in chosen], subset
