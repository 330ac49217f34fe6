#!/usr/bin/env bash
# A long CPU study on 2 cores: two one-thread processes over one --out, then one call that reuses every run
# and writes the report. The decisive profile splits by dataset, the regime profile by cells.
#   scripts/cpu_study.sh decisive runs/decisive [--export docs/study_decisive]
#   scripts/cpu_study.sh regime runs/regime
# DRY_RUN=1 prints the three commands instead of running them. Interrupted? Run it again: finished runs are
# reused and interrupted ones resume from their last checkpoint.
set -euo pipefail
profile=${1:?usage: scripts/cpu_study.sh PROFILE OUT [study options...]}
out=${2:?usage: scripts/cpu_study.sh PROFILE OUT [study options...]}
shift 2
python=${PYTHON:-python}
# the two halves: datasets of a study profile, cells of a regime profile (Profile.halves)
split=$($python - "$profile" <<'PY'
import sys
from inr_lightning.study.profiles import PROFILES
p = PROFILES.get(sys.argv[1])
if p is None:
    sys.exit(f"error: unknown profile {sys.argv[1]!r}; allowed: {', '.join(sorted(PROFILES))}")
for half in p.halves():
    print(*half)
PY
)
mapfile -t halves <<<"$split"
study=("$python" -m inr_lightning study --profile "$profile" --out "$out" --wandb disabled)
run() { if [[ -n "${DRY_RUN:-}" ]]; then echo "$*"; else "$@"; fi; }
pids=()
for half in "${halves[@]}"; do
  read -ra args <<<"$half"
  [[ ${#args[@]} -gt 1 ]] || continue          # a profile with one dataset: one process
  if [[ -n "${DRY_RUN:-}" ]]; then echo "OMP_NUM_THREADS=1 ${study[*]} ${args[*]} &"
  else OMP_NUM_THREADS=1 "${study[@]}" "${args[@]}" > "$out.${args[1]}.log" 2>&1 & pids+=($!); fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
run "${study[@]}" "$@"
