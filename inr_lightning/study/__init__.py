"""The study pipeline: cohort runs → freeze-depth sweep → SAEs per depth → one report.

Each stage is a ``python -m inr_lightning fit`` run started as a function (``stages.run_stage``) with its
arguments spelled out; a stage is reused only when its recorded resolved config equals the requested one.
``commands`` holds the command-line entry points (``study``, ``sweep``, ``sae-depths``), ``verdicts`` the
pure statistics behind every number of the report, ``report`` the markdown.
"""
