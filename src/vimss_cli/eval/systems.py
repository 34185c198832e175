"""The systems: each turns a track into K estimates ``(K, N)`` at the evaluation rate.

``model`` (a :class:`~vimss_cli.api.Separator`), the baselines ``mixture``, ``irm`` and
``ibm``, and ``estimates`` (the user's files). ``--save-estimates`` writes the model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vimss_cli.errors import InputError
from vimss_cli.eval.audio import TrackAudio, fit_length, read_at, read_mono, resample
from vimss_cli.eval.tracks import Track
from vimss_cli.stem_names import StemTemplate
from vimss_cli.stem_writer import StemSetWriter

BASELINES = ("mixture", "irm", "ibm")
#: What the model is given (``--queries``): what it takes (``auto``), labels, or the video's
#: appearance and motion too.
QUERY_MODES = ("auto", "labels", "video")
#: STFT of the oracle masks: Hann window, 2048 bins, hop 512 (at the evaluation rate).
MASK_FFT = 2048
MASK_HOP = 512


def plan_systems(
    *,
    user_estimates: bool,
    model: str | None,
    baselines: bool,
    queries: str = "auto",
    save_estimates: Path | None = None,
) -> list[str]:
    """The systems to score, once the options are checked to go together: the user's
    ``estimates`` (tracks of folders), the ``model`` (given ``model``, on dataset tracks
    only), then the :data:`BASELINES` (unless not ``baselines``)."""
    if queries not in QUERY_MODES:
        raise InputError(f"unknown --queries {queries!r}; choose auto, labels or video")
    if model is not None and user_estimates:
        raise InputError(
            "--model separates dataset mixtures; use it with --dataset, "
            "not with --references/--estimates"
        )
    if save_estimates is not None and model is None:
        raise InputError("--save-estimates writes the stems of --model; give --model too")
    systems = (["estimates"] if user_estimates else []) + (["model"] if model else [])
    systems += list(BASELINES) if baselines else []
    if not systems:
        raise InputError("nothing to score: give --model, or keep the baselines")
    return systems


def resolve_queries(queries: str, separator: Any | None) -> str:
    """``auto`` -> ``video`` for a model that takes appearance or motion, else ``labels``;
    another mode is kept."""
    if queries != "auto":
        return queries
    config = separator.model.config if separator is not None else None
    visual = config is not None and (config.appearance_dim or config.motion_channels)
    return "video" if visual else "labels"


def check_videos(tracks: list[Track], queries: str, asked: str) -> None:
    """Refuse, before any piece is separated, video ``queries`` for pieces without a video;
    ``asked`` is the ``--queries`` given (``auto`` chose video for a model that takes it)."""
    missing = [track.piece for track in tracks if track.video is None]
    if queries == "video" and missing:
        raise _no_video_error(missing, asked)


def _no_video_error(pieces: list[str], asked: str) -> InputError:
    """The one-line refusal of video queries for ``pieces``, pointing at label queries."""
    which = f"piece {pieces[0]} has" if len(pieces) == 1 else f"pieces {', '.join(pieces)} have"
    why = (
        "video queries, which --queries auto chose since the model takes appearance or motion"
        if asked == "auto"
        else "--queries video"
    )
    return InputError(
        f"{which} no video file (Vid_*.mp4) for {why}; "
        "give --queries labels to score the model on labels only"
    )


def oracle_mask_estimates(references: np.ndarray, mixture: np.ndarray, kind: str) -> np.ndarray:
    """Oracle STFT masks on the mixture: references ``(K, N)``, mixture ``(N,)`` -> ``(K, N)``.

    ``irm``: ``|S_j|^2 / sum_i |S_i|^2`` (the Wiener-like power ratio); ``ibm``: 1 where
    source j is the loudest in the bin, else 0. Hann window of ``MASK_FFT``, hop ``MASK_HOP``.
    """
    import torch

    length = mixture.size
    window = torch.hann_window(MASK_FFT, dtype=torch.float64)

    def stft(signal: np.ndarray) -> torch.Tensor:
        return torch.stft(
            torch.from_numpy(np.ascontiguousarray(signal)),
            MASK_FFT,
            MASK_HOP,
            window=window,
            pad_mode="constant",
            return_complex=True,
        )

    sources = stft(references).abs()  # (K, F, T)
    if kind == "irm":
        power = sources**2
        masks = power / power.sum(dim=0, keepdim=True).clamp_min(1e-20)
    elif kind == "ibm":
        masks = torch.zeros_like(sources)
        masks.scatter_(0, sources.argmax(dim=0, keepdim=True), 1.0)
    else:
        raise ValueError(f"unknown oracle mask {kind!r}")
    masked = masks * stft(mixture).unsqueeze(0)
    return torch.istft(masked, MASK_FFT, MASK_HOP, window=window, length=length).numpy()


def baseline_estimates(system: str, audio: TrackAudio) -> np.ndarray:
    """The estimates ``(K, N)`` of a baseline system for one track."""
    if system == "mixture":
        return np.repeat(audio.mixture[None, :], audio.references.shape[0], axis=0)
    if system in ("irm", "ibm"):
        return oracle_mask_estimates(audio.references, audio.mixture, system)
    raise ValueError(f"unknown baseline {system!r}")


def model_queries(
    separator: Any,
    track: Track,
    mode: str,
    notes: list[str],
    pitch_voices: bool | None = None,
) -> list[Any]:
    """One query per player: its label, plus appearance and motion from the video (``video``).

    For a label-only model, two players of one instrument are queried as voices 1 and 2,
    whose one stem is split by pitch (:mod:`vimss_cli.pitch_voices`), as ``vimss separate``
    takes ``pitch_voices`` (:meth:`~vimss_cli.vision.queries.PlayerPlan.queries`): by default
    in register order (the first named the higher; with ``video``, the players' true keypoints
    decide where a generated video has them beside it), with ``True`` and ``video`` by the
    players' motion, not with ``False``. With ``video``, the model's config decides what else
    it takes.
    """
    from vimss_cli.conditioning import Query
    from vimss_cli.vision.queries import PlayerPlan

    labels = list(track.instruments)
    config = separator.model.config
    label_only = config.label_only
    if mode == "labels":
        if not label_only or pitch_voices is False or track.mixture is None:
            return [Query(code) for code in labels]
        plan = PlayerPlan(track.mixture, labels, has_video=False)
        queries = plan.queries(config)  # no picture: pairs split, in register order
        notes.extend(plan.notes + plan.warnings)  # they name the mixture's file
        return queries
    if track.video is None:
        raise _no_video_error([track.piece], mode)
    from vimss_cli.synth.video import generated_boxes

    boxes = generated_boxes(track.video, len(labels))
    plan = PlayerPlan(track.video, labels, has_video=True, boxes=boxes)
    queries = plan.queries(config, pitch_voices=pitch_voices if label_only else False)
    if label_only and not any(q.voice for q in queries):
        notes.append(f"{track.piece}: the model takes labels only; the video was not used")
    notes.extend(f"{track.piece}: {note}" for note in plan.notes + plan.warnings)
    return queries


def model_estimates(
    separator: Any,
    track: Track,
    audio: TrackAudio,
    queries: str = "labels",
    pitch_voices: bool | None = None,
) -> np.ndarray:
    """Separate the track's mixture with ``separator`` (one query per player,
    :func:`model_queries`).

    The mixture is read at the model's rate, separated, and the stems resampled to the
    evaluation rate and fitted to the references' length ``(K, N)``.
    """
    if track.mixture is None:
        raise InputError(f"piece {track.piece} has no mixture file to separate")
    player_queries = model_queries(separator, track, queries, audio.notes, pitch_voices)
    model_rate = separator.sample_rate
    mixture, native = read_mono(track.mixture)
    mixture = resample(mixture, native, model_rate).astype(np.float32)
    stems = separator.separate_array(mixture, player_queries).astype(np.float64)
    stems = resample(stems, model_rate, audio.rate)
    what = f"{track.piece}: model output"
    return fit_length(stems, audio.references.shape[1], audio.rate, what, audio.notes)


def estimate_paths(track: Track, folder: Path) -> list[Path]:
    """Where ``--save-estimates`` puts a track's model stems: ``FOLDER/<piece>/NN_<code>.wav``,
    as ``vimss separate`` names them (so ``--estimates`` and ``vimss report`` read them)."""
    template = StemTemplate()
    return [
        template.path(Path(folder), track.piece, number, code or "player", "wav")
        for number, code in enumerate(track.instruments, start=1)
    ]


def check_estimates_folder(tracks: list[Track], folder: Path) -> None:
    """Refuse a ``--save-estimates`` folder that is a dataset root the tracks come from (the
    folder above their piece folders), lies inside one, or holds one."""
    target = Path(folder).resolve()
    roots = {path.resolve().parent.parent for track in tracks for path in track.references}
    for root in sorted(roots):
        if target == root or root in target.parents:
            where = "is" if target == root else "lies inside"
            raise InputError(
                f"--save-estimates {folder} {where} the dataset at {root}: the stems would "
                "be written among its pieces; give a folder outside the dataset"
            )
        if target in root.parents:
            raise InputError(
                f"--save-estimates {folder} holds the dataset at {root}; "
                "give a folder that neither holds nor lies inside the dataset"
            )


def check_estimates_free(
    tracks: list[Track], folder: Path, force: bool, kept: set[str] | frozenset[str] = frozenset()
) -> None:
    """Refuse, before any work, a folder in the dataset (:func:`check_estimates_folder`) and
    estimates an earlier run saved (unless ``force``), but those of the pieces in ``kept``
    (an interrupted run's, which a resumed one keeps: ``run.saved_estimates_to_keep``)."""
    from vimss_cli.api import check_outputs_free

    check_estimates_folder(tracks, folder)
    for track in tracks:
        if track.piece in kept:
            continue
        check_outputs_free(
            estimate_paths(track, folder), force, StemTemplate().is_stem(track.piece)
        )


def save_model_estimates(
    track: Track, estimates: np.ndarray, rate: int, folder: Path, force: bool
) -> None:
    """Write the estimates ``(K, N)`` that were scored as float WAVs at ``rate``, atomically
    (all of the track's stems appear together, or none)."""
    paths = estimate_paths(track, folder)
    is_stem = StemTemplate().is_stem(track.piece)
    with StemSetWriter(paths, rate, "float32", overwrite=force, is_stem=is_stem) as writer:
        writer.write(estimates.astype(np.float32))


def user_estimates(track: Track, audio: TrackAudio) -> np.ndarray:
    """The track's estimate files at the evaluation rate, fitted to the references ``(K, N)``."""
    if track.estimates is None:
        raise ValueError(f"track {track.piece} has no estimate files")
    stems = []
    for path in track.estimates:
        what = f"{path.parent.name}/{path.name} (estimate)"
        signal = read_at(path, audio.rate, what, audio.notes)
        stems.append(fit_length(signal, audio.references.shape[1], audio.rate, what, audio.notes))
    return np.stack(stems)


def system_estimates(
    system: str,
    track: Track,
    audio: TrackAudio,
    separator: Any | None,
    queries: str,
    pitch_voices: bool | None = None,
) -> np.ndarray:
    """The estimates ``(K, N)`` of ``system`` (``model``, ``estimates`` or a baseline)."""
    if system == "model":
        return model_estimates(separator, track, audio, queries, pitch_voices)
    if system == "estimates":
        return user_estimates(track, audio)
    return baseline_estimates(system, audio)
