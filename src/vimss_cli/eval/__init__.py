"""Scoring separations: datasets, systems (model and baselines), protocols, aggregation.

A *track* is one piece: K reference stems, optionally its mixture, optionally K estimate
files. A *system* turns a track into K estimates: ``model`` (a :class:`~vimss_cli.api.
Separator` with one label query per player), the baselines ``mixture`` (the mixture as every
estimate: the lower bound), ``irm`` and ``ibm`` (oracle ideal ratio / binary STFT masks
applied to the mixture: upper references), or ``estimates`` (files given by the user).

Every stem gets whole-signal BSS Eval v3 ``bss_eval_sources`` values (``SDR``, ``SIR``,
``SAR``, as mir_eval computes them) and ``SI-SDR``. A protocol adds its own values:

* ``museval`` (SiSEC): BSS Eval v4 images per 1 s window, median per stem
  (``SDR_v4_median`` ...); summaries take the median over stems.
* ``segments`` (URMP papers): audio at 11025 Hz cut into non-overlapping segments of 65535
  samples; a segment is scored for a stem (v3 ``bss_eval_sources`` against the piece's other
  active references) unless its reference or estimate is silent there; summaries give the
  mean and standard deviation over all scored segments.

Nothing here prints; progress goes to an optional callback. The modules, in the order a run
uses them:

* :mod:`.tracks`: what to score (a URMP-layout tree, or folders of references and estimates);
* :mod:`.audio`: reading, resampling and reconciling lengths;
* :mod:`.systems`: the estimates of each system (model, baselines, the user's files);
* :mod:`.metrics`: BSS Eval v3 and v4 and SI-SDR;
* :mod:`.scoring`: one row per stem under a protocol;
* :mod:`.run`: :func:`~.run.evaluate`, cached per track and system;
* :mod:`.summary`: the aggregation and its table cells;
* :mod:`.report`: ``results.json``, the CSV, the box plot, comparing two runs.
"""
