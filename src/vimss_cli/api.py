"""The library API: load a model once, separate files or arrays with it.

Example::

    from vimss_cli.api import Separator
    from vimss_cli.conditioning import Query

    separator = Separator("default", device="auto")
    report = separator.separate_file("duet.wav", [Query("vn"), Query("vc")], "stems/")
    stems = separator.separate_array(mixture, [Query("vn"), Query("vc")], sample_rate=rate)

Nothing here prints: progress goes to an optional callback.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from vimss_cli.checkpoint import DEFAULT_MODEL_ALIAS, LoadedModel, load_model
from vimss_cli.conditioning import Query
from vimss_cli.devices import check_precision, resolve_device
from vimss_cli.engine import even_tile, plan_tile, separate_array, separate_blocks
from vimss_cli.errors import InputError, NonFiniteAudioError, OutputError, OutputsExistError
from vimss_cli.ffmpeg_io import first_audio_time
from vimss_cli.instruments import MAX_PLAYERS
from vimss_cli.media import AudioStream, MediaInfo, channel_peaks, count_frames, probe
from vimss_cli.note_classifier import load_note_classifier
from vimss_cli.pitch_voices import VoiceSplitStage
from vimss_cli.progress import ProgressCallback
from vimss_cli.recording_timbre import RecordingListener
from vimss_cli.soft_masks import TEMPLATE_BLEND, SoftMaskFilter, timbre_listener
from vimss_cli.soft_masks import refine as refine_on_mixture
from vimss_cli.stem_names import DEFAULT_TEMPLATE, StemTemplate
from vimss_cli.stem_writer import (
    INTEGER_BITS,
    WAV_FORMATS,
    FolderLock,
    StemSetWriter,
    check_format_channels,
    check_format_rate,
    check_stem_folder,
    check_wav_format,
    describe_paths,
    existing_outputs,
    remove_stale_scratch,
    scratch_prefix,
    scratch_writes,
    stem_extension,
)
from vimss_cli.voices import VoiceSorter, sorter_warnings, voice_groups


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
    #: the input's peak when it lies beyond full scale (1.0), else ``None``
    input_peak: float | None = None
    #: factor the stems were scaled by to fit an integer format (1.0: the input's level)
    stem_gain: float = 1.0
    #: stem samples beyond full scale that an integer format clipped
    clipped_samples: int = 0
    #: sentences for the user about the level of the stems
    warnings: list[str] = field(default_factory=list)
    #: seconds spent finding the players in the video before separating (and their
    #: motion); 0 when the players were named. Not in ``wall_seconds``.
    players_seconds: float = 0.0

    @property
    def audio_seconds(self) -> float:
        return self.samples / self.sample_rate

    def to_json(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "audio_seconds": round(self.audio_seconds, 6),
            "wall_seconds": round(self.wall_seconds, 3),
            "realtime_factor": round(self.audio_seconds / max(self.wall_seconds, 1e-9), 3),
            "players_seconds": round(self.players_seconds, 3),
            "samples": self.samples,
            "sample_rate": self.sample_rate,
            "stems": [
                {"player": s.player, "instrument": s.instrument, "path": str(s.path)}
                for s in self.stems
            ],
            "input_peak": self.input_peak,
            "stem_gain": self.stem_gain,
            "clipped_samples": self.clipped_samples,
            "warnings": self.warnings,
        }


#: The name of the optional stem of what no query claimed (the mixture minus the stems).
REST = "rest"

#: The peak every mixture is scaled to for the network (-1 dBFS, where Bach10's and URMP's
#: mixtures lie); its stems are scaled back. The networks' output depends on their input's
#: level: ``vimss-synth-gpu-v0`` lost 1.2 dB of its Bach10 median (museval) and 2.4 dB of its
#: whole-clip mean with the recordings 20 dB quieter, 1.6 and 4.3 dB at 30 dB quieter.
NETWORK_PEAK = 10.0 ** (-1.0 / 20.0)
#: An input whose peak spans fewer steps of an integer format than this is warned about: its
#: stems in that format are mostly rounding (32 steps: -60 dBFS in 16 bits, -108 in 24).
QUIET_STEPS = 32
#: A mean this share of the peak is warned about as a DC offset: measured on a Bach10 quartet
#: with an offset added, 2-10 % of the peak cost nothing, 30 % lost 0.8 dB SI-SDR.
DC_OFFSET_SHARE = 0.2
#: The most a quiet mixture is raised for the network (60 dB).
MAX_NETWORK_GAIN = 1000.0
#: Part of eval's cache key: the level the network hears (2: every mixture at NETWORK_PEAK;
#: 1, before 2026-12-04: as it came, only those beyond full scale scaled to it).
NETWORK_LEVEL_VERSION = 2


def network_divisor(peak: float) -> float:
    """What a mixture peaking at ``peak`` is divided by for the network, and its stems
    multiplied by back: ``peak / NETWORK_PEAK``, a gain of at most :data:`MAX_NETWORK_GAIN`;
    1 for silence."""
    if not peak > 0.0:
        return 1.0
    return max(peak / NETWORK_PEAK, 1.0 / MAX_NETWORK_GAIN)


def input_levels(
    peaks: list[float], may_exceed_full_scale: bool, wav_format: str
) -> tuple[list[float], float, float]:
    """The levels of separating a file whose channels (or mono downmix) peak at ``peaks`` at
    the model's rate: each one's :func:`network_divisor`; the input's peak as reported (an
    integer file is never beyond full scale: what resampling lifts past 1 is not counted); and
    the stems' gain relative to the input's level (1, or in an integer format ``1/peak`` for
    a float file beyond full scale, the same for all channels)."""
    divisors = [network_divisor(p) for p in peaks]
    peak = max(peaks) if may_exceed_full_scale else min(max(peaks), 1.0)
    stem_gain = 1.0 if wav_format == "float32" else 1.0 / max(peak, 1.0)
    return divisors, peak, stem_gain


#: Whether a file name is one the default template makes: ``NN_<instrument>.wav``,
#: ``NN_player.wav``, ``NN_rest.wav`` (or .flac, .mp3).
_DEFAULT_STEM = StemTemplate().is_stem("")


def is_stem_name(name: str) -> bool:
    """Whether a file name is one :func:`stem_paths` makes with the default template."""
    return _DEFAULT_STEM(name)


def output_folder_name(input_path: Path) -> str:
    """An input's ``{input}`` (its stem folder's name): its file name without the extension.

    Leading dots become underscores: a name made only of dots (``...wav`` -> ``..``) would
    name the output folder's parent or itself, and one that starts with a dot
    (``.take1.wav``) a hidden folder the user would not see.
    """
    name = Path(input_path).stem or "_"
    dots = len(name) - len(name.lstrip("."))
    return "_" * dots + name[dots:]


def stem_paths(
    input_path: Path,
    out_dir: Path,
    queries: list[Query],
    extension: str = ".wav",
    filename: str = DEFAULT_TEMPLATE,
    *,
    rest: bool = False,
) -> list[Path]:
    """Each player's stem path, numbered from 1, as the ``filename`` template names it
    (default ``OUTDIR/<input stem>/<NN>_<instrument>.wav``, or ``extension``); with
    ``rest``, the rest stem's last."""
    template, name = StemTemplate(filename), output_folder_name(input_path)
    instruments = [query.instrument or "player" for query in queries] + [REST] * rest
    return [
        template.path(Path(out_dir), name, number, instrument, extension.lstrip("."))
        for number, instrument in enumerate(instruments, start=1)
    ]


