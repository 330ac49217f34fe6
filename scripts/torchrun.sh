#!/usr/bin/env bash
# Any stage (fit, validate, test) on several processes (GPUs) or machines with torchrun; Lightning reads
# torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR), and this script sets --trainer.devices
# and --trainer.num_nodes to what torchrun starts, so the two always agree.
#   scripts/torchrun.sh fit --config configs/cohort/siren.yaml --config configs/trainer/gpu.yaml        # all GPUs here
#   NPROC=2 scripts/torchrun.sh fit --config configs/cohort/siren.yaml --config configs/trainer/ddp_cpu.yaml  # 2 CPU procs
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 scripts/torchrun.sh fit --config configs/sae/siren.yaml --config configs/trainer/gpu.yaml
#   (and NODE_RANK=1 on the second machine; on a SLURM cluster use scripts/slurm.sbatch instead)
# NPROC: processes per machine (default: the visible GPUs, else 1); NNODES (1), NODE_RANK (0), MASTER_ADDR,
# MASTER_PORT (29500) for several machines; PYTHON (python). A fit runs with --ckpt_path=last (unless you give
# one): the same command starts the run or resumes it. DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
[[ $# -gt 0 ]] || { echo "usage: scripts/torchrun.sh fit|validate|test --config CONFIG [--config configs/trainer/gpu.yaml] [overrides...]" >&2; exit 2; }
python=${PYTHON:-python}
nproc=${NPROC:-$($python -c 'import torch; print(torch.cuda.device_count() or 1)')}
nnodes=${NNODES:-1}
for value in "$nproc" "$nnodes"; do
  [[ $value =~ ^[1-9][0-9]*$ ]] || { echo "error: NPROC and NNODES must be whole numbers ≥ 1, got '$value'" >&2; exit 2; }
done
if [[ $nnodes -eq 1 ]]; then
  rdzv=(--standalone)                       # one machine: a free local port, no address to give
else
  rdzv=(--nnodes="$nnodes" --node_rank="${NODE_RANK:?NODE_RANK (0..NNODES-1) is needed with NNODES > 1}"
        --master_addr="${MASTER_ADDR:?MASTER_ADDR (the rank-0 machine) is needed with NNODES > 1}"
        --master_port="${MASTER_PORT:-29500}")
fi
# fit: --ckpt_path=last (a new run, or the resumption of this one) unless a --ckpt_path is given
resume=(--ckpt_path=last)
[[ $1 == fit && " $* " != *" --ckpt_path"* ]] || resume=()
cmd=("$python" -m torch.distributed.run "${rdzv[@]}" --nproc_per_node="$nproc"
     -m inr_lightning "$@" --trainer.devices="$nproc" --trainer.num_nodes="$nnodes" "${resume[@]}")
if [[ -n "${DRY_RUN:-}" ]]; then echo "${cmd[*]}"; else exec "${cmd[@]}"; fi
