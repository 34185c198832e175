"""One configuration for a training run: model, data, optimisation and run settings.

Read from a TOML file with sections ``[model]``, ``[data]``, ``[optim]``, ``[run]``;
``--set section.key=value`` overrides any key. Unknown keys are errors that list the valid
ones, and every value is checked (type and range, in each dataclass's ``__post_init__``)
when the configuration is built, so a bad one fails before a run writes anything. The
resolved configuration is saved in the run folder as ``config.toml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vimss_cli.config_checks import ConfigValueError, check_range, check_types
from vimss_cli.errors import InputError
from vimss_cli.model import ModelConfig
from vimss_cli.training.rooms import MIN_RT60

#: The longest output tile an excerpt may ask for (about 3 minutes at 22.05 kHz; the GPU run
#: uses 65536): 1e8 samples once hung the loader.
MAX_OUTPUT_SAMPLES = 1 << 22

PROBABILITIES = (
    "remix_probability",
    "drop_player_probability",
    "absent_query_probability",
    "same_instrument_probability",
    "label_query_probability",
    "real_solo_probability",
    "reverb_probability",
    "vibrato_probability",
    "voice_pair_probability",
)


@dataclass(frozen=True)
class DataConfig:
    """How training excerpts are drawn and augmented.

    Attributes:
        output_samples: output samples per excerpt (the input adds the model's context).
        batch_size: excerpts per step (per process under DDP).
        queries_per_mixture: players queried per excerpt (K); fewer players are padded with
            absent-instrument queries whose target is silence.
        workers: DataLoader worker processes.
        gain_db: each stem's gain is drawn uniformly in ``[-gain_db, +gain_db]`` dB.
        mixture_gain_db: the whole excerpt (mixture and targets) is made quieter by a gain
            drawn uniformly in ``[-mixture_gain_db, 0]`` dB, so the network hears mixtures
            at the spread of levels users' recordings come at (0: off; the per-stem gains
            move a mixture's level only as much as the stems' sum does).
        colour_db: each stem is coloured by random shelves and a peak of up to this many dB
            (0: off), standing for maker, microphone and room differences.
        remix_probability: chance an excerpt mixes stems drawn from several pieces.
        drop_player_probability: chance each extra player is left out of the mixture.
        absent_query_probability: chance one query names an instrument that is not playing.
        same_instrument_probability: models that take appearance or motion only: chance an
            excerpt is built around two players of one instrument (from one piece, or two)
            that are both queried, so the model learns to tell them apart by what it sees.
        label_query_probability: models that take appearance or motion only: chance an
            excerpt's queries carry labels alone (no appearance, no motion; same-instrument
            players' targets summed), so the same model also serves label queries.
        real_solo_probability: chance each player of a remixed excerpt is drawn from the
            split's real solo recordings (pieces titled ``RealSolo…``, ``vimss data solos``)
            rather than from all its pieces; 0 draws every piece alike.
        reverb_probability: chance each stem is heard through its own random synthetic
            room (direct sound, early reflections, a decaying tail; ``training/rooms.py``),
            as each player of a real ensemble is; 0: off.
        reverb_seconds: the longest reverberation time (RT60, seconds) a room is drawn with.
        speed_semitones: each stem is read at a random speed of up to this many semitones
            up or down (pitch, formants and tempo move together, as on tape; 0: off), so
            that no instrument is known by the exact place of its sample's formants.
        vibrato_probability: chance each stem is read with a vibrato, as string and wind
            players play: its read speed swings sinusoidally at 4.5 to 7 Hz by up to
            ``vibrato_cents``, every partial together (0: off). Drawn from a generator of its
            own, so every other draw of an excerpt is as without it.
        vibrato_cents: the deepest vibrato drawn (cents either way, 10 to 100; each is uniform
            from 10). The read moves by at most a few milliseconds, so a model that takes
            motion may use it too: its video stays in step.
        voice_pair_probability: models with ``model.voices`` only: chance an excerpt is
            built around two players of one instrument (as ``same_instrument_probability``
            builds them), queried as voices: every player of that instrument gets its voice
            number, 1 for the highest mean pitch over the excerpt's output (from the players'
            ``Notes_*`` files). Where the order is unclear (a player silent there, parts less
            than a semitone apart) the excerpt keeps label queries. Validation draws them too.
        voice_phrase_seconds: voice ranks read the players' notes this many seconds either
            side of the excerpt's output as well (0: the output alone), so that a player who
            rests in the excerpt keeps the voice of its line (its target is then silence),
            as the voice stems of a whole recording must.
        validation_excerpts: fixed excerpts from the valid split scored at each validation.
    """

    output_samples: int = 16384
    batch_size: int = 8
    queries_per_mixture: int = 2
    workers: int = 2
    gain_db: float = 6.0
    mixture_gain_db: float = 0.0
    colour_db: float = 0.0
    remix_probability: float = 0.5
    drop_player_probability: float = 0.1
    absent_query_probability: float = 0.1
    same_instrument_probability: float = 0.25
    label_query_probability: float = 0.2
    real_solo_probability: float = 0.0
    reverb_probability: float = 0.0
    reverb_seconds: float = 1.2
    speed_semitones: float = 0.0
    vibrato_probability: float = 0.0
    vibrato_cents: float = 40.0
    voice_pair_probability: float = 0.0
    voice_phrase_seconds: float = 0.0
    validation_excerpts: int = 64

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("output_samples", "batch_size", "queries_per_mixture"):
            check_range(self, name, at_least=1)
        check_range(self, "output_samples", at_most=MAX_OUTPUT_SAMPLES)
        check_range(self, "validation_excerpts", at_least=1)
        check_range(self, "workers", at_least=0)
        check_range(self, "gain_db", at_least=0)
        check_range(self, "mixture_gain_db", at_least=0, at_most=60)
        check_range(self, "colour_db", at_least=0)
        check_range(self, "speed_semitones", at_least=0, at_most=12)
        check_range(self, "vibrato_cents", at_least=10, at_most=100)
        check_range(self, "reverb_seconds", at_least=MIN_RT60, at_most=5)
        check_range(self, "voice_phrase_seconds", at_least=0, at_most=60)
        for name in PROBABILITIES:
            check_range(self, name, at_least=0, at_most=1)


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation: AdamW, warm-up then cosine decay, clipping, precision, EMA, loss.

    ``loss``: ``"l1"`` (mean absolute waveform error) or ``"sdr"`` (negative thresholded SDR,
    the metric itself; see :func:`vimss_cli.training.losses.thresholded_sdr_loss`).
    ``spectral_weight``: weight of a multi-resolution log-STFT term added to either.
    ``motion_lr_scale``: the motion path (motion encoder, FiLM's motion convolutions) learns
    at this multiple of ``lr``: warm-started from a label model it starts at zero and gets a
    weak signal, while the rest only needs fine-tuning.
    ``network_lr_scale``: the rest of the network learns at this multiple of ``lr``; 0
    freezes it, so only the motion path learns: with ``model.motion_bypass``, label queries
    then separate exactly as the warm start's checkpoint does.
    ``voice_lr_scale``: the voice embedding (``model.voices``) learns at this multiple of
    ``lr``: warm-started from a label model it starts at zero, and at the network's
    fine-tuning rate it would take thousands of steps to grow as large as the label
    embeddings it adds to.
    ``masked_weight``: weight of an L1 term on the stems refined by soft masks on the
    mixture, as ``vimss separate`` refines them
    (:func:`vimss_cli.training.losses.masked_l1_loss`): it trains the stems' magnitudes as
    the masks use them, bin by bin.
    ``activity_weight``: weight of the auxiliary loss of a model with
    ``model.motion_activity_head``: from each queried player's motion alone, how loud is the
    player in each motion frame (:func:`vimss_cli.training.losses.activity_loss`).
    """

    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    max_steps: int = 20000
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    ema_decay: float = 0.0
    spectral_weight: float = 0.0
    masked_weight: float = 0.0
    loss: Literal["l1", "sdr"] = "l1"
    motion_lr_scale: float = 1.0
    voice_lr_scale: float = 1.0
    activity_weight: float = 0.0
    network_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        check_types(self)
        check_range(self, "lr", above=0, at_most=1e30)  # beyond float32's range
        check_range(self, "motion_lr_scale", above=0)
        check_range(self, "voice_lr_scale", above=0)
        check_range(self, "grad_clip", above=0)
        check_range(self, "max_steps", at_least=1)
        for name in (
            "weight_decay", "warmup_steps", "spectral_weight", "activity_weight",
            "network_lr_scale", "masked_weight",
        ):  # fmt: skip
            check_range(self, name, at_least=0)
        check_range(self, "min_lr_ratio", at_least=0, at_most=1)
        check_range(self, "ema_decay", at_least=0, below=1)


