#!/usr/bin/env bash
# Installs the system packages pgha's demo and tests need, only when they are missing:
# etcd (server and client), the PostgreSQL 15 server binaries and HAProxy (the load balancer
# test), from Debian's packages. Debian's postgresql package creates and starts its own
# cluster on port 5432 unless told not to, so we tell it not to before installing (traps 21);
# no package may start its service during the install (the tests start their own servers).
set -euo pipefail

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
# systemd-analyze verifies the unit file offline (systemd need not be PID 1).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]}; run as root or install them with apt-get" >&2
    exit 1
fi
if [[ " ${need[*]} " == *" postgresql-15 "* ]]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
fi
if [ ! -e /usr/sbin/policy-rc.d ]; then
    # invoke-rc.d asks this script whether a package may start its service: 101 = no.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "installing ${need[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
