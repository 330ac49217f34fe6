"""Every speed claim of inr_lightning as one table: ``python -m benchmarks`` from the repository root.

One module per row family — a (step vs its GEMMs), b (frozen-prefix cache), c (batched fits), d (sparse SAE),
e (all-atom ablation), f (time to quality), g (scaling, peak memory) — each opening with what it measures
and against what baseline; ``harness`` holds the interleaved timing, FLOP accounting and the table.  Not
installed with the library.
"""