@dataclass(frozen=True)
class RunConfig:
    """Book-keeping: seeds, intervals (in steps), and the weights a fresh run starts from.

    ``init_from``: a checkpoint (bundled name, path or hf:) whose weights a fresh run starts
    from (see ``training/warm_start.py``); empty: random initialisation.
    ``schedule_to_deadline``: with ``--max-minutes``, time the first steps and end the
    learning-rate schedule at the step the deadline allows, timed again at each checkpoint
    during the schedule's first half (stored in the run state, so a resumed run keeps it);
    otherwise the schedule ends at ``optim.max_steps``.
    ``compile``: run the training forward pass through ``torch.compile``.
    ``real_valid``: a URMP-layout folder of real recordings (``../shared/realval/bach10``)
    scored at each validation beside the valid split, on ``real_valid_excerpts`` fixed
    excerpts with label queries; when set, ``best.safetensors`` is the step with the best
    SDR on it. Empty: none. (On Bach10, 256 excerpts rank the bundled v2 to v5 as
    ``benchmarks/bench_realval.py`` does, to within 0.06 dB; docs/training.md.)
    """

    seed: int = 0
    checkpoint_every: int = 200
    validate_every: int = 1000
    log_every: int = 10
    init_from: str = ""
    schedule_to_deadline: bool = False
    compile: bool = False
    real_valid: str = ""
    real_valid_excerpts: int = 256

    def __post_init__(self) -> None:
        check_types(self)
        check_range(self, "seed", at_least=0)  # numpy's generators take no negative seeds
        for name in ("checkpoint_every", "validate_every", "log_every", "real_valid_excerpts"):
            check_range(self, name, at_least=1)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        sees_motion = self.model.motion_channels > 0
        if sees_motion and self.data.speed_semitones > 0:  # the video would no longer match
            raise InputError(
                "invalid config value: data.speed_semitones must be 0 for a model that takes "
                "motion (model.motion_channels > 0): a sped-up stem no longer matches its video"
            )
        if self.optim.network_lr_scale == 0 and not self.model.motion_channels:
            raise InputError(
                "invalid config value: optim.network_lr_scale 0 freezes the whole network of a "
                "model without motion (model.motion_channels 0): nothing would learn"
            )
        if self.data.voice_pair_probability > 0 and not self.model.voices:
            raise InputError(
                "invalid config value: data.voice_pair_probability needs model.voices > 0"
            )
        if self.optim.activity_weight > 0 and not self.model.motion_activity_head:
            raise InputError(
                "invalid config value: optim.activity_weight needs model.motion_activity_head"
            )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def to_toml(self) -> str:
        """The configuration as TOML (values are JSON-compatible scalars)."""
        lines = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
            lines.append("")
        return "\n".join(lines)


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "run": RunConfig,
}


