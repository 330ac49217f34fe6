#!/usr/bin/env bash
# The GPU study: `study --profile reference` (128×128, width 256, 2000 fit steps, 5 cohort seeds, SAEs at every
# depth), one process per GPU on disjoint datasets, then one call that reuses every run and writes the report.
#   scripts/gpu_study.sh runs/study_reference [study options...]     # e.g. --wandb online
# Expected wall-clock: not yet measured (no GPU run of the reference profile so far).
# Why processes, not DDP: the study runs its stages in one process (study refuses --devices > 1), and each stage
# is small enough for one GPU; the datasets are independent, the backbones are not (the FFMLP cohort's rate is
# matched to the SIREN's), so the study uses up to one GPU per dataset (2 for the reference profile).
# GPUS: the GPU ids to use (default: all visible). DRY_RUN=1 prints the commands instead of running them.
# Interrupted? Run it again: finished runs are reused and interrupted ones resume from their last checkpoint.
set -euo pipefail
out=${1:?usage: scripts/gpu_study.sh OUT [study options...]}
shift
python=${PYTHON:-python}
profile=${PROFILE:-reference}
read -ra gpus <<<"${GPUS:-$($python -c 'import torch; print(*range(torch.cuda.device_count()))')}"
read -ra datasets <<<"$($python -c 'import sys; from inr_lightning.study.profiles import PROFILES; print(*PROFILES[sys.argv[1]].datasets)' "$profile")"
study=("$python" -m inr_lightning study --profile "$profile" --out "$out")
run() { if [[ -n "${DRY_RUN:-}" ]]; then echo "$*"; else "$@"; fi; }
n=${#gpus[@]}
(( n <= ${#datasets[@]} )) || n=${#datasets[@]}
if (( n > 1 )); then
  pids=()
  for ((i = 0; i < n; i++)); do
    part=()
    for ((j = i; j < ${#datasets[@]}; j += n)); do part+=("${datasets[j]}"); done
    if [[ -n "${DRY_RUN:-}" ]]; then echo "CUDA_VISIBLE_DEVICES=${gpus[i]} ${study[*]} --datasets ${part[*]} $* &"
    else CUDA_VISIBLE_DEVICES=${gpus[i]} "${study[@]}" --datasets "${part[@]}" "$@" > "$out.${part[0]}.log" 2>&1 & pids+=($!); fi
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
fi
run "${study[@]}" "$@"