def stem_matcher(input_path: Path, filename: str = DEFAULT_TEMPLATE) -> Callable[[str], bool]:
    """Whether a file name in the input's stem folder is one of its stems (any players and
    format), as the ``filename`` template names them."""
    return StemTemplate(filename).is_stem(output_folder_name(input_path))


def existing_stems(input_path: Path, out_dir: Path, filename: str = DEFAULT_TEMPLATE) -> list[Path]:
    """The stems an earlier run left for the input (none when its folder does not exist)."""
    folder = StemTemplate(filename).folder(Path(out_dir), output_folder_name(input_path))
    if not folder.is_dir():
        return []
    is_stem = stem_matcher(input_path, filename)
    return sorted(p for p in folder.iterdir() if is_stem(p.name) and p.is_file())


def check_outputs_free(
    paths: list[Path],
    force: bool,
    is_stem: Callable[[str], bool] = is_stem_name,
    inputs: Mapping[Path, Path] = MappingProxyType({}),
) -> None:
    """Refuse a stem folder that is a file, and existing stems unless ``force``.

    Existing stems are the files of ``paths`` and any other stem set in their folder (an
    earlier run with other players; ``is_stem`` names them): ``force`` replaces the whole set.
    An input among them (:func:`input_entries`: this one or another of the batch, inside the
    stem folder and named like a stem) is refused even with ``force``: publishing the stems
    would replace or delete it.
    """
    for folder in sorted({p.parent for p in paths}):
        check_stem_folder(folder)
    for path in paths:
        if path.is_dir():
            raise OutputError(f"cannot write the stem {path}: a folder of that name is in the way")
    existing = existing_outputs(paths, is_stem)
    for path in [*paths, *existing] if inputs else []:  # realpath only when inputs are named
        given = inputs.get(_entry(path))
        if given is not None:
            raise OutputError(
                f"{given} is in the way of the stems to be written in {paths[0].parent} (named "
                "like one of them): publishing them would replace or delete it; choose another "
                "--out or --filename"
            )
    if existing and not force:
        raise OutputsExistError(
            f"outputs already exist: {describe_paths(existing)} (use --force to replace them)"
        )


def input_entries(inputs: Iterable[Path | None]) -> dict[Path, Path]:
    """The directory entry each input leads to (through any symbolic links) -> the input as
    given, for :func:`check_outputs_free` (made once for a batch)."""
    return {Path(os.path.realpath(given)): given for given in inputs if given is not None}


def _entry(path: Path) -> Path:
    """The directory entry that replacing or removing ``path`` (a stem's, which may not exist
    yet) acts on: its own name in its real folder. A hard or symbolic link to an input there
    is a name of its own: replacing or removing it leaves the input alone."""
    return Path(os.path.realpath(path.parent)) / path.name


#: The stem rates ``--sample-rate N`` takes, in Hz.
SAMPLE_RATES = range(1000, 384001)


def check_sample_rate(rate: object, name: str = "a stem sample rate") -> int:
    """``rate`` as an int when it is a whole number of Hz in :data:`SAMPLE_RATES`, else
    :class:`InputError` naming it ``name``."""
    if isinstance(rate, float | np.floating) and float(rate).is_integer():
        rate = int(rate)  # 22050.0 is 22050 Hz
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | np.integer)
        or int(rate) not in SAMPLE_RATES
    ):
        raise InputError(
            f"{name} must be a whole number of Hz from {SAMPLE_RATES.start} to "
            f"{SAMPLE_RATES.stop - 1}, got {rate!r}"
        )
    return int(rate)


