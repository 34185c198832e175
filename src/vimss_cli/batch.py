"""Separating a batch of inputs as ``vimss separate`` does, from Python.

Everything that needs no model is checked first (the options, the inputs' names, each input
probed, earlier stems), then who plays in each input is decided, then the model loads once
and each input is separated in turn. With ``keep_going`` an input that fails is told and
left out instead of ending the batch.

Example::

    from pathlib import Path

    from vimss_cli.batch import BatchOptions, separate_inputs

    options = BatchOptions(out_dir=Path("stems"), instruments=["vn,vc"])
    report = separate_inputs([Path("duet.wav")], options)
    print(report.to_json())

Nothing here prints: warnings, notes, failures and progress go to a :class:`BatchEvents`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vimss_cli.api import (
    SAMPLE_RATES,
    SeparationReport,
    Separator,
    check_outputs_free,
    check_window_options,
    existing_stems,
    input_entries,
    output_folder_name,
    stem_matcher,
    stem_paths,
)
from vimss_cli.checkpoint import DEFAULT_MODEL_ALIAS
from vimss_cli.conditioning import Query
from vimss_cli.errors import (
    InputError,
    NoAudioStreamError,
    OutputError,
    OutputsExistError,
    VimssError,
)
from vimss_cli.media import MediaInfo, check_input_path, probe
from vimss_cli.progress import BatchEvents, ProgressCallback
from vimss_cli.stem_names import DEFAULT_TEMPLATE, StemTemplate
from vimss_cli.stem_writer import (
    check_format_channels,
    check_format_rate,
    check_output_folder,
    check_wav_format,
    ensure_writable_directory,
    missing_folders,
    remove_empty_folders,
    stem_extension,
)
from vimss_cli.vision.analysis import STILL_SECONDS, lengths_disagree
from vimss_cli.vision.frames import stream_duration
from vimss_cli.vision.queries import (
    AUTO,
    PlayerPlan,
    check_named_players,
    check_strict,
    check_who_plays,
    checked_instrument_list,
    describe_plan,
    plan_players,
)

T = TypeVar("T")

#: An ``--out`` ending so is warned about: a user may think it names one output file.
_MEDIA_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aiff", ".mp4", ".mov", ".mkv")
R = TypeVar("R")


@dataclass
class BatchOptions:
    """How to separate a batch; the defaults are those of ``vimss separate``.

    Attributes:
        instruments: the players' instrument codes left to right (``"vn,vc"``, or ``"auto"``
            to find them in the video): one entry for every input, or one per input.
        players, boxes: hints for finding the players in a video.
        audio: the sound of a silent video (a batch of one input).
        strict: every doubt about the players is an error.
        pitch_voices: with a label model, the stem of two players of one instrument is split
            into its upper and lower voice (:mod:`vimss_cli.pitch_voices`): ``None``, in
            register order (or by a generated video's true keypoints); ``True``, from a video
            given to the players by their motion;
            ``False``: not split, the two stems are the same
            (:meth:`~vimss_cli.vision.queries.PlayerPlan.queries`).
        split: ``False`` runs one pass over the whole input (an engine check).
        refine: soft masks on the mixture refine the stems (``Separator``'s ``refine``).
        harmonic: the masks are sharpened at each stem's pitch harmonics (``Separator``'s
            ``harmonic``).
        templates: harmonic templates learnt on the recording are blended in (``Separator``'s
            ``templates``).
        like_input, sample_rate: the stems' rate: the input's own rate and channels
            (``like_input``, ``sample_rate`` ``None``), ``sample_rate`` Hz with the input's
            channels, or mono at the model's rate (``like_input`` ``False``); see
            :func:`parse_sample_rate`.
        rest: also write the mixture minus the players' stems.
        filename: the stems' file name template (:mod:`vimss_cli.stem_names`).
        listening_report: also write an HTML page to hear the stems beside them.
        skip_existing: leave out inputs whose stems asked for are already there (any earlier
            set when the players are not given: found in a video, or named by the file).
        keep_going: go on with the other inputs when one fails.
    """

    out_dir: Path = Path("separated")
    instruments: list[str] | None = None
    players: int | None = None
    boxes: str | None = None
    audio: Path | None = None
    strict: bool = False
    pitch_voices: bool | None = None
    model: str = DEFAULT_MODEL_ALIAS
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int | None = None
    tile: int | None = None
    wav_format: str = "wav16"
    split: bool = True
    refine: bool = True
    harmonic: bool = True
    templates: bool = True
    force: bool = False
    like_input: bool = True
    sample_rate: int | None = None
    rest: bool = False
    filename: str = DEFAULT_TEMPLATE
    listening_report: bool = False
    skip_existing: bool = False
    keep_going: bool = False


@dataclass
class PlannedInput:
    """An input that passed the checks: its path, its instruments, what probing found."""

    path: Path
    instruments: str | None
    info: MediaInfo


@dataclass
class BatchReport:
    """What a batch did: the model that ran (``None`` when none loaded: every input skipped
    or failed), one report per separated input, and one line per input left out."""

    model: str | None = None
    device: str | None = None
    precision: str | None = None
    #: whether soft masks refined the stems (``None`` when no model loaded)
    refined: bool | None = None
    #: whether the masks were harmonic (``None`` when no model loaded)
    harmonic: bool | None = None
    #: whether harmonic templates were blended in (``None`` when no model loaded)
    templates: bool | None = None
    inputs: list[SeparationReport] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: the inputs left out because their stems exist (``skip_existing``)
    skipped: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """What ``vimss separate --json`` prints."""
        return {
            "model": self.model,
            "device": self.device,
            "precision": self.precision,
            "refined": self.refined,
            "harmonic": self.harmonic,
            "templates": self.templates,
            "inputs": [report.to_json() for report in self.inputs],
            "failures": list(self.failures),  # "INPUT: error", those left out (--keep-going)
            "skipped": [str(path) for path in self.skipped],  # --skip-existing
        }


def parse_sample_rate(text: str | None, model_rate: bool = False) -> tuple[bool, int | None]:
    """``--sample-rate`` (``input``, ``model`` or Hz; and the deprecated ``--model-rate``) ->
    (:attr:`BatchOptions.like_input`, :attr:`BatchOptions.sample_rate`)."""
    choice = "model" if model_rate and text is None else (text or "input").strip().lower()
    if model_rate and choice != "model":
        raise InputError(f"--model-rate means --sample-rate model, not {text}; give one of them")
    if choice in ("input", "model"):
        return choice == "input", None
    if not choice.isdecimal() or int(choice) not in SAMPLE_RATES:
        raise InputError(
            f"--sample-rate takes input, model or a whole number of Hz from "
            f"{SAMPLE_RATES.start} to {SAMPLE_RATES.stop - 1} (e.g. 48000), got {text!r}"
        )
    return True, int(choice)


def plan_inputs(
    inputs: Sequence[Path], options: BatchOptions | None = None, events: BatchEvents | None = None
) -> list[PlannedInput]:
    """Check the options and every input before any model loads (:meth:`Batch.plan_inputs`)."""
    return Batch(inputs, options, events).plan_inputs()


def separate_inputs(
    inputs: Sequence[Path], options: BatchOptions | None = None, events: BatchEvents | None = None
) -> BatchReport:
    """Separate every input into one stem per player (:meth:`Batch.run`)."""
    return Batch(inputs, options, events).run()


class Batch:
    """One run over ``inputs``; :attr:`failures` collects the inputs left out (``keep_going``)."""

    def __init__(
        self,
        inputs: Sequence[Path],
        options: BatchOptions | None = None,
        events: BatchEvents | None = None,
    ) -> None:
        self.inputs = [Path(path) for path in inputs]
        self.options = options or BatchOptions()
        #: what no stem may replace: every input and ``--audio`` (api.input_entries)
        self._input_entries = input_entries([*self.inputs, self.options.audio])
        self.events = events or BatchEvents()
        self.failures: list[str] = []
        self.skipped: list[Path] = []
        #: inputs not skipped (``skip_existing``) whose folder holds other stems than asked
        self._other_stems: set[Path] = set()
        #: whether any input has a picture (what the phases are called)
        self._videos = False

    def plan_inputs(self) -> list[PlannedInput]:
        """The inputs to separate, each probed, after every check that needs no model: the
        options, the inputs' names, ``audio``, the number of ``instruments``, an audio stream
        in each input, its earlier stems (refused unless ``force``, left out with
        ``skip_existing``)."""
        self._check_options()
        return self._each(self._jobs(), self._probe)

    def run(self) -> BatchReport:
        """Plan, load the model once, separate each input; the listening reports last."""
        checked = self.plan_inputs()
        self._videos = any(planned.info.has_video for planned in checked)
        with self.events.phase("finding the players" if self._videos else "reading the inputs"):
            plans = self._each(checked, self._plan_players)
        self._warn(line for plan in plans for line in plan.warnings)
        report = BatchReport(failures=self.failures, skipped=self.skipped)
        done = self._separate(plans, report) if plans else []
        report.inputs = [result for _, result in done]
        self._warn(line for result in report.inputs for line in result.warnings)
        for plan, result in done:  # each input's report (--json) says what was doubted too
            result.warnings[:0] = [line for line in plan.warnings if line not in result.warnings]
        if self.options.listening_report:
            written = self._each(done, self._write_listening_report)
            for path in written:
                self.events.note(f"listening report in {path}")
        return report

    def _write_listening_report(self, item: tuple[PlayerPlan, SeparationReport]) -> Path:
        """One input's listening report; a failure says that its stems are written."""
        plan, result = item
        try:
            return write_listening_report(plan, result, self.options)
        except VimssError as error:
            error.args = (f"{error} (the stems of {result.input.name} are written; only the "
                          "listening report is missing)",)  # fmt: skip
            raise

    def _check_options(self) -> None:
        o, count = self.options, len(self.inputs)
        check_window_options(o.tile, o.batch_size)
        if o.skip_existing and o.force:
            raise InputError(
                "--skip-existing keeps earlier stems and --force replaces them: give one"
            )
        check_output_folder(o.out_dir)
        if o.out_dir.suffix.lower() in _MEDIA_SUFFIXES and not o.out_dir.exists():
            self.events.warning(
                f"--out {o.out_dir} looks like a file's name, but it names the output folder: "
                f"the stems go into {o.out_dir / '<input>'}"
            )
        check_wav_format(o.wav_format)
        if o.sample_rate is not None:
            check_format_rate(o.wav_format, o.sample_rate)
        template = StemTemplate(o.filename)  # checked before any file is read
        if count > 1 and not template.names_input:
            raise InputError(
                f"--filename {o.filename!r} has no {{input}}: the stems of {count} inputs "
                "would share names"
            )
        by_folder: dict[str, Path] = {}
        for path in self.inputs:
            folder = output_folder_name(path)
            if folder in by_folder:
                clash = by_folder[folder]
                raise InputError(
                    f"{path} is given twice"
                    if clash == path
                    else f"{clash} and {path} share a file name stem: their stems would go to "
                    "one folder; separate them in two runs (or rename one)"
                )
            by_folder[folder] = path
        self._refuse_overlapping_stems(template)
        if o.audio is not None:
            if count != 1:
                raise InputError(f"--audio gives the sound of one input, not {count}")
            check_input_path(o.audio)
            if not probe(o.audio).has_audio:
                raise NoAudioStreamError(f"--audio {o.audio} has no audio stream")
        if o.instruments and len(o.instruments) not in (1, count):
            raise InputError(
                f"give -i once for every input or once per input: {len(o.instruments)} -i for "
                f"{count} input{'' if count == 1 else 's'}"
            )
        for given in o.instruments or []:  # before earlier stems can hide a typo
            if given is not None and given.strip().lower() != AUTO:
                checked_instrument_list(given)

    def _jobs(self) -> list[tuple[Path, str | None]]:
        """Each input with its instruments, less those skipped as done (``skip_existing``)."""
        o = self.options
        given: list[str | None] = list(o.instruments) if o.instruments else [None]
        jobs = [(path, given[j % len(given)]) for j, path in enumerate(self.inputs)]
        if not o.skip_existing or o.force:
            return jobs
        kept = []
        for path, codes in jobs:
            existing = existing_stems(path, o.out_dir, o.filename)
            asked = self._asked_stems(path, codes)
            if existing and (asked is None or all(stem.is_file() for stem in asked)):
                self.events.note(f"{path}: stems exist, skipped")
                self.skipped.append(path)
                continue
            if existing:  # other stems than those asked for: refused in _probe
                self._other_stems.add(path)
            kept.append((path, codes))
        return kept

    def _refuse_overlapping_stems(self, template: StemTemplate) -> None:
        """Refuse, before any work, a template under which a stem of one input could be
        named as a stem of another (``{input}{instrument}``: ``a`` + ``tbn`` is ``at`` +
        ``bn``; ``{input:.1}``: one folder for ``a`` and ``at``): the second input's run
        would replace, or with ``force`` delete as its earlier set, the first's stems."""
        owners: dict[Path, Path] = {}  # each name an input's run could write -> that input
        for path in self.inputs:
            name = output_folder_name(path)
            folder = template.folder(self.options.out_dir, name)
            for stem in (folder / file_name for file_name in template.stem_names(name)):
                first = owners.setdefault(stem, path)
                if first != path:
                    raise InputError(
                        f"--filename {self.options.filename!r} could name a stem of {first} and "
                        f"one of {path} alike ({stem}): one run would replace or delete the "
                        "other's; keep the inputs apart, e.g. with '_' after {input}"
                    )

    def _asked_stems(self, path: Path, codes: str | None) -> list[Path] | None:
        """The stems an input's run would write when its instruments are given (``None``
        when they come from its video or name, unknown before it is looked at)."""
        if codes is None or codes.strip().lower() == AUTO:
            return None
        return self._stem_paths(path, [Query(code) for code in checked_instrument_list(codes)])

    def _stem_paths(self, path: Path, queries: list[Query]) -> list[Path]:
        """The stems an input's run writes for ``queries``, in this run's format."""
        o = self.options
        extension = stem_extension(o.wav_format)
        return stem_paths(path, o.out_dir, queries, extension, o.filename, rest=o.rest)

    def _probe(self, job: tuple[Path, str | None]) -> PlannedInput:
        # probe before loading the model, so bad files fail before a long run
        path, codes = job
        o = self.options
        check_named_players(codes, o.players)  # argument mistakes first
        info = probe(path)
        if o.audio is not None and not info.has_video:
            raise InputError(
                f"--audio gives the sound of a video, and {info.path} has no picture; "
                f"separate {o.audio} itself"
            )
        if not info.has_audio and o.audio is None:
            if info.still_image:
                raise NoAudioStreamError(
                    f"{info.path} is a picture with no sound; separate an audio or video file, "
                    "or give its sound with --audio FILE"
                )
            if info.has_video:
                raise NoAudioStreamError(
                    f"{info.path} is a video with no audio stream; give its sound with "
                    "--audio FILE (for URMP, the piece's AuMix_*.wav)"
                )
            raise NoAudioStreamError(f"{info.path} is a file with no audio stream")
        if (
            o.like_input
            and not (o.sample_rate or not o.split or o.audio)
            and info.audio_sample_rate
        ):
            check_format_rate(o.wav_format, info.audio_sample_rate)  # stems at its rate
        if o.like_input and o.split and not o.audio and info.audio_channels:
            check_format_channels(o.wav_format, info.audio_channels)  # and its channels
        # a mistake in saying who plays first, then earlier stems (before a long analysis)
        check_who_plays(info, codes, o.players, o.boxes, o.audio)
        try:
            check_outputs_free(
                stem_paths(info.path, o.out_dir, [Query(None)], filename=o.filename),
                o.force,
                stem_matcher(info.path, o.filename),
                self._input_entries,
            )
        except OutputsExistError as error:
            if path in self._other_stems:
                error.args = (f"{error}; --skip-existing passes over an input only when "
                              "the stems asked for are all there",)  # fmt: skip
            raise
        return PlannedInput(path, codes, info)

    def _plan_players(self, planned: PlannedInput) -> PlayerPlan:
        o = self.options
        started = time.perf_counter()
        plan = plan_players(planned.info, planned.instruments, o.players, o.boxes, o.audio)
        plan.seconds += time.perf_counter() - started
        paths = self._stem_paths(plan.path, plan.label_queries())
        check_outputs_free(paths, o.force, stem_matcher(plan.path, o.filename), self._input_entries)
        if o.listening_report:  # a page of the user's is not replaced either
            page = report_path(self.options, plan.path)
            if page.is_dir():
                raise OutputError(f"cannot write the report {page}: a folder of that name is there")
            if page.exists() and not o.force:
                raise OutputError(f"outputs already exist: {page} (use --force to replace it)")
        if o.audio is not None and planned.info.has_video:
            plan.warnings.extend(_audio_length_warnings(plan.path, o.audio))
            if planned.info.has_audio:
                plan.notes.append(
                    f"{plan.path.name}'s own sound is not used: --audio {o.audio.name} is "
                    "separated instead"
                )
        streams, index = planned.info.audio_streams, planned.info.audio_index
        if o.audio is None and streams > 1:
            which = "the first" if index == 0 else f"audio stream {index + 1}, marked default,"
            other = 1 if index == 0 else 0
            plan.notes.append(
                f"{plan.path.name} holds {streams} audio streams; {which} is separated (to "
                f"separate another, extract it, e.g. ffmpeg -i IN -map 0:a:{other} OUT.wav, and "
                "pass it with --audio)"
            )
        if o.strict:
            check_strict([plan])
        return plan

    def _separate(
        self, plans: list[PlayerPlan], report: BatchReport
    ) -> list[tuple[PlayerPlan, SeparationReport]]:
        """Load the model, make each plan's queries, separate each input."""
        separator = self._load_model()  # a bad model or device leaves no output folder
        out_dir = self.options.out_dir
        made_here = missing_folders(out_dir)
        ensure_writable_directory(out_dir)
        try:
            report.model, report.device = separator.loaded.name, str(separator.device)
            report.precision = separator.precision
            report.refined = separator.refine
            report.harmonic = separator.refine and separator.harmonic
            report.templates = report.harmonic and separator.templates
            looking = "looking at the players" if self._videos else "making the queries"
            with self.events.phase(looking):
                ready = self._each(plans, lambda plan: (plan, self._queries(plan, separator)))
            for plan, _ in ready:
                for line in [describe_plan(plan), *plan.notes]:
                    if line:
                        self.events.note(line)
            finished: list[tuple[PlayerPlan, SeparationReport]] = []

            def separate(item: tuple[PlayerPlan, list[Query]]) -> None:
                finished.append((item[0], self._separate_one(separator, *item, progress)))

            try:
                with self.events.separating() as progress:
                    self._each(ready, separate)
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM: say which stems are there to keep
                if finished:
                    names = ", ".join(result.input.name for _, result in finished)
                    self.events.warning(
                        f"interrupted after {len(finished)} of {len(plans)} input(s) were "
                        f"separated; their stems are kept: {names}"
                    )
                raise
            return finished
        finally:
            remove_empty_folders(made_here)  # nothing written: leave no empty folder behind

    def _load_model(self) -> Separator:
        o = self.options
        with self.events.phase(f"loading model {o.model}"):
            separator = Separator(
                o.model,
                device=o.device,
                precision=o.precision,
                batch_size=o.batch_size,
                tile=o.tile,
                refine=o.refine,
                harmonic=o.harmonic,
                templates=o.templates,
            )
        if not separator.loaded.trained:
            self.events.warning(
                f"model {separator.loaded.name!r} is untrained (randomly initialised); its stems "
                "are not real separations"
            )
        return separator

    def _queries(self, plan: PlayerPlan, separator: Separator) -> list[Query]:
        shown = len(plan.warnings)
        started = time.perf_counter()
        queries = plan.queries(separator.model.config, pitch_voices=self.options.pitch_voices)
        plan.seconds += time.perf_counter() - started  # the players' motion, from a video
        if self.options.strict:
            check_strict([plan])
        self._warn(plan.warnings[shown:])
        return queries

    def _separate_one(
        self,
        separator: Separator,
        plan: PlayerPlan,
        queries: list[Query],
        progress: ProgressCallback | None,
    ) -> SeparationReport:
        o = self.options
        report = separator.separate_file(
            plan.path,
            queries,
            o.out_dir,
            wav_format=o.wav_format,
            split=o.split,
            force=o.force,
            progress=progress,
            audio_path=o.audio,
            like_input=o.like_input,
            rest=o.rest,
            sample_rate=o.sample_rate,
            filename=o.filename,
        )
        report.players_seconds = plan.seconds
        if o.force:
            self._remove_stale_report(plan.path)
        return report

    def _remove_stale_report(self, input_path: Path) -> None:
        """After ``force`` replaced an input's stems: remove the listening report of the
        stems replaced, a page of ours (``listening_report`` writes a new one once every
        input is done; a later input's failure must not leave the old one beside the new
        stems). Another file of that name is kept: with ``listening_report`` it is replaced
        then, as documented; without, it is warned about."""
        from vimss_cli.listening_report import is_listening_report

        page, writing = report_path(self.options, input_path), self.options.listening_report
        if not page.is_file():
            return
        if not is_listening_report(page):
            if not writing:
                self.events.warning(f"{page} may describe the stems just replaced; it is kept")
            return
        try:
            page.unlink()
        except OSError as error:
            self.events.warning(f"{page} describes the stems just replaced, and cannot be "
                                f"removed: {error.strerror}")  # fmt: skip
            return
        if not writing:
            self.events.note(
                f"removed {page}: it was the listening report of the stems replaced (--report, "
                "or vimss report, makes one of the new stems)"
            )

    def _warn(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.events.warning(line)

    def _each(self, items: list[T], action: Callable[[T], R]) -> list[R]:
        """``action`` on every item; with ``keep_going`` a failing item is told and dropped
        instead of ending the run."""
        done = []
        for item in items:
            try:
                done.append(action(item))
            except VimssError as error:
                if not self.options.keep_going:
                    raise
                name, text = _input_of(item), str(error)
                self.failures.append(text if text.startswith(name) else f"{name}: {text}")
                self.events.failed(error)
        return done


def _audio_length_warnings(video: Path, audio: Path) -> list[str]:
    """A warning when ``--audio`` lasts much longer or shorter than the picture it is paired
    with (the same tolerance as a video's own sound): perhaps another take's sound."""
    picture, sound = stream_duration(video, "v:0"), probe(audio).duration
    if picture is None or sound is None:
        return []
    if picture < STILL_SECONDS < sound:  # as a video's own sound beside a still
        return [
            f"{video.name}: the picture is a still ({picture:.2f} s beside {sound:.1f} s of "
            f"--audio {audio.name}): nobody can be seen playing in it"
        ]
    if not lengths_disagree(picture, sound):
        return []
    return [
        f"{video.name}: the picture lasts {picture:.1f} s but --audio {audio.name} "
        f"{sound:.1f} s; is it this video's sound? (the players are followed on the "
        "picture's clock from the sound's first sample)"
    ]


def _input_of(item: Any) -> str:
    """The input file a step of a batch works on, for naming it in a failure."""
    first = item[0] if isinstance(item, tuple) else item
    return str(getattr(first, "path", first))


def write_listening_report(
    plan: PlayerPlan, result: SeparationReport, options: BatchOptions
) -> Path:
    """``report.html`` beside one input's stems: the mixture, the stems, the players' frame."""
    from vimss_cli.listening_report import Track, read_track, write_report
    from vimss_cli.media import read_audio

    name = output_folder_name(result.input)
    tracks = [read_track(stem.path) for stem in result.stems]
    rate = tracks[0].rate
    tracks.insert(0, Track("mixture", read_audio(options.audio or result.input, rate), rate))
    picture = None
    if plan.analysis is not None:
        from vimss_cli.vision.drawing import players_png

        picture = players_png(plan.analysis)
    return write_report(
        report_path(options, result.input), name, tracks, picture, force=options.force
    )


def report_path(options: BatchOptions, input_path: Path) -> Path:
    """Where an input's listening report goes (:meth:`StemTemplate.report_path`)."""
    return StemTemplate(options.filename).report_path(
        options.out_dir, output_folder_name(input_path)
    )
