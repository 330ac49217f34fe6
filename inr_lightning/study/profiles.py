"""Study profiles (how big every run is) and datasets (which cohort, which held-out views).

A profile that samples coordinates or shortens runs says so in the report (``cuts``); only profiles that fit
on the full grid make claims about the findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SKIMAGE_NAMES = ["astronaut", "camera", "cat", "chelsea", "coffee", "coins", "moon", "rocket", "brick", "grass",
                 "gravel", "clock", "page", "immunohistochemistry", "hubble_deep_field"]
# Every photograph bundled with scikit-image that loads offline (``SkimageImages`` names), in a fixed order.
NATURAL_NAMES = ["astronaut", "camera", "cat", "chelsea", "coffee", "coins", "moon", "rocket", "brick", "grass",
                 "gravel", "clock", "page", "immunohistochemistry", "hubble_deep_field", "cell", "retina", "text",
                 "microaneurysms", "horse", "motorcycle"]


@dataclass(frozen=True)
class Dataset:
    label: str
    cohort: list[str]                                       # overrides of the cohort stage's data
    views: dict[str, list[str]] = field(default_factory=dict)  # extra held-out sets: fit-stage data overrides


DATASETS = {
    "mri": Dataset(
        "axial slices of the MNI152 T1 template (nilearn); the held-out slices lie between cohort slices",
        [],
        {"coronal": ["--data.init_args.source=inr_lightning.data.MRISlices",
                     "--data.init_args.source.init_args.axis=coronal"]}),
    "skimage": Dataset(
        "15 natural images bundled with scikit-image, grayscale, centre-cropped",
        ["--data.init_args.source=inr_lightning.data.SkimageImages",
         f"--data.init_args.source.init_args.names=[{', '.join(SKIMAGE_NAMES)}]", "--data.init_args.aspect=crop"]),
    # other content from the same volume: a cheap second dataset for the finding-2 pipeline's test
    "coronal": Dataset(
        "coronal slices of the MNI152 T1 template (nilearn)",
        ["--data.init_args.source=inr_lightning.data.MRISlices", "--data.init_args.source.init_args.axis=coronal"]),
    # every bundled photograph: enough for 10 held-out images and a validation split (the cohort takes the rest)
    "natural": Dataset(
        f"the {len(NATURAL_NAMES)} photographs bundled with scikit-image, grayscale, centre-cropped; the cohort is "
        "what the held-out and validation images leave",
        ["--data.init_args.source=inr_lightning.data.SkimageImages",
         f"--data.init_args.source.init_args.names=[{', '.join(NATURAL_NAMES)}]", "--data.init_args.aspect=crop",
         "--data.init_args.num_signals=null"]),
}


# Our GPU-sized protocol (the paper's sizes are not public): what ``generated_cuts`` compares every profile with.
REFERENCE = {"resolution": 128, "width": 256, "layers": 5, "cohort_steps": 5000, "fit_steps": 2000, "seeds": 5, "num_heldout": 10}


@dataclass(frozen=True)
class Profile:
    name: str
    resolution: int
    width: int
    layers: int
    cohort_steps: int
    fit_steps: int
    record_steps: tuple[int, ...]
    seeds: int
    datasets: tuple[str, ...]
    ffmlp_lrs: tuple[float, ...]       # cohort learning rates tried for the FFMLP; the one closest to SIREN is used
    sae_layers: tuple[int, ...] | None  # None: every encoder layer
    sae: list[str]                     # overrides of every SAE run
    sae_seeds: int = 1                 # extra SAE seeds at the middle layer
    control_layers: tuple[int, ...] | None = None  # untrained-encoder controls; None: every SAE layer
    dict_sizes: tuple[int, ...] = ()   # extra dictionary sizes at the middle layer
    views: bool = True                 # also fit each dataset's other views (e.g. coronal MRI slices)
    coords_per_step: int | None = None  # None: the full grid every fit step
    frequencies: int = 256
    steps_per_epoch: int = 100
    cuts: tuple[str, ...] = ()         # what this profile shortens, printed in the report
    num_heldout: int | None = None     # held-out signals per cohort (None: the config's 5)
    num_validation: int = 0            # validation signals for the fit learning-rate search (0: no search)
    fit_lrs: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (backbone, learning rates the search tries)
    siren_cohort_lr: float | None = None  # None: the cohort config's
    cohort_schedule: str = "constant"  # the cohort's lr_schedule: constant | cosine (decays to 0: a settled cohort)
    fit_schedule: str = "constant"     # every fit's lr_schedule (cosine: the last-20 % gain is not Adam's noise)
    controls: bool = True              # the random_k / reinit_k controls in every sweep
    transfer_level: float = 40.0       # the PSNR [dB] whose steps-to-reach the transfer gate compares
    grid: tuple[tuple[int, int], ...] = ()  # (resolution, width) cells of a regime map; () = one study
    budgets: tuple[int, ...] = ()      # fit budgets a regime map judges (recorded steps of the fits)
    match_seeds: int = 1               # cohort seeds the FFMLP rate is matched on (mean capped PSNR vs SIREN's)
    finding2: bool = False             # finding 2 alone, over cohorts (``study.finding2``): no finding-1 sweeps

    @property
    def claims(self) -> bool:
        return self.coords_per_step is None

    def cohort_args(self) -> list[str]:
        args = [f"--model.init_args.net.width={self.width}", f"--model.init_args.net.shared_layers={self.layers}",
                f"--model.init_args.net.num_frequencies={self.frequencies}",
                f"--data.init_args.resolution={self.resolution}", f"--trainer.max_steps={self.cohort_steps}",
                f"--data.init_args.steps_per_epoch={min(self.steps_per_epoch, self.cohort_steps)}"]
        if self.cohort_schedule != "constant":
            args.append(f"--model.init_args.lr_schedule={self.cohort_schedule}")
        if self.num_heldout is not None:
            args.append(f"--data.init_args.num_heldout={self.num_heldout}")
        if self.num_validation:
            args.append(f"--data.init_args.num_validation={self.num_validation}")
        return args

    def generated_cuts(self, seeds: int) -> list[str]:
        """Every way this profile departs from ``REFERENCE`` (our GPU-sized protocol), written from the fields."""
        ref, out = REFERENCE, []
        if self.grid:   # a regime map's cells replace its own resolution and width
            sizes = [sorted({cell[i] for cell in self.grid}) for i in (0, 1)]
            out.append(f"{{{', '.join(map(str, sizes[0]))}}}² px × width {{{', '.join(map(str, sizes[1]))}}} "
                       f"(reference: {ref['resolution']}×{ref['resolution']}, width {ref['width']})")
        elif (self.resolution, self.width) != (ref["resolution"], ref["width"]):
            out.append(f"{self.resolution}×{self.resolution} px and width {self.width} (reference: "
                       f"{ref['resolution']}×{ref['resolution']}, width {ref['width']})")
        fits = not self.finding2   # the finding-2 profile fits no signals: no fit, sweep or view cut applies
        for name, what in (("layers", "encoder layers"), ("cohort_steps", "cohort steps"), ("fit_steps", "fit steps")):
            if getattr(self, name) != ref[name] and (fits or name != "fit_steps"):
                out.append(f"{getattr(self, name)} {what} (reference: {ref[name]})")
        if seeds < ref["seeds"]:
            out.append(f"{seeds} cohort seed(s) (reference: {ref['seeds']}; finding 1 needs ≥ 2 to give a verdict)")
        if (self.num_heldout or 5) < ref["num_heldout"]:
            out.append(f"{self.num_heldout or 5} held-out signals per set (reference: {ref['num_heldout']})")
        if not self.fit_lrs and fits:
            out.append("no fit learning-rate search: every fit at the fit config's learning rate")
        if not self.controls and fits:
            out.append("no random_k / reinit_k controls in the sweeps (scratch, finetune, freeze_k and auto only)")
        if self.sae_layers == ():
            out.append("no SAEs: finding 2 is not measured by this profile")
        if self.finding2:
            out.append("no freeze-depth sweeps: finding 1 is not measured by this profile")
        if not self.views and fits:
            out.append("held-out signals of the cohort's own view only (no coronal MRI slices)")
        return out

    def halves(self) -> tuple[list[str], list[str]]:
        """The options of the two one-thread processes ``scripts/cpu_study.sh`` runs side by side: a study's
        datasets alternately; a regime map's cells greedily by cost, largest first (cost ∝ (R·W)²: pixels times
        the width's GEMM work: a model; the regime report shows the CPU time each half took)."""
        if not self.grid:
            return ["--datasets", *self.datasets[0::2]], ["--datasets", *self.datasets[1::2]]
        halves, cost = (["--cells"], ["--cells"]), [0, 0]
        for r, w in sorted(self.grid, key=lambda c: -(c[0] * c[1]) ** 2):
            i = cost.index(min(cost))
            halves[i].append(f"{r}x{w}")
            cost[i] += (r * w) ** 2
        return halves

    def fit_lr_grid(self, backbone: str) -> tuple[float, ...]:
        return dict(self.fit_lrs).get(backbone, ())

    def fit_args(self) -> list[str]:
        record = ", ".join(map(str, self.record_steps))
        schedule = [f"--model.init_args.lr_schedule={self.fit_schedule}"] if self.fit_schedule != "constant" else []
        return [*schedule, f"--trainer.max_steps={self.fit_steps}", f"--model.init_args.record_steps=[{record}]",
                f"--data.init_args.steps_per_epoch={min(self.steps_per_epoch, self.fit_steps)}",
                f"--data.init_args.coords_per_step={'null' if self.coords_per_step is None else self.coords_per_step}"]


