#!/usr/bin/env bash
# Submits a faultline run as a Slurm array of N shards plus the merge job that waits for them
# (--dependency=afterok), from the current directory (paths in ARGS are relative to it).
#
#   deploy/slurm/submit.sh NAME N COMMAND [ARGS…]
#   e.g. deploy/slurm/submit.sh resnet-pgd 8 attack -m model.onnx -d data/ --limit 1000 -a pgd
#
# Results: RUNS/NAME/shard-1 … shard-N, then RUNS/NAME/merged (RUNS: $FAULTLINE_RUNS or runs);
# Slurm logs in RUNS/NAME/. Prints the two job ids. Extra sbatch options (partition, account,
# time, CPUs) go in $FAULTLINE_SBATCH (split on spaces), e.g. "--partition=cpu --time=2:00:00".
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 NAME N COMMAND [ARGS…]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
name=$1
n=$2
shift 2
runs=${FAULTLINE_RUNS:-runs}
mkdir -p "$runs/$name"
# shellcheck disable=SC2086 # FAULTLINE_SBATCH holds several options
array=$(sbatch --parsable ${FAULTLINE_SBATCH:-} --array="1-$n" \
  --output="$runs/$name/slurm-%A_%a.out" "$here/faultline.sbatch" "$name" "$@")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable ${FAULTLINE_SBATCH:-} --dependency="afterok:$array" \
  --kill-on-invalid-dep=yes --output="$runs/$name/slurm-%j-merge.out" \
  "$here/faultline-merge.sbatch" "$name")
merge=${merge%%;*}
echo "array $array merge $merge"
