"""Test helpers for multi-process runs: a callback that makes one rank's loss NaN, an activation source whose
initialisation sample depends on the rank, and a script (``python tests/ddp_parts.py OUT``) that sets up an SAE
under 2-process DDP and saves each rank's SAE state as training starts (``OUT/rank<r>.pt``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import lightning as L
import torch

from inr_lightning.nn.readout import SampledActivations


class NaNOnRank(L.Callback):
    """Puts NaN into the training targets of rank ``rank`` at step ``step``: that rank's loss (only) is NaN."""

    def __init__(self, rank: int = 1, step: int = 3) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            batch["target"].fill_(math.nan)


class RankSample(SampledActivations):
    """``SampledActivations`` whose initialisation sample differs per rank (noise seeded by the rank): what
    an SAE initialised from data would start from if each rank drew or computed its sample on its own."""

    def __init__(self, x: torch.Tensor, rank: int | None = None) -> None:
        super().__init__(x)
        self.rank = rank

    def sample(self, n: int, device="cpu") -> torch.Tensor:
        rank = self.rank
        if rank is None:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        gen = torch.Generator().manual_seed(1000 + rank)
        x = self.x[:n]
        return (x + 0.5 * x.std() * torch.randn(x.shape, generator=gen)).to(device)


def activations(n: int = 512, width: int = 12) -> torch.Tensor:
    """Fixed activations ``(n, width)`` with unequal variances (a whitener has something to do)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, width, generator=gen) * torch.linspace(0.2, 2.0, width) + 0.3


SAE_ARGS = dict(n_atoms=48, k=4, decoder_init="data", encoder_input="whitened", downstream_weight=0.0,
                init_samples=256, warmup_steps=0)


class _SaveSAEState(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_start(self, trainer, pl_module) -> None:
        state = {key: value.detach().cpu().clone() for key, value in pl_module.sae.state_dict().items()}
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")


def main(out: str) -> None:
    from inr_lightning.models import SAEModule

    out = Path(out)
    x = activations()
    model = SAEModule(readout=RankSample(x), **SAE_ARGS)
    batches = [{"x": x[i::4], "num_samples": len(x[i::4])} for i in range(4)]
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=1, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[_SaveSAEState(out)])
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))


if __name__ == "__main__":
    main(sys.argv[1])
