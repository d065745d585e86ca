#!/usr/bin/env bash
# Runs the Indexed Job of shards, waits for it, then the merge Job (deploy/k8s/*.yaml as edited;
# see docs/cluster.md). Needs kubectl pointed at the cluster.
#   deploy/k8s/submit.sh [TIMEOUT]   (default 24h)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kubectl apply -f "$here/pvc.yaml"
kubectl apply -f "$here/shards-job.yaml"
kubectl wait --for=condition=complete job/faultline-shards --timeout="${1:-24h}"
kubectl apply -f "$here/merge-job.yaml"
kubectl wait --for=condition=complete job/faultline-merge --timeout="${1:-24h}"
kubectl logs job/faultline-merge | tail -n 20
