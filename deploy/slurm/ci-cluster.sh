#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine (for CI and for trying the sbatch scripts):
# munged, slurmctld and slurmd, all as root, with a minimal slurm.conf for this host's name,
# CPUs and memory. Needs Debian's slurm-wlm and munge packages and root; works inside containers
# (no cgroups: proctrack/linuxproc, task/none). State and logs go under $SLURM_CI_STATE
# (default /tmp/faultline-slurm). Idempotent: a cluster already answering is left alone.
#
#   apt-get install -y slurm-wlm munge && deploy/slurm/ci-cluster.sh
#   deploy/slurm/ci-cluster.sh stop
set -euo pipefail
state=${SLURM_CI_STATE:-/tmp/faultline-slurm}
conf=/etc/slurm/slurm.conf

stop() {
  for p in slurmd slurmctld; do
    [ -f "$state/$p.pid" ] && kill "$(cat "$state/$p.pid")" 2>/dev/null || true
  done
}
if [ "${1:-}" = stop ]; then
  stop
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ci-cluster.sh: run as root (it starts munged, slurmctld and slurmd)" >&2
  exit 1
fi
for b in munged slurmctld slurmd sbatch; do
  command -v "$b" >/dev/null || { echo "ci-cluster.sh: $b not found: apt-get install slurm-wlm munge" >&2; exit 1; }
done
if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
  echo "slurm: already up ($(sinfo -h -o '%N %c CPUs %T'))"
  exit 0
fi

# munge: a key, then the daemon as its own user.
mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null

host=$(hostname -s)
cpus=$(nproc)
# slurmd refuses a node whose RealMemory is above what it finds; leave it some room.
mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10 ))
mkdir -p "$state/ctld" "$state/d" /etc/slurm
cat > "$conf" <<CONF
# Written by faultline's deploy/slurm/ci-cluster.sh: one node, no cgroups, no accounting.
ClusterName=faultline-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdTimeout=300
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
# No cgroup constraints (containers often lack a writable cgroup tree).
cat > /etc/slurm/cgroup.conf <<CONF
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
CONF

slurmctld -c   # -c: start clean, ignoring saved state of an earlier cluster
slurmd
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "slurm: up ($(sinfo -h -o '%N %c CPUs %T'))"
    exit 0
  fi
  sleep 1
done
echo "ci-cluster.sh: the node did not come up; logs: $state/slurmctld.log $state/slurmd.log" >&2
tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
exit 1
