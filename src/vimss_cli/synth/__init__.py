"""``vimss data synth``: URMP-format audio-visual ensembles rendered from real scores.

Modules, one concern each: :mod:`.resources` (Debian packages), :mod:`.scores` (corpus works,
splits, ensembles, parts), :mod:`.performance` (tempo, timing, dynamics, MIDI and text
files), :mod:`.audio` (fluidsynth, room, levels, exact mix), :mod:`.images` and
:mod:`.video` (the picture), :mod:`.dataset` (layout, manifest, resume, workers).
"""

from vimss_cli.synth.dataset import SynthConfig, SynthReport, synthesize

__all__ = ["SynthConfig", "SynthReport", "synthesize"]
