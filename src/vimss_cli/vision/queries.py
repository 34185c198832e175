"""Per-player queries for one input: from ``--instruments`` or from the video, or both.

:func:`plan_players` decides who plays before the model is loaded (so bad inputs fail first
and the stem names are known); :meth:`PlayerPlan.queries` then builds the queries the loaded
model takes: the label always, the appearance vector and the motion sequence when the model's
config asks for them (``appearance_dim``, ``motion_channels``). The motion sequence lies on the
audio clock at the video front end's rate; the engine resamples it per absolute audio sample,
so chunked separation still equals one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vimss_cli.conditioning import Query
from vimss_cli.errors import InputError
from vimss_cli.instruments import MAX_PLAYERS, parse_instrument_list
from vimss_cli.media import MediaInfo
from vimss_cli.model import ModelConfig
from vimss_cli.urmp import MIX_PREFIX, VIDEO_PREFIX, parse_folder_name, pose_file_for
from vimss_cli.vision.analysis import VideoAnalysis, analyse_video
from vimss_cli.vision.efficientnet import FEATURE_DIM
from vimss_cli.vision.frames import probe_video
from vimss_cli.vision.players import parse_boxes

AUTO = "auto"
#: URMP's largest ensemble, the most players in any training excerpt.
MOST_TRAINED_PLAYERS = 5


@dataclass
class PlayerPlan:
    """Who plays in one input.

    Attributes:
        labels: the players' instrument codes, left to right (``None``: unknown).
        analysis: the video front end's findings, once run.
        notes: sentences for the user about how the queries were made.
        warnings: what the user should check: how unsure the players or their instruments
            are (``--strict`` makes them errors).
        seconds: time spent looking at the input to plan it (finding the players, their
            motion), added by the callers that time it.
    """

    path: Path
    labels: list[str | None]
    has_video: bool
    players: int | None = None
    boxes: str | None = None
    analysis: VideoAnalysis | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def label_queries(self) -> list[Query]:
        """Label-only queries (what the stem file names are made from)."""
        return [Query(label) for label in self.labels]

    def queries(self, config: ModelConfig, pitch_voices: bool | None = None) -> list[Query]:
        """The queries the model of ``config`` takes: the label, plus appearance and motion.

        With a label model, two players of one instrument are queried as voices 1 and 2,
        whose one stem :mod:`vimss_cli.pitch_voices` splits by pitch (docs/video.md), unless
        ``pitch_voices`` is ``False``. ``None`` (the default): the voices in register order,
        the higher to the first named (from a video, the one further left), or by the players'
        true keypoints where a generated video has them beside it; ``True``: from a video,
        each voice given to the player whose motion follows it (experimental: frame
        differences can give it to the wrong player). Adds warnings when label-only queries
        repeat (their stems would be identical), when the split may swap the players, and
        when there are more players than the models were trained on.
        """
        label_only = config.label_only
        asked = pitch_voices is True
        split = pitch_voices is not False
        if asked and not label_only:
            self._note_unused_pitch_voices(config)
        # the players' motion is used (to give the voices) when asked, or from true keypoints
        by_motion = asked or (split and self._has_keypoints())
        queries = self._queries(config, by_motion and label_only)
        if config.voices:
            queries = self._voice_queries(queries, config.voices)
        elif split and label_only:
            # a label model hears two players of one instrument as one stem, which
            # vimss_cli.pitch_voices splits by pitch into voice 1 and voice 2
            queries = self._voice_queries(queries, 2, by_pitch=True, by_motion=by_motion)
        if self.has_video and self.analysis is None:  # a trial found nothing said so
            self.notes.append(
                f"the players are the {len(self.labels)} named; the picture is not looked at "
                "(the model hears labels only), so its player count is not checked"
            )
        if len(queries) > MOST_TRAINED_PLAYERS:
            self.warnings.append(
                f"{self.path.name}: {len(queries)} players, but the models were trained on "
                f"ensembles of at most {MOST_TRAINED_PLAYERS}; expect weaker stems"
            )
        warned = self._warn_identical(queries, split and label_only)
        if asked and label_only and not warned and not any(q.voice for q in queries):
            self.notes.append(
                "--pitch-voices: no two players share an instrument, so nothing is split"
            )
        return queries

    def _note_unused_pitch_voices(self, config: ModelConfig) -> None:
        """The note for ``--pitch-voices`` given to a model that is not label-only."""
        shared = sorted({str(c) for c in self.labels if c and self.labels.count(c) > 1})
        if shared and not config.voices and not self.has_video:
            self.notes.append(
                "--pitch-voices is for label-only models, and this one tells players of "
                "one instrument apart by the picture: with no picture here, the "
                f"{', '.join(shared)} stems will be identical (the option is not used)"
            )
        else:
            self.notes.append(
                "--pitch-voices is for label-only models: this one tells the players apart "
                "by what it was trained on, and the option is not used"
            )

    def _warn_identical(self, queries: list[Query], splitting: bool) -> bool:
        """Warn when label-only queries repeat (their stems will be identical), with why
        (``splitting``: a label model's pairs are split by pitch); whether it warned."""
        labels_only = [
            q.instrument
            for q in queries
            if q.appearance is None and q.motion is None and q.voice == 0
        ]
        repeated = sorted(
            {label or "unknown" for label in labels_only if labels_only.count(label) > 1}
        )
        if repeated:
            if splitting and "unknown" in repeated:
                hint = "players of no known instrument are not split: name them with -i"
            elif splitting:
                hint = (
                    "a label model's stem is split by pitch for two players of one "
                    "instrument, not more"
                )
            else:
                hint = (
                    "a video model tells same-instrument players apart by what it sees; a label "
                    "model splits two of them by pitch unless --no-pitch-voices is given"
                )
            self.warnings.append(
                f"{self.path.name}: several players are queried as {', '.join(repeated)} with "
                f"nothing else to tell them apart, so their stems will be identical ({hint})"
            )
        return bool(repeated)

    def _voice_queries(
        self, queries: list[Query], most: int, by_pitch: bool = False, by_motion: bool = True
    ) -> list[Query]:
        """For a model that tells voices apart (or a label model, whose stem of two players
        of one instrument is split by pitch, ``most`` 2): the players of an instrument that
        two to ``most`` players share are queried as voices 1, 2, ... left to right. With a
        picture (and ``by_motion``, always so for a model's own voices), each carries its
        player's motion (:meth:`_sorting_motion`), by which the stems are then given to the
        players (``vimss_cli.voices.VoiceSorter``); else the stems stay in voice order,
        highest first, with a warning for a split ``by_pitch``. Where the picture shows
        another number of players than the queries, that is an error, or for a stem split
        ``by_pitch`` (a label model's) a warning and voice order."""
        labels = [q.instrument for q in queries]
        shared = [
            code for code in dict.fromkeys(labels) if code and 2 <= labels.count(code) <= most
        ]
        if not shared:
            return queries
        motions: list[np.ndarray] | None = None
        rate = None
        if self.has_video and (by_motion or not by_pitch):
            try:
                motions, rate = self._sorting_motion(len(queries))
            except InputError as error:
                if not by_pitch:
                    raise
                self.warnings.append(
                    f"{self.path.name}: the players of {', '.join(shared)} are separated by "
                    f"register, highest first, but cannot be matched to who plays ({error})"
                )
        elif by_pitch:  # register order: the score's, as URMP names and seats the players
            first = "the one further left" if self.has_video else "the first named"
            other = "; --pitch-voices: by their motion, experimental" if self.has_video else ""
            self.warnings.append(
                f"{self.path.name}: the players of {', '.join(shared)} are split by register, "
                f"the higher voice to {first}; where their parts cross, the stems swap notes "
                f"(--no-pitch-voices: one shared stem{other})"
            )
        else:
            self.notes.append(
                f"no picture: the players of {', '.join(shared)} are separated by register, "
                "highest first, and cannot be matched to who plays"
            )
        voiced = []
        for index, query in enumerate(queries):
            if query.instrument not in shared:
                voiced.append(query)
                continue
            voice = labels[: index + 1].count(query.instrument)
            motion = query.motion
            if motion is None and motions is not None:
                motion = motions[index]
            voiced.append(
                replace(
                    query,
                    voice=voice,
                    motion=motion,
                    motion_rate=query.motion_rate if query.motion is not None else rate,
                )
            )
        return voiced

    def _has_keypoints(self) -> bool:
        """Whether the players' true keypoints lie beside the video (a generated one): they say
        whose voice is whose better than register order does; frame differences, all any other
        video has, say it worse (docs/video.md, "From a video")."""
        return self.has_video and pose_file_for(self.path).is_file()

    def _sorting_motion(self, players: int) -> tuple[list[np.ndarray], float]:
        """Each player's motion for giving voice stems to players, and its rate: the pose
        motion of the true keypoints beside a generated video (``Pose_<piece>.npz``), else the
        frame differences of the player's box in :data:`SORTING_BANDS` bands."""
        if self.analysis is None:
            self.analysis = analyse_video(self.path, players=self.players, boxes=self.boxes)
            self.warnings.extend(self.analysis.warnings)
        found = self.analysis.players
        if len(found) != players:
            raise _players_not_found(players, len(found), self.path)
        if pose_file_for(self.path).is_file():
            return self._pose_motion(players)
        self.warnings.append(
            f"{self.path.name}: the voices are given to the players by the frame differences "
            "of their boxes, which can give a voice to the wrong player (docs/video.md); "
            "listen to check which stem is whose"
        )
        return [self.analysis.motion(p, SORTING_BANDS) for p in found], self.analysis.rate

    def _queries(self, config: ModelConfig, pitch_voices: bool = False) -> list[Query]:
        if config.appearance_dim not in (0, FEATURE_DIM):
            raise InputError(
                f"the model takes appearance vectors of {config.appearance_dim} values; "
                f"the video front end makes {FEATURE_DIM}"
            )
        visual = config.appearance_dim > 0 or config.motion_channels > 0
        if not visual:
            if self.analysis is not None and not config.voices and not pitch_voices:
                self.notes.append(
                    "the model takes only instrument labels: the players' appearance and "
                    "motion were measured but are not used"
                )
            return self.label_queries()
        if not self.has_video:
            self.notes.append("no picture: the model gets labels only")
            return self.label_queries()
        if self.analysis is None:
            self.analysis = analyse_video(self.path, players=self.players, boxes=self.boxes)
            self.warnings.extend(self.analysis.warnings)
        found = self.analysis.players
        if len(found) != len(self.labels):
            raise _players_not_found(len(self.labels), len(found), self.path)
        if config.motion_features == "pose":
            motions, rate = self._pose_motion(len(found))
        else:
            motions = [
                self.analysis.motion(player, config.motion_channels, config.motion_features)
                for player in found
            ]
            rate = self.analysis.rate
        return [
            Query(
                label,
                appearance=player.appearance if config.appearance_dim else None,
                motion=motion if config.motion_channels else None,
                motion_rate=rate if config.motion_channels else None,
            )
            for label, player, motion in zip(self.labels, found, motions, strict=True)
        ]

    def _pose_motion(self, players: int) -> tuple[list[np.ndarray], float]:
        """Each player's pose motion ``(features, frames)`` and its rate: from the true
        keypoints ``vimss data synth`` writes beside a video (``Pose_<piece>.npz``), or else
        from the keypoints the pose estimator tracks in the video."""
        from vimss_cli.vision.pose_motion import pose_motion, read_keypoints
        from vimss_cli.vision.pose_track import track_poses

        assert self.analysis is not None
        path = pose_file_for(self.path)
        if path.is_file():
            keypoints, rate = read_keypoints(path, players)
            self.notes.append(f"motion from the players' true keypoints in {path.name}")
        else:
            rate = self.analysis.rate
            keypoints = track_poses(self.path, self.analysis.players, rate)
            lost = (keypoints[:, :, 11, 2] == 0).mean(axis=1)
            self.notes.append("motion from the players' keypoints, tracked in the video")
            for number, share in enumerate(lost, start=1):
                if share > LOST_POSE_SHARE:
                    self.warnings.append(
                        f"{self.path.name}: player {number}'s pose was lost in "
                        f"{100 * share:.0f} % of the frames; its motion says little there"
                    )
        return list(pose_motion(keypoints, rate)), rate


#: Horizontal bands of a player's box whose frame differences give voice stems to players.
SORTING_BANDS = 4
#: A player whose pose the tracker loses in more than this share of frames gets a warning.
LOST_POSE_SHARE = 0.25
#: A guessed instrument below this confidence is used, with a warning.
UNSURE_CONFIDENCE = 0.3


def urmp_instruments(path: Path) -> list[str] | None:
    """The instruments a URMP-style name gives, left to right, or ``None``.

    ``Vid_01_Jupiter_vn_vc.mp4``, ``AuMix_01_Jupiter_vn_vc.wav``, ``01_Jupiter_vn_vc.mp4`` or
    any file inside a folder named ``01_Jupiter_vn_vc``.
    """
    found = urmp_name(path)
    return None if found is None else found[0]


def urmp_name(path: Path) -> tuple[list[str], str] | None:
    """:func:`urmp_instruments` with what named them: ``"Vid_01_Jupiter_vn_vc.mp4"``, or
    ``"the folder 01_Jupiter_vn_vc"``."""
    stem = path.stem
    for prefix in (VIDEO_PREFIX, MIX_PREFIX):  # before the piece's folder name
        stem = stem.removeprefix(prefix)
    for name, said in ((stem, path.name), (path.parent.name, f"the folder {path.parent.name}")):
        try:
            return list(parse_folder_name(name).instruments), said
        except InputError:
            continue
    return None


def guess_warnings(analysis: VideoAnalysis, name: str) -> list[str]:
    """One warning per player whose guessed instrument is unknown or unsure."""
    warnings = []
    for player in analysis.players:
        guess = player.guess
        if guess.instrument is None:
            warnings.append(
                f"{name}: player {player.number}'s instrument is {guess.describe()}; "
                "separating it uses the 'unknown' query (name the players with --instruments)"
            )
        elif guess.confidence < UNSURE_CONFIDENCE:
            warnings.append(
                f"{name}: player {player.number} looks like {guess.instrument} but only with "
                f"confidence {guess.confidence:.2f}; check with `vimss inspect`, or pass "
                "--instruments"
            )
    return warnings


#: A guessed instrument -> the URMP instrument a picture cannot tell it from: ImageNet has no
#: class for viola, double bass or clarinet, so those are named as their look-alikes.
LOOK_ALIKES = {"vn": "va", "vc": "db", "ob": "cl"}


def look_alike_note(analysis: VideoAnalysis) -> str | None:
    """One note when a guess has a look-alike (:data:`LOOK_ALIKES`), else ``None``."""
    pairs = sorted(
        {
            (p.guess.instrument, LOOK_ALIKES[p.guess.instrument])
            for p in analysis.players
            if p.guess.instrument in LOOK_ALIKES
        }
    )
    if not pairs:
        return None
    said = ", ".join(f"{guess} may be {other}" for guess, other in pairs)
    return (
        f"pictures cannot tell these apart here ({said}): name the players with --instruments "
        "where it matters"
    )


def checked_instrument_list(instruments: str) -> list[str]:
    """``--instruments``' codes, checked (known codes, 1 to :data:`MAX_PLAYERS` of them):
    :class:`InputError` otherwise."""
    labels = parse_instrument_list(instruments)
    if len(labels) > MAX_PLAYERS:
        raise InputError(
            f"--instruments must name between 1 and {MAX_PLAYERS} players, got {len(labels)}"
        )
    return list(labels)


def _named_instruments(
    info: MediaInfo, instruments: str | None, name_path: Path | None
) -> tuple[list[str], Path, str] | None:
    """With no instruments given (``None`` or ``"auto"``), those of a URMP-style name of the
    input, else of ``name_path`` (``--audio``), with the file they come from and what named
    them (:func:`urmp_name`); else ``None``."""
    if instruments is not None and instruments.strip().lower() != AUTO:
        return None
    for path in [p for p in (info.path, name_path) if p is not None]:
        found = urmp_name(path)
        if found:
            return found[0], path, found[1]
    return None


def check_who_plays(
    info: MediaInfo,
    instruments: str | None = None,
    players: int | None = None,
    boxes: str | None = None,
    name_path: Path | None = None,
) -> None:
    """The mistakes in saying who plays that :func:`plan_players` refuses before looking at
    any picture (an audio-only input with nobody named, ``--players`` or ``--boxes`` without
    a picture, ``--players`` out of range): :class:`InputError`. Run first, so that such a
    mistake is told before anything else (earlier stems in the way, a long analysis)."""
    named = _named_instruments(info, instruments, name_path) is not None
    auto = (instruments is None or instruments.strip().lower() == AUTO) and not named
    if not info.has_video:
        options = [n for n, v in (("--players", players), ("--boxes", boxes)) if v is not None]
        if options:
            verb = "need" if len(options) > 1 else "needs"
            raise InputError(f"{' and '.join(options)} {verb} a picture, and {info.path} has none")
        if auto:
            raise InputError(
                f"audio-only input {info.path.name}: say who plays; "
                "pass --instruments, e.g. --instruments vn,vc"
            )
    if players is not None and not 1 <= players <= MAX_PLAYERS:
        raise InputError(f"--players must be between 1 and {MAX_PLAYERS}, got {players}")


def plan_players(
    info: MediaInfo,
    instruments: str | None = None,
    players: int | None = None,
    boxes: str | None = None,
    name_path: Path | None = None,
) -> PlayerPlan:
    """Decide who plays in one input before the model is loaded.

    ``instruments`` ``None`` or ``"auto"``: the instruments a URMP-style name of the input (or
    of ``name_path``) gives, else find the players in the video and guess their instruments
    (needs a picture). Otherwise the codes, left to right; with ``players`` or ``boxes`` their
    count must match.
    """
    path = info.path
    auto = instruments is None or instruments.strip().lower() == AUTO
    found = _named_instruments(info, instruments, name_path)
    if found is not None:
        named, source, said = found
        box_count = None if boxes is None else len([b for b in boxes.split(";") if b.strip()])
        if players is not None and players != len(named):
            mismatch = f"--players {players}"
        elif box_count is not None and box_count != len(named):
            mismatch = f"--boxes gives {box_count}"
        else:
            mismatch = None
        if mismatch is not None:
            raise InputError(
                f"{mismatch} but the URMP-style name of {said} names {len(named)} "
                f"player{'s' if len(named) != 1 else ''}; pass --instruments to say who plays"
            )
        hint = players or (len(named) if info.has_video else None)
        plan = plan_players(info, ",".join(named), hint, boxes)
        plan.notes.append(f"instruments {','.join(named)} read from the URMP-style name of {said}")
        other = None if name_path in (None, source) else urmp_name(name_path)
        if other and other[0] != named:
            plan.warnings.append(
                f"the names of {said} ({','.join(named)}) and {other[1]} "
                f"({','.join(other[0])}) name other players; {said}'s are used (pass "
                "--instruments to choose)"
            )
        return plan
    check_who_plays(info, instruments, players, boxes, name_path)
    if auto:
        analysis = analyse_video(path, players=players, boxes=boxes)
        guessed = [player.guess.instrument for player in analysis.players]
        if len(guessed) > MAX_PLAYERS:
            raise InputError(
                f"{len(guessed)} players seen in {path.name}, more than the {MAX_PLAYERS} one "
                f"run separates; pass --players N (1 to {MAX_PLAYERS}) to keep the N who most "
                "clearly hold an instrument, or --boxes (see `vimss inspect`)"
            )
        plan = PlayerPlan(path, guessed, True, players, boxes, analysis)
        plan.warnings.extend(analysis.warnings)
        plan.warnings.extend(guess_warnings(analysis, path.name))
        note = look_alike_note(analysis)
        if note is not None:
            plan.notes.append(note)
        return plan
    labels = check_named_players(instruments, players)
    if boxes is not None:
        video = probe_video(path)
        count = len(parse_boxes(boxes, video.width, video.height))
        if count != len(labels):
            raise InputError(
                f"--boxes gives {count} box{'es' * (count != 1)} but --instruments names "
                f"{len(labels)}"
            )
    return PlayerPlan(path, list(labels), info.has_video, players, boxes)


def _count(number: int, noun: str) -> str:
    """``1 player``, ``2 players``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _players_not_found(named: int, found: int, path: Path) -> InputError:
    """The error for ``--instruments`` naming ``named`` players where ``found`` were found."""
    were = "was" if found == 1 else "were"
    return InputError(
        f"--instruments names {_count(named, 'player')} but {found} {were} found in {path}; "
        f"pass --players {named} or --boxes"
    )


def check_named_players(instruments: str | None, players: int | None) -> list[str]:
    """The codes ``instruments`` names (:func:`checked_instrument_list`), checked against
    ``--players``; ``[]`` for ``None`` or ``auto``. Needs no file: run before anything else
    is looked at, so an argument mistake is told first."""
    if instruments is None or instruments.strip().lower() == AUTO:
        return []
    labels = checked_instrument_list(instruments)
    if players is not None and players != len(labels):
        raise InputError(
            f"--players {players} but --instruments names {_count(len(labels), 'player')}"
        )
    return labels


def check_strict(plans: list[PlayerPlan]) -> None:
    """``--strict``: the first warning of any plan becomes an error."""
    for plan in plans:
        if plan.warnings:
            raise InputError(f"{plan.warnings[0]} (an error under --strict)")


def describe_plan(plan: PlayerPlan) -> str:
    """One line per input for the user: players found, boxes, guesses with confidence."""
    if plan.analysis is None:
        return ""
    parts = [
        f"{p.number} {p.guess.describe()} at {','.join(str(v) for v in p.box)}"
        for p in plan.analysis.players
    ]
    count = len(plan.analysis.players)
    return (
        f"{plan.path.name}: {count} player{'s' if count != 1 else ''} "
        f"({plan.analysis.source}): " + "; ".join(parts)
    )
