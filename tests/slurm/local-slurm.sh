#!/usr/bin/env bash
# A private single-node Slurm for tests: `local-slurm.sh up DIR` starts munged (if not
# running), slurmctld and slurmd with a config under DIR; `local-slurm.sh down DIR` stops
# exactly the daemons it started, by the PIDs it recorded.
# Client commands need `SLURM_CONF=DIR/slurm.conf`.
set -euo pipefail
cmd=$1
root=$(realpath -m "$2")
conf=$root/slurm.conf
export SLURM_CONF=$conf

wait_for() { # seconds, then a command that must succeed
  local limit=$1; shift
  for _ in $(seq $((limit * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for: $*" >&2
  return 1
}

case $cmd in
up)
  mkdir -p "$root"/{state,spool,log,run}
  if ! (munge -n | unmunge) >/dev/null 2>&1; then
    if [ ! -f /etc/munge/munge.key ]; then
      mungekey --create
      chown munge:munge /etc/munge/munge.key
      chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge /run/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 sh -c 'munge -n | unmunge'
    cp /run/munge/munged.pid "$root/run/munged.pid"
  fi
  mem=$(/usr/sbin/slurmd -C | tr ' ' '\n' | sed -n 's/^RealMemory=//p')
  cat >"$conf" <<CONF
ClusterName=longmemtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=256
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
MinJobAge=3600
StateSaveLocation=$root/state
SlurmdSpoolDir=$root/spool
SlurmctldPidFile=$root/run/slurmctld.pid
SlurmdPidFile=$root/run/slurmd.pid
SlurmctldLogFile=$root/log/slurmctld.log
SlurmdLogFile=$root/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=4 RealMemory=$((mem * 8 / 10))
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  /usr/sbin/slurmctld
  wait_for 30 sh -c 'scontrol ping | grep -q UP'
  /usr/sbin/slurmd -N localhost
  wait_for 30 sh -c '[ "$(sinfo -h -n localhost -o %t)" = idle ]'
  ;;
down)
  for daemon in slurmd slurmctld munged; do
    pidfile=$root/run/$daemon.pid
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
  done
  ;;
*)
  echo "usage: $0 up|down DIR" >&2
  exit 2
  ;;
esac