def valid_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _parse_value(text: str) -> Any:
    """A TOML scalar (``3``, ``1e-3``, ``true``, ``"x"``), else the bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def build_config(
    file_values: dict[str, Any] | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """Defaults, then a parsed TOML document, then ``section.key=value`` overrides."""
    merged: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for section, values in (file_values or {}).items():
        if section not in SECTIONS:
            raise InputError(f"unknown config section {section!r}; sections: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise InputError(
                f"config {section!r} must be a table ([{section}] with its settings under it), "
                "not a value"
            )
        merged[section].update(values)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise InputError(f"--set expects section.key=value, got {item!r}")
        if section not in SECTIONS:
            raise InputError(
                f"--set {item!r}: unknown config section {section!r}; sections: "
                f"{', '.join(SECTIONS)}"
            )
        merged[section][name] = _parse_value(value.strip())
    sections = {}
    for section, cls in SECTIONS.items():
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged[section]) - set(known))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(known), n=1)
            hint = f"did you mean {section}.{close[0]}? " if close else ""
            raise InputError(
                f"unknown config key {section}.{unknown[0]}; {hint}valid keys: "
                f"{', '.join(valid_keys())}"
            )
        try:
            sections[section] = cls(**merged[section])
        except ConfigValueError as error:  # its message starts with the key's name
            raise InputError(f"invalid config value: {section}.{error}") from None
        except (TypeError, ValueError) as error:
            raise InputError(f"invalid [{section}] config: {error}") from None
    return TrainConfig(**sections)


def load_config(path: Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a TOML config file (optional) and apply overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InputError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as error:
            raise InputError(f"config file {path} is not valid TOML: {error}") from None
        except UnicodeDecodeError:
            raise InputError(f"config file {path} is not text (a TOML file is UTF-8)") from None
        except OSError as error:  # a folder, no permission, ...
            raise InputError(f"cannot read config file {path}: {error.strerror}") from None
    return build_config(values, overrides)