# Every 20 steps while fits rise fastest (steps to a level), then every 60; 480 is the start of the last 20 %.
DECISIVE_RECORD = (*range(20, 201, 20), 240, 300, 360, 420, 480, 540, 600)

PROFILES = {
    # Seconds: the test suite's end-to-end run of every stage.
    "tiny": Profile("tiny", 16, 16, 2, 4, 3, (1, 3), 1, ("mri",), (1e-4, 1e-3), None,
                    ["--model.init_args.n_atoms=32", "--model.init_args.k=4", "--model.init_args.warmup_steps=1",
                     "--model.init_args.init_samples=64", "--data.init_args.batch_size=64",
                     "--data.init_args.steps_per_epoch=2", "--trainer.max_steps=2",
                     "--trainer.callbacks.init_args.top_atoms=2"],
                    control_layers=(1,), frequencies=8, steps_per_epoch=2, sae_seeds=2, dict_sizes=(16,),
                    num_validation=1, fit_lrs=(("siren", (1e-4, 1e-3)), ("ffmlp", (1e-4, 1e-3))),
                    cuts=("a test of the pipeline, not a measurement",)),
    # ≤ 10 minutes on 2 CPU cores: every stage and control on the MRI cohort, two seeds, at 32×32.
    "quick": Profile("quick", 32, 64, 5, 1000, 100, (25, 50, 100), 2, ("mri",), (1e-4, 1e-3), (1, 3),
                     ["--model.init_args.n_atoms=512", "--model.init_args.k=16", "--model.init_args.warmup_steps=20",
                      "--model.init_args.init_samples=1024", "--data.init_args.batch_size=1024",
                      "--data.init_args.steps_per_epoch=150", "--trainer.max_steps=300",
                      "--trainer.callbacks.init_args.top_atoms=12"],
                     control_layers=(1,), frequencies=64, views=False,
                     cuts=("32×32 and width 64: fast, but at this size protocols differ less than at 128×128",
                           "100 fit steps, 1000 cohort steps, 2 seeds; SAEs of 512 atoms (k = 16), 300 steps, "
                           "at layers 1 and 3 only", "the MRI cohort's axial held-out slices only")),
    # The quick sizes with every dataset and view and 200 fit steps: the report in docs/ (about half an hour).
    "small": Profile("small", 32, 64, 5, 1000, 200, (25, 50, 100, 200), 2, ("mri", "skimage"), (1e-4, 1e-3),
                     (1, 3),
                     ["--model.init_args.n_atoms=512", "--model.init_args.k=16", "--model.init_args.warmup_steps=20",
                      "--model.init_args.init_samples=1024", "--data.init_args.batch_size=1024",
                      "--data.init_args.steps_per_epoch=150", "--trainer.max_steps=300",
                      "--trainer.callbacks.init_args.top_atoms=12"],
                     control_layers=(1,), frequencies=64,
                     cuts=("32×32 and width 64: fast, but at this size protocols differ less than at 128×128",
                           "200 fit steps, 1000 cohort steps, 2 seeds; SAEs of 512 atoms (k = 16), 300 steps, "
                           "at layers 1 and 3 only")),
    # The CPU study (≤ 150 min on 2 cores): 48×48, width 64, full grid, three seeds, both datasets and the
    # coronal view; SAEs of the paper's size at every depth with a control at every depth, and (first dataset)
    # SAE seeds and dictionary sizes at the middle layer.
    "full": Profile("full", 48, 64, 5, 2000, 200, (25, 50, 100, 200), 3, ("mri", "skimage"), (1e-4, 3e-4, 1e-3),
                    None,
                    ["--model.init_args.n_atoms=4096", "--model.init_args.k=32", "--trainer.max_steps=300",
                     "--data.init_args.batch_size=2304", "--data.init_args.steps_per_epoch=100",
                     "--model.init_args.warmup_steps=30", "--model.init_args.dead_window=18432"],
                    sae_seeds=3, control_layers=None, dict_sizes=(1024, 16384), frequencies=64,
                    cuts=("why these sizes: 3 seeds × 3 held-out sets × 2 backbones × 17 protocols = 306 full-grid "
                          "fits and 48 SAEs must fit the 150-minute budget of 2 CPU cores",
                          "SAEs: 4096 atoms, k = 32, 300 steps of the whole 48×48 grid (2304 activations) each; SAE "
                          "seeds and dictionary sizes on the first dataset (MRI) only")),
    # Finding 1, decided where the CPU allows (sizes from the regime map: docs/study.md "The decisive profile"): 32×32,
    # width 128, matched cohorts (cosine-decayed rate; the FFMLP rate matched on the mean of all five seeds), 600-step
    # fits (cosine-decayed) at each backbone's searched learning rate, five cohort seeds, ten held-out signals per
    # dataset; no SAEs (finding 2 is the `finding2` profile's).
    "decisive": Profile("decisive", 32, 128, 5, 2000, 600, DECISIVE_RECORD, 5, ("mri", "natural"), (1e-3, 3e-3),
                        (), [], sae_seeds=1, control_layers=(), frequencies=256, views=False, controls=False,
                        num_heldout=10, num_validation=3, siren_cohort_lr=3e-4, cohort_schedule="cosine",
                        fit_lrs=(("siren", (3e-5, 1e-4, 3e-4, 1e-3)), ("ffmlp", (1e-4, 3e-4, 1e-3, 3e-3))),
                        match_seeds=5, fit_schedule="cosine"),
    # Where finding 1 holds: the decisive protocol on MRI at every (resolution, width) cell, three cohort seeds
    # per cell, judged at two fit budgets (300 and 600 steps of the same fits: Adam has no schedule here).
    "regime": Profile("regime", 48, 128, 5, 2000, 600, DECISIVE_RECORD, 3, ("mri",), (3e-4, 1e-3), (), [],
                      sae_seeds=1, control_layers=(), frequencies=256, views=False, controls=False, num_heldout=10,
                      num_validation=3, siren_cohort_lr=3e-4, cohort_schedule="cosine",
                      fit_lrs=(("siren", (1e-4, 3e-4, 1e-3)), ("ffmlp", (3e-4, 1e-3, 3e-3))),
                      grid=((32, 64), (32, 128), (48, 64), (48, 128), (64, 64), (64, 128)), budgets=(300, 600)),
    # Our GPU profile (the paper's sizes are not public; these are our choice): 128×128, width 256, 2000
    # full-grid fit steps, five cohort seeds, converged SAEs.
    "reference": Profile("reference", 128, 256, 5, 5000, 2000, (50, 100, 250, 500, 1000, 1600, 2000), 5,
                         ("mri", "natural"), (1e-4, 3e-4, 1e-3), None,
                         ["--model.init_args.n_atoms=4096", "--model.init_args.k=32", "--trainer.max_steps=10000"],
                         sae_seeds=3, control_layers=None, dict_sizes=(1024, 16384), num_heldout=10,
                         num_validation=3, cohort_schedule="cosine", fit_lrs=(("siren", (1e-4, 3e-4, 1e-3)), ("ffmlp", (3e-4, 1e-3, 3e-3)))),
}

