"""``/why``: a failure explained from its evidence, rules first, then the model (no Telegram).

``types`` is the contract between the pieces: ``evidence`` gathers an
``EvidencePack`` in code, ``rules`` answers what needs no model, ``model``
asks Claude with the pack and ``check`` keeps only evidence that is really
there. The bot, the console and ``python -m supervisor why`` all show the
same ``Verdict``.
"""
