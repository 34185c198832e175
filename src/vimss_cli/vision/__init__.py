"""The video front end: find the players in a video and describe each one to the model.

One concern per module: :mod:`.frames` decodes pictures on the audio clock, :mod:`.players`
finds where the players are, :mod:`.efficientnet` is the frozen ImageNet network,
:mod:`.appearance` embeds and classifies each player's crops, :mod:`.motion` measures when each
player moves, :mod:`.instrument_guess` maps ImageNet classes to URMP instruments, and
:mod:`.queries` puts it together into one :class:`~vimss_cli.conditioning.Query` per player.
"""
