#!/bin/sh
# Brings the reference cluster up (README "Cluster"; `make cluster-up` runs
# it after building bin/ and the images): writes keys, TLS and configs with
# vpn-cluster init into $CLUSTER_DIR (kept on later runs), starts the
# three NATS servers and the service replicas, enrolls agent-a and agent-b
# through the gateway and starts them with their join tokens, then waits
# until both agents report healthy.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${CLUSTER_DIR:=$root/bin/cluster}"
: "${COMPOSE_PROJECT_NAME:=vpnfleet-cluster}"
: "${CLUSTER_HTTP_PORT:=18080}"
export CLUSTER_DIR COMPOSE_PROJECT_NAME CLUSTER_HTTP_PORT
file="$root/deploy/cluster/docker-compose.yml"
if [ -n "${COMPOSE:-}" ]; then :; elif docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
compose() { $COMPOSE -f "$file" "$@"; }
say() { printf 'cluster-up: %s\n' "$*"; }
now() { date +%s; }
start=$(now)

"$root/bin/vpn-cluster" init --dir "$CLUSTER_DIR" >/dev/null
mkdir -p "$CLUSTER_DIR/data/nats-1" "$CLUSTER_DIR/data/nats-2" "$CLUSTER_DIR/data/nats-3" \
	"$CLUSTER_DIR/data/agent-a" "$CLUSTER_DIR/data/agent-b" "$CLUSTER_DIR/gateway"
# The containers run as the images' user (65532) when started by root,
# which then hands it everything but the operator's keys; otherwise as
# the invoking user, who owns the files already.
if [ "$(id -u)" = 0 ]; then
	CLUSTER_USER=65532:65532
	for d in nats services signer data gateway; do chown -R 65532:65532 "$CLUSTER_DIR/$d"; done
else
	CLUSTER_USER="$(id -u):$(id -g)"
fi
export CLUSTER_USER

say "starting NATS (3 nodes) and the services (users, gateway, health: 2 each)"
compose up -d nats-1 nats-2 nats-3 users-1 users-2 gateway-1 gateway-2 health-1 health-2 >/dev/null

api="http://127.0.0.1:$CLUSTER_HTTP_PORT"
wait_for() { # seconds, description, command...
	limit=$1 what=$2; shift 2
	t0=$(now)
	until "$@" >/dev/null 2>&1; do
		if [ $(( $(now) - t0 )) -ge "$limit" ]; then
			say "gave up after ${limit}s waiting for $what"; compose ps; compose logs --tail 30; exit 1
		fi
		sleep 1
	done
}
wait_for 300 "the gateway to be ready ($api/readyz)" curl -fsS "$api/readyz"
wait_for 60 "the first admin token ($CLUSTER_DIR/gateway/admin.token)" test -s "$CLUSTER_DIR/gateway/admin.token"
token=$(cat "$CLUSTER_DIR/gateway/admin.token")

# Enroll each agent once: a host that joined keeps its credential.
for a in a b; do
	if [ ! -s "$CLUSTER_DIR/data/agent-$a/nats/joined.json" ]; then
		jt=$(curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
			-d "{\"name\":\"agent-$a\"}" "$api/api/v1/nodes" | jq -r .token)
		[ -n "$jt" ] && [ "$jt" != null ] || { say "enrolling agent-$a gave no join token"; exit 1; }
		if [ $a = a ]; then AGENT_A_TOKEN=$jt; export AGENT_A_TOKEN; else AGENT_B_TOKEN=$jt; export AGENT_B_TOKEN; fi
	fi
done
say "starting agent-a and agent-b"
compose up -d agent-a agent-b >/dev/null

healthy() {
	n=$(curl -fsS -H "Authorization: Bearer $token" "$api/api/v1/nodes" |
		jq '[.nodes[] | select((.id == "agent-a" or .id == "agent-b") and .healthy)] | length')
	[ "$n" = 2 ]
}
wait_for 180 "agent-a and agent-b to report healthy" healthy
say "up in $(( $(now) - start ))s: API $api (admin token in $CLUSTER_DIR/gateway/admin.token); check it with deploy/cluster/check.sh"
