#!/bin/sh
# Stops and removes the reference cluster's containers and network
# (`make cluster-down`); its keys and data stay in $CLUSTER_DIR, so
# `make cluster-up` brings the same cluster back. Remove $CLUSTER_DIR
# (as root when up.sh ran as root) to start from nothing.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${CLUSTER_DIR:=$root/bin/cluster}"
: "${COMPOSE_PROJECT_NAME:=vpnfleet-cluster}"
: "${CLUSTER_USER:=65532:65532}"
export CLUSTER_DIR COMPOSE_PROJECT_NAME CLUSTER_USER
if [ -n "${COMPOSE:-}" ]; then :; elif docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
$COMPOSE -f "$root/deploy/cluster/docker-compose.yml" down --remove-orphans
