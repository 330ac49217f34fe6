"""inr_lightning: cohort-trained implicit neural representations with PyTorch Lightning.

``load_run(run_dir)`` opens a finished run as a Python object (see ``inr_lightning.api`` and docs/api.md).
"""

__version__ = "0.1.0"

__all__ = ["load_run"]


def __getattr__(name: str):
    # Lazy: ``python -m inr_lightning`` and the data/model modules import this package without the API.
    if name == "load_run":
        from inr_lightning.api import load_run

        return load_run
    raise AttributeError(f"module 'inr_lightning' has no attribute {name!r}")