# Finding 2 over cohorts (≤ 180 min on 2 CPU cores: the slower dataset's process, ``finding2.estimated_minutes``):
# 32×32 (the decisive profile's resolution), width 64, three cohort seeds per backbone on MRI and natural images,
# an SAE at every depth of every cohort and each backbone's own untrained control at every depth, SAEs on a
# pool of 2¹⁷ continuous coordinates (≈ 16 activation values per SAE parameter; the grid would give 0.12),
# dictionary sizes 1024 / 16384 at the middle depth of every MRI cohort.
FINDING2_SAE = ["--model.init_args.n_atoms=4096", "--model.init_args.k=32", "--trainer.max_steps=300",
                "--data.init_args.batch_size=2304", "--data.init_args.steps_per_epoch=100",
                "--model.init_args.warmup_steps=30", "--model.init_args.dead_window=18432",
                "--data.init_args.coords=pool", "--data.init_args.pool_size=131072",
                "--data.init_args.heldout_coords=16384"]
FINDING2 = Profile("finding2", 32, 64, 5, 2000, 200, (25, 50, 100, 200), 3, ("mri", "natural"), (3e-4, 1e-3, 3e-3),
                   None, FINDING2_SAE, control_layers=None, dict_sizes=(1024, 16384), frequencies=64,
                   views=False, controls=False, num_heldout=10, finding2=True,
                   cuts=("why these sizes: every stage at every depth of 3 cohort seeds × 2 backbones × 2 datasets "
                         "within 180 min on 2 CPU cores (by measured stage times)",
                         "SAEs: 4096 atoms, k = 32, 300 steps of 2304 coordinates from a pool of 2¹⁷; dictionary "
                         "sizes on the first dataset only"))

