#!/usr/bin/env bash
# A one-node SLURM on this machine for the tests (Debian's slurm-wlm + munge; run as root).
#   bash tests/slurm/start_slurm.sh start DIR   generate DIR/slurm.conf and a munge key, start munged,
#                                              slurmctld and slurmd, wait until the node takes jobs
#   bash tests/slurm/start_slurm.sh stop DIR    cancel all jobs, stop the three daemons (by their pid files)
# Clients then need SLURM_CONF=DIR/slurm.conf. The node is localhost with the machine's real CPU count and
# memory; proctrack/linuxproc and task/none (no cgroups); state, spool, logs and the munge socket live in DIR.
# Jobs may share CPUs (OverSubscribe=FORCE:8), so a driver job and several 1-core worker jobs fit on 2 cores.
set -euo pipefail
cmd=${1:?usage: start_slurm.sh start|stop DIR}
DIR=$(mkdir -p "${2:?usage: start_slurm.sh start|stop DIR}" && cd "$2" && pwd)
export SLURM_CONF=$DIR/slurm.conf
PORT=${POPSTORE_SLURM_PORT:-6817}

stop_pid() {  # kill the daemon whose pid file is $1, if it runs
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}

if [ "$cmd" = stop ]; then
  [ -f "$SLURM_CONF" ] && scancel --full --quiet --partition=popstore 2>/dev/null || true
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  stop_pid "$DIR/munge/munged.pid"
  exit 0
fi
[ "$cmd" = start ] || { echo "usage: start_slurm.sh start|stop DIR" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "start_slurm.sh: needs root (slurmd and munged run as root)" >&2; exit 3; }
for exe in munged slurmctld slurmd sbatch; do
  command -v "$exe" >/dev/null || { echo "start_slurm.sh: $exe not found (apt-get install slurm-wlm munge)" >&2; exit 3; }
done

NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/^MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
mkdir -p "$DIR"/{state,spool,log,munge}
chmod 700 "$DIR/munge"
[ -f "$DIR/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"; }

cat > "$SLURM_CONF" <<EOF
ClusterName=popstore
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerParameters=sched_interval=1
MessageTimeout=20
KillWait=5
InactiveLimit=0
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=popstore Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF

munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket.2" \
  --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$NODE"
for _ in $(seq 120); do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
  case "$state" in
    idle*|mixed*|alloc*) exit 0 ;;
    down*|drain*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
  esac
  sleep 0.5
done
echo "start_slurm.sh: node $NODE did not become idle (state '$state'); logs in $DIR/log" >&2
exit 1