def _resample(audio: np.ndarray, source: int, target: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy's Kaiser-windowed FIR), float32."""
    from math import gcd

    from scipy.signal import resample_poly

    common = gcd(int(source), int(target))
    up, down = int(target) // common, int(source) // common
    return resample_poly(audio, up, down, axis=-1).astype(np.float32)


def _pass_mixture(
    model: Any,
    blocks: Iterable[np.ndarray],
    queries: list[Query],
    on_output: Callable[[np.ndarray], None],
    progress: Callable[[int], None] | None = None,
    **_: Any,
) -> int:
    """:func:`separate_blocks` for one query that is every player (two players of one
    instrument, split by pitch afterwards): the stem is the mixture itself, no network."""
    done = 0
    for block in blocks:
        on_output(np.asarray(block, dtype=np.float32)[None].copy())
        done += len(block)
        if progress is not None:
            progress(done)
    return done


def _network(splitter: VoiceSplitStage | None) -> Callable[..., int]:
    """What makes the stems block by block: :func:`separate_blocks`, or
    :func:`_pass_mixture` when a pitch-split pair is every player."""
    return _pass_mixture if splitter is not None and splitter.whole_mixture else separate_blocks


def _network_array(
    model: Any,
    audio: np.ndarray,
    heard: list[Query],
    splitter: VoiceSplitStage | None,
    **options: Any,
) -> np.ndarray:
    """:func:`separate_array` of ``heard``, or the mixture ``(1, N)`` itself when a pitch-split
    pair is every player."""
    if splitter is not None and splitter.whole_mixture:
        return audio[None].copy()
    return separate_array(model, audio, heard, **options)


def _voice_sorter(
    queries: list[Query], sample_rate: int, owners: list[list[tuple[int, ...]]] | None = None
) -> VoiceSorter | None:
    """A sorter for the voice queries that carry their players' motion, or ``None``; with
    ``owners``, one that replays those decisions (another channel of the same input)."""
    try:
        groups, motion_rate = voice_groups(queries)
    except ValueError as error:
        raise InputError(str(error)) from None
    if not groups or motion_rate is None:
        return None
    return VoiceSorter(groups, motion_rate, sample_rate, owners=owners)


def _stem_reports(queries: list[Query], paths: list[Path]) -> list[StemReport]:
    """One report per written stem; the rest (if any) has the instrument ``"rest"``."""
    names = [q.instrument for q in queries] + [REST] * (len(paths) - len(queries))
    return [
        StemReport(player=i, instrument=name, path=path)
        for i, (name, path) in enumerate(zip(names, paths, strict=True), start=1)
    ]


class _SampleQueue:
    """Samples held in blocks and taken out in counts of the caller's choosing: blocks pushed
    in, or pulled from ``source`` when the queue runs short."""

    def __init__(self, source: Iterator[np.ndarray] | None = None) -> None:
        self._blocks: collections.deque[np.ndarray] = collections.deque()
        self._source = source

    def push(self, block: np.ndarray) -> None:
        self._blocks.append(block)

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` samples ``(count,)`` float32, zeros past the end."""
        parts, wanted = [], count
        while wanted > 0:
            if not self._blocks:
                block = None if self._source is None else next(self._source, None)
                if block is None:
                    parts.append(np.zeros(wanted, np.float32))
                    break
                self._blocks.append(block)
            block = self._blocks[0]
            if len(block) <= wanted:
                parts.append(self._blocks.popleft())
                wanted -= len(block)
            else:
                parts.append(block[:wanted])
                self._blocks[0] = block[wanted:]
                wanted = 0
        if not parts:  # count 0
            return np.zeros(0, np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)


class _HeldMixture:
    """A stage after the network that needs the mixture of the stems it is given:
    :meth:`feed` passes the mixture's blocks on to the network and keeps them until the
    stems of those samples come back (at most the network's look-ahead is held, and the
    batches of windows it may be ahead, :data:`~vimss_cli.engine.WINDOWS_AHEAD`)."""

    def __init__(self) -> None:
        self._mixture = _SampleQueue()

    def feed(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for block in blocks:
            self._mixture.push(block)
            yield block


class _Rest(_HeldMixture):
    """Adds "the rest" (the mixture minus the stems) below each block of stems."""

    def add(self, stems: np.ndarray) -> np.ndarray:
        """``(K, n)`` stems -> ``(K + 1, n)``: the same, then the mixture minus their sum."""
        rest = self._mixture.take(stems.shape[1]) - stems.sum(axis=0)
        return np.concatenate([stems, rest[None].astype(np.float32)])


class _Refiner(_HeldMixture):
    """Soft masks on the stems as they come back (:class:`SoftMaskFilter`): the refined
    stems come out up to a frame later (with harmonic templates, up to a block of about
    30 s), the last ones from :meth:`finish`. With ``settings``
    (:meth:`Separator._mask_settings`), harmonic masks."""

    def __init__(self, players: int, settings: dict[str, Any]) -> None:
        super().__init__()
        self._masks = SoftMaskFilter(players, **settings)

    def refine(self, stems: np.ndarray) -> np.ndarray:
        """``(K, n)`` stems -> ``(K, m)`` refined ones, those now complete."""
        return self._masks.push(stems, self._mixture.take(stems.shape[1]))

    def finish(self) -> np.ndarray:
        return self._masks.finish()


class _LevelPassObserver:
    """A :func:`~vimss_cli.media.channel_peaks` observer: pushes pass ``i``'s blocks into
    ``listeners[i]`` (if any) and sums them, to tell a DC offset (:meth:`offset_warnings`)
    of a pass of at least ``minimum`` samples (pass ``i`` is channel ``i + 1`` when
    ``per_channel``, else the mono downmix)."""

    def __init__(
        self, listeners: list[RecordingListener] | None, minimum: int, per_channel: bool = False
    ) -> None:
        self.listeners = listeners or []
        self.minimum = minimum
        self.per_channel = per_channel
        self.sums: dict[int, float] = {}
        self.counts: dict[int, int] = {}

    def __call__(self, index: int, block: np.ndarray) -> None:
        if self.listeners:
            self.listeners[index].push(block)
        self.sums[index] = self.sums.get(index, 0.0) + float(block.sum(dtype=np.float64))
        self.counts[index] = self.counts.get(index, 0) + block.size

    def offset_warnings(self, name: str, peaks: list[float]) -> list[str]:
        """One line naming the passes whose mean is at least :data:`DC_OFFSET_SHARE` of
        their peak (none for a pass shorter than ``minimum``: a few cycles of a low note
        have a mean of their own)."""
        offsets = {}
        for index, peak in enumerate(peaks):
            count = self.counts.get(index, 0)
            mean = self.sums.get(index, 0.0) / max(count, 1)
            if count >= self.minimum and peak > 0.0 and abs(mean) >= DC_OFFSET_SHARE * peak:
                offsets[index] = abs(mean) / peak
        if not offsets:
            return []
        shares = ", ".join(
            (f"channel {index + 1}: " if self.per_channel else "") + f"{share:.0%} of its peak"
            for index, share in offsets.items()
        )
        return [
            f"{name} has a DC offset ({shares}): it costs separation and leaks into the "
            "stems; remove it first (e.g. ffmpeg -i IN -af highpass=f=10 OUT.wav)"
        ]


class _InputAtRate:
    """The rest stem at the stems' own rate: the input's channels read there, in step with
    the stems being written, ``gain`` times the input minus the players' stems."""

    def __init__(self, sound: Path, rate: int, channels: int, gain: float) -> None:
        only = range(channels) if channels > 1 else [None]  # one: the downmix, as the stems'
        self._streams = [AudioStream(sound, rate, channel=c) for c in only]
        self._channels = [_SampleQueue(iter(stream)) for stream in self._streams]
        self._gain = np.float32(gain)

    def add(self, stems: np.ndarray) -> np.ndarray:
        """``(K, n, C)`` stems -> ``(K + 1, n, C)``: the same, then the next ``n`` samples of
        the input (times the gain) minus their sum."""
        count = stems.shape[1]
        mixture = np.stack([channel.take(count) for channel in self._channels], axis=1)
        rest = mixture * self._gain - stems.sum(axis=0)
        return np.concatenate([stems, rest[None].astype(np.float32)])

    def close(self) -> None:
        for stream in self._streams:
            stream.close()


#: The shortest input separated at another rate than the model's (seconds): ffmpeg's
#: resampler gives nothing at all for a file of a millisecond or so (its filter's delay is
#: longer). At the model's own rate any length is separated.
MIN_INPUT_SECONDS = 0.01


def check_long_enough(info: MediaInfo, model_rate: int) -> None:
    """Refuse (:class:`InputError`) an input at another rate than ``model_rate`` whose
    header states fewer samples than :data:`MIN_INPUT_SECONDS` (without a header's count,
    the decoder tells an input it resampled to nothing)."""
    frames, rate = info.audio_frames, info.audio_sample_rate
    if not rate or rate == model_rate:
        return
    if frames and frames < MIN_INPUT_SECONDS * rate:
        raise InputError(
            f"{info.path} is too short to separate: {frames} sample{'s' * (frames != 1)} "
            f"({1000 * frames / rate:.2f} ms at {rate} Hz; at another rate than the model's "
            f"{model_rate} Hz, at least {MIN_INPUT_SECONDS} s)"
        )


def sound_length_warnings(info: MediaInfo, seconds: float) -> list[str]:
    """A warning when a video's sound ends well before the file does (by more than 0.5 s and
    5 %): a file cut short (an interrupted copy whose index came first decodes without an
    error) or a sound that stops early. An audio file's own length is checked by the
    decoder, against its header."""
    stated = info.duration
    if not info.has_video or stated is None or info.duration_is_estimate:
        return []
    if seconds >= 0.95 * stated - 0.5:
        return []
    # a sound that starts late (after the picture) ends with the file all the same
    late = first_audio_time(info.path, info.audio_index) - (info.start or 0.0)
    ends = late + seconds
    if ends >= 0.95 * stated - 0.5:
        return []
    return [
        f"{info.path.name}: its sound ends at {ends:.1f} s but the file lasts {stated:.1f} s; "
        "is the file cut short? (the stems end with the sound)"
    ]


#: Samples per scratch file read when interleaving the stems of several channels.
MERGE_BLOCK = 1 << 16


#: The longest window ``--tile`` may ask for (output samples; 47.6 s at 22.05 kHz). Any tile
#: gives the same stems; a window costs about 1 kB of memory per output sample and player
#: (measured: a 2,000,000-sample tile for two players peaked at 4 GB), and beyond the planner's
#: tiles (2**16 on the CPU, 2**18 on CUDA) nothing is gained.
MAX_TILE = 2**20
#: The most windows ``--batch-size`` may run per forward pass...
MAX_BATCH_SIZE = 64
#: ... and the most output samples one pass may hold, ``batch_size * tile``: 16 windows of
#: the CUDA tile (``scripts/device_bench.py``'s batch), about 4 GB per player.
MAX_SAMPLES_PER_PASS = 2**22


def check_queries(queries: object) -> None:
    """Refuse anything but a non-empty list of :class:`~vimss_cli.conditioning.Query`.

    Raises:
        InputError: no queries, more than :data:`~vimss_cli.instruments.MAX_PLAYERS`, or one
            that is not a ``Query`` (``Query("vn")``, not ``"vn"``).
    """
    if not isinstance(queries, list | tuple) or not queries:
        raise InputError("nothing to separate: give one Query per player, e.g. [Query('vn')]")
    if len(queries) > MAX_PLAYERS:
        raise InputError(f"at most {MAX_PLAYERS} players at once, got {len(queries)}")
    for index, query in enumerate(queries, start=1):
        if not isinstance(query, Query):
            raise InputError(
                f"player {index} is {query!r}, not a Query: write Query({query!r}) for an "
                "instrument code"
            )


def _level_progress(
    progress: ProgressCallback | None, input_path: Path, total: float | None
) -> Callable[[float], None] | None:
    """The events of the first pass over an input, which finds its peak
    (:func:`input_levels`): ``{"input", "stage": "level", "done_seconds", "total_seconds"}``,
    so that an hour-long input shows progress before its separation starts."""
    if progress is None:
        return None

    def report(done_seconds: float) -> None:
        progress(
            {
                "input": str(input_path),
                "stage": "level",
                "done_seconds": done_seconds,
                "total_seconds": total,
            }
        )

    return report


def check_window_options(tile: int | None, batch_size: int | None) -> None:
    """Refuse a ``--tile`` or ``--batch-size`` outside what a machine can hold.

    Raises:
        InputError: either not a whole number, below 1 or above :data:`MAX_TILE` /
            :data:`MAX_BATCH_SIZE`, or both given with a product above
            :data:`MAX_SAMPLES_PER_PASS`.
    """
    for name, value in (("--batch-size", batch_size), ("--tile", tile)):
        whole = isinstance(value, int | np.integer) and not isinstance(value, bool)
        if value is not None and not whole:
            raise InputError(f"{name} takes a whole number, got {value!r}")
    if batch_size is not None and not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InputError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
    if tile is not None and not 1 <= tile <= MAX_TILE:
        raise InputError(
            f"--tile must be between 1 and {MAX_TILE} samples, got {tile} (any tile gives the "
            "same stems; a longer window only needs more memory)"
        )
    if tile is not None and batch_size is not None and tile * batch_size > MAX_SAMPLES_PER_PASS:
        raise InputError(
            f"--tile {tile} with --batch-size {batch_size} puts {tile * batch_size} samples "
            f"in one pass, more than {MAX_SAMPLES_PER_PASS}; lower one of them"
        )


class Separator:
    """A loaded model on a device, ready to separate.

    Args:
        model: bundled name, ``default``, a ``.safetensors`` path or ``hf:OWNER/REPO...``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``, ``fp16`` (CUDA) or ``bf16``.
        batch_size: windows per forward pass. 1, the default, streams the windows: each
            layer computes its context once (``model.StreamState``). More runs independent
            windows side by side, each recomputing its context; the output is the same.
        tile: output samples per window; ``None`` plans it for the machine and the number of
            players (``engine.plan_tile``) and, where the input's length is known, made even
            over it (``engine.even_tile``).
        refine: split the mixture's spectrum among the stems by soft masks made from them
            (:mod:`vimss_cli.soft_masks`); ``False`` gives the network's own output.
        harmonic: with ``refine``, sharpen the masks at the harmonics of each stem's pitch in
            its instrument's range (harmonic masks); ``False``: plain soft masks.
        templates: with harmonic masks, blend in the harmonic templates learnt on the
            recording (:mod:`vimss_cli.template_masks`, ``soft_masks.TEMPLATE_BLEND`` of each
            heard-once stem; the stems then leave up to about 32 s later); ``False``: the
            harmonic masks alone.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL_ALIAS,
        device: str = "auto",
        precision: str = "fp32",
        batch_size: int | None = None,
        tile: int | None = None,
        refine: bool = True,
        harmonic: bool = True,
        templates: bool = True,
    ) -> None:
        if not isinstance(model, str | Path):
            raise InputError(
                f"model must be a bundled name, a .safetensors path or hf:OWNER/REPO, got {model!r}"
            )
        self.device = resolve_device(device)
        self.precision = check_precision(precision, self.device)
        check_window_options(tile, batch_size)
        self.batch_size = 1 if batch_size is None else int(batch_size)
        self.tile = None if tile is None else int(tile)
        self.refine = bool(refine)
        self.harmonic = bool(harmonic)
        self.templates = bool(templates)
        if self.refine and self.harmonic:  # a missing file is said now, not after the network
            load_note_classifier()
        self.loaded: LoadedModel = load_model(str(model))
        self.model = self.loaded.model.to(self.device).eval()

    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    def tile_for(self, players: int, length: int | None = None) -> int:
        """Output samples per window for ``players`` queries: ``tile``, or planned; never
        longer than ``length``, the input's samples at the model's rate when known (any tile
        gives the same stems, and a window longer than the input only costs time and memory),
        nor, with ``batch_size`` windows per pass, than :data:`MAX_SAMPLES_PER_PASS` allows."""
        tile = self.tile if self.tile is not None else plan_tile(self.model, players, self.device)
        tile = min(tile, max(1, MAX_SAMPLES_PER_PASS // self.batch_size))
        if length is not None and length > 0:
            tile = min(tile, length)
            if self.tile is None:  # a planned tile: windows of equal size, none mostly empty
                tile = even_tile(tile, length, self.model.total_decimation)
        return tile

    def separate_array(
        self,
        audio: np.ndarray,
        queries: list[Query],
        sample_rate: int | None = None,
        *,
        split: bool = True,
    ) -> np.ndarray:
        """A mixture -> stems ``(K, N)`` at the mixture's rate and length.

        The network hears the mixture scaled to a peak of :data:`NETWORK_PEAK` (-1 dBFS);
        the stems are scaled back to the mixture's level.

        Args:
            audio: ``(N,)`` mono, or ``(N, C)`` with ``C`` channels (soundfile's layout),
                which are averaged (the models are mono).
            sample_rate: the mixture's rate; ``None`` means the model's
                (:attr:`sample_rate`). Another rate is resampled to the model's for the
                network and the stems back to it.

        Raises:
            InputError: an array of another shape, not float, or empty; a rate outside
                1000..384000 Hz.
            NonFiniteAudioError: NaN or infinite samples.
        """
        check_queries(queries)
        given = np.asarray(audio)
        if given.dtype.kind != "f":
            raise InputError(
                f"separate_array takes float samples in [-1, 1], got {given.dtype} (scale "
                "integer samples first, e.g. int16 / 32768)"
            )
        audio = given.astype(np.float32, copy=False)
        if audio.ndim == 2 and 1 <= audio.shape[1] <= 8 and audio.shape[0] > audio.shape[1]:
            audio = audio.mean(axis=1)
        if audio.ndim != 1:
            raise InputError(
                f"separate_array takes a mixture of shape (N,) or (N, channels), got {audio.shape}"
            )
        if audio.size == 0:
            raise InputError("separate_array was given an empty mixture")
        bad = np.flatnonzero(~np.isfinite(audio))
        if bad.size:
            raise NonFiniteAudioError(
                f"the mixture holds NaN or infinite samples (first at sample {int(bad[0])})"
            )
        rate = check_sample_rate(
            self.sample_rate if sample_rate is None else sample_rate, "sample_rate"
        )
        length = audio.size  # the stems' length, whatever the resamplers make of it
        if rate != self.sample_rate:
            audio = _resample(audio, rate, self.sample_rate)
        splitter, heard = self._voice_split_and_heard(queries)
        # the masks hear the whole mixture first, as it is (as separate_file's peak pass)
        listeners = self._listeners(heard, splitter, 1)
        if listeners:
            listeners[0].push(audio)
        # the network hears every mixture at the same peak (at its rate, as separate_file
        # finds it), and its stems get the mixture's level back, as float32 files' do
        divisor = network_divisor(float(np.abs(audio).max()))
        if divisor != 1.0:
            audio = audio / np.float32(divisor)
        stems = _network_array(
            self.model,
            audio,
            heard,
            splitter,
            tile=self.tile_for(len(heard), audio.size) if split else None,
            batch_size=self.batch_size if split else 1,
            precision=self.precision,
        )
        if self._refines(splitter):
            settings = self._mask_settings(heard, splitter)
            if listeners:
                settings["prototypes"] = listeners[0].prototypes()
            stems = refine_on_mixture(stems, audio, listen=False, **settings)
        if splitter is not None:  # one stem per pair of players -> each one's voice
            stems = splitter.split_whole(stems)
        sorter = _voice_sorter(queries, self.sample_rate)
        if sorter is not None:  # voice stems -> the players whose motion they follow
            stems = sorter.sort_whole(stems)
        if rate != self.sample_rate:
            stems = _resample(stems, self.sample_rate, rate)[..., :length]
            if stems.shape[-1] < length:  # a resampler a sample short
                stems = np.pad(stems, ((0, 0), (0, length - stems.shape[-1])))
        return stems * np.float32(divisor) if divisor != 1.0 else stems

    def _voice_split(
        self, queries: list[Query], replay: list[np.ndarray] | None = None
    ) -> VoiceSplitStage | None:
        """The pitch split for players of one instrument queried as voices 1 and 2 of a
        label-only model (:mod:`vimss_cli.pitch_voices`), or ``None``; with ``replay``, one
        that uses another channel's pitch lines."""
        return VoiceSplitStage.for_queries(queries, self.model.config, self.sample_rate, replay)

    def _voice_split_and_heard(
        self, queries: list[Query], replay: list[np.ndarray] | None = None
    ) -> tuple[VoiceSplitStage | None, list[Query]]:
        """:meth:`_voice_split`, and the queries the network then hears (each pitch-split
        pair as one label query)."""
        splitter = self._voice_split(queries, replay)
        return splitter, queries if splitter is None else splitter.network_queries

    def _refines(self, splitter: VoiceSplitStage | None) -> bool:
        """Whether soft masks refine the network's stems: when asked, and not when the one
        stem is the mixture itself (a pitch-split pair that is every player: nothing to
        share)."""
        return self.refine and (splitter is None or not splitter.whole_mixture)

    def _mask_settings(
        self, heard: list[Query], splitter: VoiceSplitStage | None = None
    ) -> dict[str, Any]:
        """:class:`SoftMaskFilter`'s settings for the stems of ``heard`` (the network's, less
        each pitch-split pair's second voice, ``splitter``): their instruments for harmonic
        masks (an unknown one keeps its plain soft share) and how many players each holds,
        or none for plain soft masks. A stem that holds two players' notes (two label
        queries of one instrument, a pitch-split pair's stem) still gets its instrument's
        comb at its stronger pitch: measured better than its soft share, or equal
        (docs/training.md, "Harmonic masks"); it takes no part in the joint pitches."""
        if not self.harmonic:
            return {}
        voices = [1] * len(heard)
        for stem, _, _ in splitter.pairs if splitter is not None else []:
            voices[stem] = 2
        return {
            "instruments": [q.instrument for q in heard],
            "sample_rate": self.sample_rate,
            "voices": voices,
            "templates": TEMPLATE_BLEND if self.templates else 0.0,
        }

    def _listeners(
        self, heard: list[Query], splitter: VoiceSplitStage | None, passes: int
    ) -> list[RecordingListener] | None:
        """The first pass's ears for the refinement of the stems of ``heard``, one per pass
        over the input (:func:`~vimss_cli.soft_masks.timbre_listener`), or ``None`` when it
        listens to nothing."""
        if not self._refines(splitter):
            return None
        settings = self._mask_settings(heard, splitter)
        listeners = [timbre_listener(len(heard), **settings) for _ in range(passes)]
        heard_by = [listener for listener in listeners if listener is not None]
        return heard_by if len(heard_by) == passes else None

    def _refiner(
        self,
        heard: list[Query],
        splitter: VoiceSplitStage | None,
        listener: RecordingListener | None = None,
    ) -> _Refiner | None:
        """The streaming refinement of the stems of ``heard``, or ``None`` (:meth:`_refines`);
        with what ``listener`` heard of the whole input."""
        if not self._refines(splitter):
            return None
        settings = self._mask_settings(heard, splitter)
        if listener is not None:
            settings["prototypes"] = listener.prototypes()
        return _Refiner(len(heard), settings)

    def plan_queries(
        self,
        input_path: str | Path,
        audio_path: str | Path | None = None,
        pitch_voices: bool | None = None,
    ) -> list[Query]:
        """The queries for an input with no instrument list: the instruments of its
        URMP-style name, else the players the video front end finds (with appearance and
        motion when this model takes them). :class:`InputError` for audio with neither.
        With a label model, two players of one instrument are queried as voices 1 and 2, whose
        one stem is split by pitch (``pitch_voices``, as
        :meth:`~vimss_cli.vision.queries.PlayerPlan.queries` takes it: by default in register
        order; ``False``: one shared stem). The plan's warnings (an unknown instrument, a
        doubtful layout, the split) are :meth:`separate_file`'s report's when it plans the
        queries itself (with the default split)."""
        return self._planned(input_path, audio_path, pitch_voices)[0]

    def _planned(
        self,
        input_path: str | Path,
        audio_path: str | Path | None = None,
        pitch_voices: bool | None = None,
    ) -> tuple[list[Query], list[str], float]:
        """:meth:`plan_queries`, with the plan's warnings and the seconds it took."""
        from vimss_cli.media import probe as probe_media
        from vimss_cli.vision.queries import plan_players

        started = time.perf_counter()
        info = probe_media(Path(input_path))
        plan = plan_players(info, None, name_path=None if audio_path is None else Path(audio_path))
        queries = plan.queries(self.model.config, pitch_voices)  # may add warnings of its own
        return queries, list(plan.warnings), time.perf_counter() - started

    def separate_file(
        self,
        input_path: str | Path,
        queries: list[Query] | None,
        out_dir: str | Path,
        *,
        wav_format: str = "wav16",
        split: bool = True,
        force: bool = False,
        progress: ProgressCallback | None = None,
        audio_path: str | Path | None = None,
        like_input: bool = True,
        rest: bool = False,
        sample_rate: int | None = None,
        filename: str = DEFAULT_TEMPLATE,
    ) -> SeparationReport:
        """Separate one media file into ``OUTDIR/<input stem>/<NN>_<instrument>.wav``.

        ``like_input`` (the default, as the CLI's): stems at the input's own sample rate and
        with its channels (each channel separated on its own at the model's rate, the stems
        resampled back), so they drop into the session the input came from; ``False``: mono
        at the model's rate, from ffmpeg's mono downmix (one pass, faster). ``sample_rate``:
        stems at this rate (Hz) with the input's channels, resampled with soxr (implies
        ``like_input``). ``rest``: one more stem,
        ``NN_rest``, the mixture minus the players' stems (what no query claimed), so the
        stems sum to the input. ``filename``: where the stems go in ``out_dir``, a
        :class:`~vimss_cli.stem_names.StemTemplate` text.

        ``queries``: one per player; ``None`` plans them as the CLI does with no ``-i``
        (:meth:`plan_queries`: a URMP-style name, else the players found in the video; the
        plan's warnings open the report's).

        ``audio_path``: read the sound from this file instead (a silent video's own audio,
        such as URMP's ``AuMix_*.wav`` beside its ``Vid_*.mp4``); the stems are still named
        after ``input_path``.

        The stems are written block by block to temporary files and published together at
        the end; on any error or interruption nothing is left behind. Existing stems of the
        input (also an earlier run's with other players) are refused unless ``force``, which
        replaces the whole earlier set.

        The network hears the input at a peak of :data:`NETWORK_PEAK` (a first pass finds
        its peak) and the stems get the input's level back. Nothing is clipped silently: the
        stems of an input beyond full scale (a float file peaking above 1.0) keep its level
        with ``wav_format="float32"``, or are scaled by ``1/peak`` in the integer formats.
        Stem samples an integer format still clips are counted; both are told in the
        report's ``warnings``.
        """
        input_path = Path(input_path)
        plan_warnings: list[str] = []  # those of the players found, when found here
        plan_seconds = 0.0
        if queries is None:
            queries, plan_warnings, plan_seconds = self._planned(input_path, audio_path)
        check_queries(queries)
        check_wav_format(wav_format)
        paths = stem_paths(
            input_path, Path(out_dir), queries, stem_extension(wav_format), filename, rest=rest
        )
        is_stem = stem_matcher(input_path, filename)
        if sample_rate is not None:
            sample_rate = check_sample_rate(sample_rate)
            if not split and sample_rate != self.sample_rate:
                raise InputError(
                    f"--no-split makes mono stems at the model's {self.sample_rate} Hz, not at "
                    f"{sample_rate} Hz; drop one of them"
                )
        entries = input_entries([input_path, Path(audio_path) if audio_path is not None else None])
        check_outputs_free(paths, force, is_stem, entries)
        # the stems' folder is ours from here to the end: a second run into it is refused now
        with FolderLock(paths[0].parent):
            check_outputs_free(paths, force, is_stem, entries)  # again: a run may have ended
            started = time.perf_counter()
            sound = Path(audio_path) if audio_path is not None else input_path
            info = probe(sound)
            rate = info.audio_sample_rate or self.sample_rate
            channels = info.audio_channels or 1
            check_long_enough(info, self.sample_rate)
            like_input = like_input or sample_rate is not None
            target = sample_rate or rate
            like_path = like_input and split and (target != self.sample_rate or channels > 1)
            check_format_rate(wav_format, target if like_path else self.sample_rate)
            check_format_channels(wav_format, channels if like_path else 1)
            warnings = list(plan_warnings)
            if info.has_audio and info.audio_channels is None:
                warnings.append(
                    f"cannot tell how many channels {sound.name}'s audio has: its mono downmix is "
                    "separated and its stems are mono"
                )
            if like_path:  # (the folder lock made OUTDIR, where its scratch goes, if missing)
                done = self._separate_like_input(
                    input_path, sound, info, queries, paths, wav_format, force, progress,
                    started, rest, target, Path(out_dir), is_stem, warnings,
                )  # fmt: skip
                done.players_seconds = plan_seconds
                return done
            if rate != self.sample_rate or channels > 1:
                changes = []
                if channels > 1:
                    changes.append(f"downmixed to mono (the mean of its {channels} channels)")
                if rate != self.sample_rate:
                    changes.append(f"resampled to the model's {self.sample_rate} Hz")
                warnings.append(
                    f"{sound.name} ({rate} Hz, {channels} channel(s)) was "
                    f"{' and '.join(changes)}: so are its stems"
                )
            splitter, heard = self._voice_split_and_heard(queries)
            # the masks' ears, if they listen to the whole input first (in the peak pass)
            listeners = self._listeners(heard, splitter, 1)
            observer = _LevelPassObserver(listeners, self.sample_rate // 2)
            with AudioStream(sound, self.sample_rate) as stream:
                total_hint = stream.duration_hint
                # the network hears the input at NETWORK_PEAK (a first pass finds its peak);
                # the stems get the input's level back (input_levels)
                peaks, length = channel_peaks(
                    sound,
                    self.sample_rate,
                    progress=_level_progress(progress, input_path, total_hint),
                    observe=observer,
                )
                warnings.extend(observer.offset_warnings(sound.name, peaks))
                (divisor,), peak, stem_gain = input_levels(
                    peaks,
                    stream.info.may_exceed_full_scale,
                    wav_format,
                )
                restore = divisor * stem_gain  # gain on the network's output
                blocks: Iterable[np.ndarray] = (
                    stream if divisor == 1.0 else (block / divisor for block in stream)
                )
                remainder = _Rest() if rest else None
                if remainder is not None:
                    blocks = remainder.feed(blocks)
                refiner = self._refiner(heard, splitter, listeners[0] if listeners else None)
                if refiner is not None:
                    blocks = refiner.feed(blocks)
                sorter = _voice_sorter(queries, self.sample_rate)

                def report(done_samples: int) -> None:
                    if progress is not None:
                        progress(
                            {
                                "input": str(input_path),
                                "done_seconds": done_samples / self.sample_rate,
                                "total_seconds": total_hint,
                            }
                        )

                with StemSetWriter(
                    paths,
                    self.sample_rate,
                    wav_format,
                    overwrite=force,
                    is_stem=is_stem,
                    locked=True,
                ) as writer:

                    def write(
                        stems: np.ndarray, refined: bool = False, voiced: bool = False
                    ) -> None:
                        if refiner is not None and not refined:
                            stems = refiner.refine(stems)  # some samples later
                        if splitter is not None and not voiced:
                            stems = splitter.feed(stems)  # a frame later: one per player
                        if remainder is not None:
                            stems = remainder.add(stems)
                        if sorter is not None:  # the rest stem is not sorted: it sums the same
                            stems = sorter.feed(stems)
                        writer.write(stems if restore == 1.0 else stems * np.float32(restore))

                    if split:
                        samples = _network(splitter)(
                            self.model,
                            blocks,
                            heard,
                            write,
                            tile=self.tile_for(len(heard), length),  # the peak pass's count
                            batch_size=self.batch_size,
                            precision=self.precision,
                            progress=report,
                        )
                    else:
                        audio = np.concatenate(list(blocks))
                        write(
                            _network_array(
                                self.model,
                                audio,
                                heard,
                                splitter,
                                tile=None,
                                batch_size=1,
                                precision=self.precision,
                            )
                        )
                        samples = audio.size
                        report(samples)
                    if refiner is not None:
                        write(refiner.finish(), refined=True)
                    if splitter is not None:
                        write(splitter.finish(), refined=True, voiced=True)
                    if sorter is not None:
                        tail = sorter.finish()
                        writer.write(tail if restore == 1.0 else tail * np.float32(restore))
                        warnings.extend(sorter_warnings(sorter, input_path.name))
            warnings.extend(sound_length_warnings(info, samples / self.sample_rate))
            done = self._finish(
                input_path, sound, queries, paths, samples, self.sample_rate, started, peak,
                stem_gain, writer, wav_format, warnings, downmixed=channels > 1,
            )  # fmt: skip
            done.players_seconds = plan_seconds
            return done

    def _separate_like_input(
        self,
        input_path: Path,
        sound: Path,
        info: MediaInfo,
        queries: list[Query],
        paths: list[Path],
        wav_format: str,
        force: bool,
        progress: ProgressCallback | None,
        started: float,
        rest: bool = False,
        target_rate: int | None = None,
        out_dir: Path | None = None,
        is_stem: Callable[[str], bool] = is_stem_name,
        warnings: list[str] | None = None,
    ) -> SeparationReport:
        """:meth:`separate_file` with stems at the input's channels and ``target_rate`` (by
        default the input's rate); ``warnings`` already found go into its report.

        Each channel is separated on its own at the model's rate into scratch files beside the
        output folder (removed afterwards, whatever happens); the stems are then resampled
        (soxr, streaming) and interleaved into the final set, block by block, so memory stays
        bounded whatever the length.
        """
        import tempfile

        import soundfile
        import soxr

        input_rate = info.audio_sample_rate or self.sample_rate
        rate, channels = target_rate or input_rate, info.audio_channels or 1
        players = len(queries)  # stems separated per channel (the rest is made at the end)
        # each channel's masks hear that channel first (in the peak pass), if they listen
        first_split, first_heard = self._voice_split_and_heard(queries)
        listeners = self._listeners(first_heard, first_split, channels)
        observer = _LevelPassObserver(listeners, self.sample_rate // 2, channels > 1)
        # each channel is separated as if alone, heard at NETWORK_PEAK (input_levels)
        peaks, length = channel_peaks(
            sound,
            self.sample_rate,
            channels if channels > 1 else None,
            _level_progress(progress, input_path, info.duration),
            observe=observer,
        )
        divisors, peak, stem_gain = input_levels(
            peaks,
            info.may_exceed_full_scale,
            wav_format,
        )
        restore = np.asarray(divisors, np.float32) * np.float32(stem_gain)  # (C,)
        out_dir = out_dir or paths[0].parent.parent
        # scratch writes that fail (a full disk) say so in one line, naming the stems' folder
        stem_folder = paths[0].parent
        with scratch_writes(stem_folder):
            out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_scratch(out_dir)
            scratch_folder = tempfile.TemporaryDirectory(dir=out_dir, prefix=scratch_prefix())
        decided: list[list[tuple[int, ...]]] | None = None  # the voice owners of channel 0
        lines: list[np.ndarray] | None = None  # and the pitch lines of its split pairs
        warnings = [*(warnings or []), *observer.offset_warnings(sound.name, peaks)]
        with scratch_folder as scratch:
            parts: list[Path] = []  # channel-major: channel c, stem k at c * players + k
            for channel in range(channels):
                files = [Path(scratch) / f"{channel}_{k}.wav" for k in range(players)]
                parts.extend(files)
                with scratch_writes(stem_folder):
                    handles = [
                        soundfile.SoundFile(f, "w", self.sample_rate, 1, "FLOAT") for f in files
                    ]
                try:
                    # one channel: the downmix, which is that channel, or all of a layout
                    # whose channels ffmpeg did not name
                    only = channel if channels > 1 else None
                    with AudioStream(sound, self.sample_rate, channel=only) as stream:
                        total = stream.duration_hint

                        def report(done: int, channel: int = channel, total=total) -> None:
                            if progress is not None:
                                seconds = done / self.sample_rate
                                progress(
                                    {
                                        "input": str(input_path),
                                        "done_seconds": (channel * (total or seconds) + seconds)
                                        / channels,
                                        "total_seconds": total,
                                    }
                                )

                        # every channel's voice stems go to the players the first one's did
                        sorter = _voice_sorter(queries, self.sample_rate, decided)

                        # and every channel's pairs are split along the first one's lines
                        splitter, heard = self._voice_split_and_heard(queries, lines)
                        refiner = self._refiner(
                            heard, splitter, listeners[channel] if listeners else None
                        )

                        def write(
                            stems: np.ndarray,
                            handles=handles,
                            sorter=sorter,
                            refiner=refiner,
                            splitter=splitter,
                            refined: bool = False,
                        ) -> None:
                            if refiner is not None and not refined:
                                stems = refiner.refine(stems)  # on this channel's mixture
                            if splitter is not None:
                                stems = splitter.feed(stems)
                            if sorter is not None:
                                stems = sorter.feed(stems)
                            with scratch_writes(stem_folder):
                                for handle, stem in zip(handles, stems, strict=True):
                                    handle.write(stem)

                        blocks: Iterable[np.ndarray] = (
                            stream
                            if divisors[channel] == 1.0
                            else (b / divisors[channel] for b in stream)
                        )
                        if refiner is not None:
                            blocks = refiner.feed(blocks)
                        _network(splitter)(
                            self.model,
                            blocks,
                            heard,
                            write,
                            tile=self.tile_for(len(heard), length),  # the peak pass's count
                            batch_size=self.batch_size,
                            precision=self.precision,
                            progress=report,
                        )
                        if refiner is not None:
                            write(refiner.finish(), refined=True)
                        if splitter is not None:
                            write(splitter.finish(), splitter=None, refined=True)
                            lines = lines or splitter.lines
                        if sorter is not None:
                            write(sorter.finish(), sorter=None, splitter=None, refined=True)
                            decided = decided or sorter.owners
                            if channel == 0:
                                warnings.extend(sorter_warnings(sorter, input_path.name))
                finally:
                    with scratch_writes(stem_folder):
                        for handle in handles:
                            handle.close()
            expected = info.audio_frames  # the input's own length, when its header tells it
            if expected is not None and rate != input_rate:
                expected = round(expected * rate / input_rate)
            elif expected is None and rate != self.sample_rate:
                # no header to tell it (m4a, mp3, webm...): resampled stems would miss the
                # input's length at their rate by a sample or so; a decoding pass counts it
                expected = count_frames(sound, rate)
            readers = [soundfile.SoundFile(part) for part in parts]
            resampler = (
                soxr.ResampleStream(self.sample_rate, rate, len(parts), dtype="float32")
                if rate != self.sample_rate
                else None
            )
            written = 0
            # the rest is the input at the stems' rate minus the players' stems there (made at
            # the model's rate and resampled, it would miss what that rate cannot hold)
            mixture = _InputAtRate(sound, rate, channels, stem_gain) if rest else None
            try:
                with StemSetWriter(
                    paths,
                    rate,
                    wav_format,
                    overwrite=force,
                    is_stem=is_stem,
                    channels=channels,
                    locked=True,  # by separate_file, for the whole run
                ) as writer:
                    while True:
                        columns = [r.read(MERGE_BLOCK, dtype="float32") for r in readers]
                        last = len(columns[0]) < MERGE_BLOCK
                        block = np.stack(columns, axis=1)
                        if resampler is not None:
                            block = resampler.resample_chunk(block, last=last)
                        if expected is not None:
                            block = block[: max(0, expected - written)]
                        # (n, C * K) channel-major -> (K, n, C)
                        stems = block.reshape(len(block), channels, players).transpose(2, 0, 1)
                        stems = stems * restore  # each channel's own gain
                        writer.write(stems if mixture is None else mixture.add(stems))
                        written += len(block)
                        if last:
                            break
                    if expected is not None and written < expected:
                        padding = np.zeros((players, expected - written, channels), np.float32)
                        writer.write(padding if mixture is None else mixture.add(padding))
                        written = expected
            finally:
                for reader in readers:
                    reader.close()
                if mixture is not None:
                    mixture.close()
        warnings.extend(sound_length_warnings(info, written / rate))
        return self._finish(
            input_path, sound, queries, paths, written, rate, started, peak, stem_gain,
            writer, wav_format, warnings,
        )  # fmt: skip

    def _finish(
        self,
        input_path: Path,
        sound: Path,
        queries: list[Query],
        paths: list[Path],
        samples: int,
        rate: int,
        started: float,
        peak: float,
        stem_gain: float,
        writer: StemSetWriter,
        wav_format: str,
        warnings: list[str],
        downmixed: bool = False,
    ) -> SeparationReport:
        """The report of one separated input, with what was scaled or clipped told
        (``peak``: of the input's mono downmix when ``downmixed``, else of its loudest
        channel)."""
        if peak > 1.0 and stem_gain != 1.0:
            downmix = "'s mono downmix" if downmixed else ""
            warnings.append(
                f"{sound.name}{downmix} peaks at {peak:.2f}, beyond full scale: its {wav_format} "
                f"stems are scaled by 1/{peak:.2f} to fit (--format float32 keeps its level)"
            )
        bits = INTEGER_BITS.get(WAV_FORMATS[wav_format])
        quiet = bits is not None and 0.0 < peak * stem_gain < QUIET_STEPS / 2 ** (bits - 1)
        if samples and quiet:
            warnings.append(
                f"{sound.name} peaks at {20 * np.log10(peak * stem_gain):.0f} dBFS, too quiet "
                f"for {wav_format}: its stems hold little but rounding noise (--format float32 "
                "keeps them whole)"
            )
        elif samples and writer.peak == 0.0:
            warnings.append(
                f"{sound.name}: every stem is pure silence (the input is silent, or too quiet "
                "for the model to hear anything)"
            )
        if writer.clipped_samples:
            warnings.append(
                f"{writer.clipped_samples} samples of the stems in {paths[0].parent} were beyond "
                f"full scale (peak {writer.peak:.2f}) and were clipped to fit {wav_format} "
                "(--format float32 keeps them)"
            )
        return SeparationReport(
            input=input_path,
            samples=samples,
            sample_rate=rate,
            wall_seconds=time.perf_counter() - started,
            stems=_stem_reports(queries, paths),
            input_peak=peak if peak > 1.0 else None,
            stem_gain=stem_gain,
            clipped_samples=writer.clipped_samples,
            warnings=warnings,
        )
