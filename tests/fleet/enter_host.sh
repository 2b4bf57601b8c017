#!/bin/sh
# Becomes one emulated device: runs as PID 1 of fresh PID, mount, UTS and IPC namespaces
# (started by tests/fleet/harness.py through `unshare`), gives the host its own hostname
# and private directories, then execs its sshd, which stays PID 1.
#
# usage: enter_host.sh NAME HOSTS_DIR HOST_DIR SSHD CONFIG [TARGET SOURCE]...
#   HOST_DIR is HOSTS_DIR/<dir>; each TARGET (e.g. /tmp) gets SOURCE bind-mounted over it.
set -eu

name=$1
hosts_dir=$2
host_dir=$3
sshd=$4
config=$5
shift 5

echo "$name" >/proc/sys/kernel/hostname

# The other hosts' private directories sit next to ours: cover them all with an empty
# tmpfs and put ours back in place (staged on /tmp, which gets its private mount below).
mount --bind "$host_dir" /tmp
mount -t tmpfs -o mode=0755,size=64k fleetprof-hosts "$hosts_dir"
mkdir "$host_dir"
mount --move /tmp "$host_dir"

while [ "$#" -ge 2 ]; do
    mount --bind "$2" "$1"
    shift 2
done

if [ -d /dev/shm ]; then
    mount -t tmpfs -o mode=1777,size=64m fleetprof-shm /dev/shm
fi

exec "$sshd" -D -e -f "$config"