PROFILES_FINDING2 = {
    "finding2": FINDING2,
    # Seconds: the test of the finding-2 pipeline (cohorts → SAEs and controls → report), not a measurement.
    "finding2_tiny": Profile("finding2_tiny", 16, 16, 2, 4, 3, (1, 3), 2, ("mri", "coronal"), (1e-3,), None,
                             ["--model.init_args.n_atoms=32", "--model.init_args.k=4",
                              "--model.init_args.warmup_steps=1", "--model.init_args.init_samples=64",
                              "--data.init_args.batch_size=64", "--data.init_args.steps_per_epoch=2",
                              "--trainer.max_steps=2", "--trainer.callbacks.init_args.top_atoms=2",
                              # no atom PNGs: most of these 28 tiny SAEs' time (tests/analysis draws them)
                              "--trainer.callbacks.init_args.figures=false",
                              "--data.init_args.coords=pool", "--data.init_args.pool_size=2000",
                              "--data.init_args.heldout_coords=500"],
                             control_layers=(1,), dict_sizes=(16,), frequencies=8, steps_per_epoch=2, views=False,
                             controls=False, num_heldout=5, finding2=True,
                             cuts=("a test of the pipeline, not a measurement",)),
}
PROFILES.update(PROFILES_FINDING2)
# Seconds: the test of the regime pipeline (two cells of 16-px cohorts → sweeps → map), not a measurement.
PROFILES["regime_tiny"] = replace(PROFILES["tiny"], name="regime_tiny", grid=((16, 8), (16, 16)), budgets=(1, 3),
                                  fit_lrs=(), controls=False, sae_layers=(), control_layers=(), num_validation=0,
                                  views=False)
