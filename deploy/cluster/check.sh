#!/bin/sh
# Checks the running reference cluster (README "Cluster"): deploys a
# SOCKS5 server on agent-a and on agent-b (once), creates a user through
# the gateway, connects through both agents with a real client (curl,
# through each agent's Xray, to the gateway on the private network), kills
# one NATS container, creates a second user and connects through both
# agents again with its credentials, then starts the NATS container
# again. It prints each step's time and exits non-zero on the first
# failure.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${CLUSTER_DIR:=$root/bin/cluster}"
: "${COMPOSE_PROJECT_NAME:=vpnfleet-cluster}"
: "${CLUSTER_HTTP_PORT:=18080}"
: "${AGENT_A_PORT:=21080}"
: "${AGENT_B_PORT:=21081}"
: "${KILL_NATS:=nats-1}"
export CLUSTER_DIR COMPOSE_PROJECT_NAME
file="$root/deploy/cluster/docker-compose.yml"
if [ -n "${COMPOSE:-}" ]; then :; elif docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
# Only ps, kill and start: what a compose file with unset variables allows.
: "${CLUSTER_USER:=65532:65532}"
export CLUSTER_USER
compose() { $COMPOSE -f "$file" "$@"; }
api="http://127.0.0.1:$CLUSTER_HTTP_PORT"
token=$(cat "$CLUSTER_DIR/gateway/admin.token")
say() { printf 'check: %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }
ms() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
call() { # method path [body]
	if [ $# -ge 3 ]; then
		curl -fsS -X "$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$3" "$api$2"
	else
		curl -fsS -X "$1" -H "Authorization: Bearer $token" "$api$2"
	fi
}
retry() { # seconds, description, command...: until it succeeds
	r_limit=$1 r_what=$2; shift 2
	r_start=$(date +%s)
	until "$@" 2>/dev/null; do
		[ $(( $(date +%s) - r_start )) -lt "$r_limit" ] || fail "$r_what (gave up after ${r_limit}s)"
		sleep 0.5
	done
}

# A SOCKS5 server on each agent, listening on 21080 in its container
# (published on the host's loopback as AGENT_A_PORT / AGENT_B_PORT).
server_on() { # node -> server id
	id=$(call GET /api/v1/servers | jq -r --arg n "$1" '[.servers[] | select(.node == $n and .name == "check")][0].id // empty')
	if [ -z "$id" ]; then
		id=$(call POST /api/v1/servers "{\"node\":\"$1\",\"name\":\"check\",\"inbounds\":[{\"tag\":\"socks\",\"protocol\":\"socks5\",\"port\":21080,\"listen\":\"0.0.0.0\"}]}" | jq -r .id)
	fi
	echo "$id"
}
applied() { [ "$(call GET "/api/v1/servers/$1" | jq -r .status.state)" = applied ]; }
t0=$(ms)
srv_a=$(server_on agent-a)
srv_b=$(server_on agent-b)
retry 120 "server $srv_a on agent-a applied" applied "$srv_a"
retry 120 "server $srv_b on agent-b applied" applied "$srv_b"
say "servers applied on agent-a and agent-b: $(secs "$t0" "$(ms)")s"

# link <user id> <server id>: the user's socks5 link on that server.
link() { call GET "/api/v1/users/$1/links" | jq -r --arg s "$2" '[.links[] | select(.server == $s and .protocol == "socks5")][0].url // empty'; }
has_link() { [ -n "$(link "$1" "$2")" ]; }
# connect <link> <host port>: curl through that agent's Xray, with the
# link's credentials, to the gateway on the private network.
connect() {
	auth=$(printf '%s' "$1" | sed -E 's#^socks5://([^@]*)@.*#\1#')
	[ "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -x "socks5h://$auth@127.0.0.1:$2" http://gateway-2:8080/healthz)" = 200 ]
}
# through_both <user id> <label>: links on both servers, then traffic.
through_both() {
	tb_start=$(ms)
	retry 120 "$2: a socks5 link on agent-a" has_link "$1" "$srv_a"
	retry 120 "$2: a socks5 link on agent-b" has_link "$1" "$srv_b"
	la=$(link "$1" "$srv_a"); lb=$(link "$1" "$srv_b")
	retry 120 "$2: traffic through agent-a" connect "$la" "$AGENT_A_PORT"
	retry 120 "$2: traffic through agent-b" connect "$lb" "$AGENT_B_PORT"
	say "$2: connected through agent-a and agent-b: $(secs "$tb_start" "$(ms)")s"
}

stamp=$(date +%s)
t=$(ms)
u1=$(call POST /api/v1/users "{\"name\":\"check-$stamp-1\"}" | jq -r .id)
[ -n "$u1" ] && [ "$u1" != null ] || fail "creating a user"
say "user check-$stamp-1 created: $(secs "$t" "$(ms)")s"
through_both "$u1" "check-$stamp-1"

say "killing NATS container $KILL_NATS"
kill_at=$(ms)
docker kill "$(compose ps -q "$KILL_NATS")" >/dev/null
retry 120 "creating a user with $KILL_NATS down" sh -c "curl -fsS -X POST -H 'Authorization: Bearer $token' -H 'Content-Type: application/json' -d '{\"name\":\"check-$stamp-2\",\"idempotency_key\":\"check-$stamp-2\"}' $api/api/v1/users > '$CLUSTER_DIR/check-user.json'"
u2=$(jq -r .id "$CLUSTER_DIR/check-user.json")
say "user check-$stamp-2 created with $KILL_NATS down: $(secs "$kill_at" "$(ms)")s after the kill"
through_both "$u2" "check-$stamp-2"
say "from the kill to traffic through both agents for a new user: $(secs "$kill_at" "$(ms)")s"
connect "$(link "$u1" "$srv_a")" "$AGENT_A_PORT" || fail "check-$stamp-1 through agent-a after the kill"
say "check-$stamp-1 still connects through agent-a"

compose start "$KILL_NATS" >/dev/null 2>&1
say "started $KILL_NATS again; all checks passed"
