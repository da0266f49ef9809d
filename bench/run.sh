#!/usr/bin/env bash
# Side-by-side benchmark: direct (no balancer), Proto Balance and HAProxy over
# the same three loopback nodes, alternating, several rounds; prints a markdown
# table of medians and ratios. See bench/README.md.
#
# Environment (all optional):
#   ROUNDS=5          rounds (QUICK=1: 2)
#   BUDGET=720        seconds after which no new round starts (QUICK=1: 90), so a slow,
#                     noisy machine still ends near 15 minutes (2 for QUICK) with fewer rounds
#   QUICK=1           ~2-minute smoke run with smaller scenarios
#   OUT=DIR           where results.jsonl, table.md and logs go (default: a new /tmp/pbbench.* dir)
#   BASE_PORT=23000   nodes listen on BASE_PORT+1, balancers on BASE_PORT+10 (must be < 32768)
#   SKIP_PB=1         leave out Proto Balance;  SKIP_HAPROXY=1  leave out HAProxy
#   DATA_PATH=auto    Proto Balance's [global] data_path: auto (event loops on Linux) | loop | goroutine
#   HAPROXY_SPLICE=forced  HAProxy splices both ways (option splice-request + splice-response);
#                     =auto  option splice-auto; default: none, HAProxy's stock buffered copy
#   SHORT_N, SHORT_C, KA_N, KA_C, BULK_STREAMS, BULK_C, BULK_BYTES, IDLE_K, IDLE_HOLD,
#   LAT_N, LAT_C: scenario sizes
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	ROUNDS=${ROUNDS:-2} BUDGET=${BUDGET:-90}
	SHORT_N=${SHORT_N:-8000} KA_N=${KA_N:-40000} BULK_STREAMS=${BULK_STREAMS:-2} LAT_N=${LAT_N:-1000}
	BULK_BYTES=${BULK_BYTES:-134217728} IDLE_HOLD=${IDLE_HOLD:-1s}
else
	ROUNDS=${ROUNDS:-5} BUDGET=${BUDGET:-720}
fi
SHORT_N=${SHORT_N:-30000} SHORT_C=${SHORT_C:-50}
KA_N=${KA_N:-150000} KA_C=${KA_C:-50}
BULK_STREAMS=${BULK_STREAMS:-4} BULK_C=${BULK_C:-2} BULK_BYTES=${BULK_BYTES:-268435456}
IDLE_K=${IDLE_K:-9900} IDLE_HOLD=${IDLE_HOLD:-5s}
LAT_N=${LAT_N:-3000} LAT_C=${LAT_C:-2}
BASE_PORT=${BASE_PORT:-23000}
MAX=60s # hard bound on every loadgen run

NODE_PORT=$((BASE_PORT + 1))
LB_PORT=$((BASE_PORT + 10))
((LB_PORT < 32768)) || { echo "run.sh: BASE_PORT too high: ports must stay below 32768" >&2; exit 2; }
NODES="127.0.9.1:$NODE_PORT,127.0.9.2:$NODE_PORT,127.0.9.3:$NODE_PORT"
PB_ADDR="127.0.9.10:$LB_PORT"
HAP_ADDR="127.0.9.11:$LB_PORT"

TMP=$(mktemp -d /tmp/pbbench.XXXXXX)
OUT=${OUT:-$TMP}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
loud() { printf '\n!!! %s\n\n' "$*" >&2; }

# --- processes we start, stopped by PID only -------------------------------
NODE_PID="" PB_PID="" HAP_PID=""

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
	local pid=$1 i
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	log "PID $pid ignored SIGTERM for 5 s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	stop_pid "$PB_PID"
	stop_pid "$HAP_PID"
	stop_pid "$NODE_PID"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------
log "building into $TMP"
go build -o "$TMP/benchnode" ./bench/cmd/benchnode
go build -o "$TMP/loadgen" ./bench/cmd/loadgen
go build -o "$TMP/benchreport" ./bench/cmd/benchreport
LOADGEN=$TMP/loadgen

TARGETS=(direct)
if [[ ${SKIP_PB:-0} == 1 ]]; then
	loud "SKIP_PB=1: the protobalance column will be empty"
elif go build -o "$TMP/protobalance" ./cmd/protobalance 2>"$TMP/pb-build.log"; then
	TARGETS+=(protobalance)
else
	loud "protobalance does not build (see $TMP/pb-build.log): SKIPPING the protobalance column"
	tail -5 "$TMP/pb-build.log" >&2
fi
if [[ ${SKIP_HAPROXY:-0} == 1 ]]; then
	loud "SKIP_HAPROXY=1: the haproxy column will be empty"
elif HAPROXY=$(command -v haproxy); then
	TARGETS+=(haproxy)
else
	loud "haproxy is not installed (apt-get install -y --no-install-recommends haproxy): SKIPPING the haproxy column"
fi

for port in $NODE_PORT $LB_PORT; do
	if ss -Htln "( sport = :$port )" | grep -q .; then
		echo "run.sh: port $port is already in use; choose another BASE_PORT" >&2
		exit 2
	fi
done

# --- configs ---------------------------------------------------------------
# GOMAXPROCS=2 for protobalance, nbthread 2 for HAProxy. HAProxy 2.6 needs
# 2*maxconn + 2*maxpipes + 17 descriptors and refuses to start when that
# exceeds the hard limit (20,000 here), so maxconn 10000 becomes 9990 (9950
# with splice, which also needs a few pipes): still above 9,900.
HAP_MAXCONN=10000 HAP_PIPES=0 SPLICE="" PIPES_LINE=""
case ${HAPROXY_SPLICE:-none} in
none | 0 | "") ;;
auto) SPLICE="    option splice-auto" ;;
forced | 1) SPLICE=$'    option splice-request\n    option splice-response' ;;
*) echo "run.sh: HAPROXY_SPLICE=$HAPROXY_SPLICE: want none, auto or forced" >&2; exit 2 ;;
esac
if [[ -n $SPLICE ]]; then
	HAP_PIPES=32 # the bulk scenario splices at most 2*BULK_C streams at once
	PIPES_LINE="    maxpipes $HAP_PIPES"
fi
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((2 * HAP_MAXCONN + 2 * HAP_PIPES + 17 > hard)); then
	HAP_MAXCONN=$(((hard - 17 - 2 * HAP_PIPES) / 2 / 10 * 10))
	log "descriptor limit $hard: HAProxy maxconn lowered from 10000 to $HAP_MAXCONN"
fi
cat >"$TMP/haproxy.cfg" <<EOF
global
    maxconn $HAP_MAXCONN
$PIPES_LINE
    nbthread 2

defaults
    mode tcp
    timeout connect 3s
    timeout client 1h
    timeout server 1h
    timeout client-fin 1m
    timeout server-fin 1m
$SPLICE

frontend bench
    bind $HAP_ADDR
    default_backend nodes

backend nodes
    balance roundrobin
    server n1 127.0.9.1:$NODE_PORT
    server n2 127.0.9.2:$NODE_PORT
    server n3 127.0.9.3:$NODE_PORT
EOF

cat >"$TMP/protobalance.toml" <<EOF
[global]
shutdown_timeout = "1s"
data_path = "${DATA_PATH:-auto}"

[admin]
listen = ""

[store]
path = "$TMP/protobalance.db"

[[listener]]
name = "bench"
bind = "$PB_ADDR"
cluster = "bench"

[[cluster]]
name = "bench"
algorithm = "round-robin"

[[cluster.node]]
name = "n1"
address = "127.0.9.1:$NODE_PORT"

[[cluster.node]]
name = "n2"
address = "127.0.9.2:$NODE_PORT"

[[cluster.node]]
name = "n3"
address = "127.0.9.3:$NODE_PORT"
EOF

# --- measurement helpers ---------------------------------------------------
# utime+stime of all threads; 0 when the process has gone (alive() reports that).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ {v = $2} END {print v + 0}' "/proc/$1/status" 2>/dev/null || echo 0; }
addr_of() { case $1 in direct) echo "$NODES" ;; protobalance) echo "$PB_ADDR" ;; haproxy) echo "$HAP_ADDR" ;; esac; }
pid_of() { case $1 in protobalance) echo "$PB_PID" ;; haproxy) echo "$HAP_PID" ;; *) echo "" ;; esac; }
record() { echo "$1" >>"$RESULTS"; }

alive() { # alive NAME PID: is the process still there (not a zombie)?
	local state
	state=$(awk '{print $3}' "/proc/$2/stat" 2>/dev/null || true)
	if [[ -z $state || $state == Z ]]; then
		loud "$1 (PID $2) has died; see $TMP/$1.log"
		tail -20 "$TMP/$1.log" >&2 || true
		return 1
	fi
}

# start_balancer ROUND NAME: launch, then time the first forwarded connection.
start_balancer() {
	local round=$1 name=$2 t0 res pid
	t0=$EPOCHREALTIME
	case $name in
	protobalance)
		GOMAXPROCS=2 "$TMP/protobalance" run -c "$TMP/protobalance.toml" 2>>"$TMP/protobalance.log" &
		PB_PID=$!
		;;
	haproxy)
		"$HAPROXY" -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
		HAP_PID=$!
		;;
	esac
	res=$("$LOADGEN" probe -target "$(addr_of "$name")" -since "$t0" -max 10s)
	pid=$(pid_of "$name")
	if ! alive "$name" "$pid"; then
		case $name in protobalance) PB_PID="" ;; haproxy) HAP_PID="" ;; esac
		return 1
	fi
	record "{\"round\":$round,\"target\":\"$name\",\"scenario\":\"start\",\"rss_kb\":$(rss_kb "$pid"),\"res\":$res}"
	log "  $name started: $res"
}

# run_scenario ROUND TARGET SCENARIO
run_scenario() {
	local round=$1 t=$2 sc=$3 addr pid c0=0 c1=0 r0=0 r1=0 res ready
	addr=$(addr_of "$t")
	pid=$(pid_of "$t")
	if [[ -n $pid ]]; then alive "$t" "$pid" || return 0; fi
	alive benchnode "$NODE_PID" || exit 1
	if [[ -n $pid ]]; then c0=$(cpu_ticks "$pid") r0=$(rss_kb "$pid"); fi
	case $sc in
	short) res=$("$LOADGEN" short -target "$addr" -n "$SHORT_N" -c "$SHORT_C" -max $MAX) ;;
	latency) res=$("$LOADGEN" short -target "$addr" -n "$LAT_N" -c "$LAT_C" -max $MAX) ;;
	keepalive) res=$("$LOADGEN" keepalive -target "$addr" -n "$KA_N" -c "$KA_C" -max $MAX) ;;
	bulk) res=$("$LOADGEN" bulk -target "$addr" -streams "$BULK_STREAMS" -c "$BULK_C" \
		-up "$BULK_BYTES" -down "$BULK_BYTES" -max $MAX) ;;
	idle)
		ready=$TMP/idle-ready
		rm -f "$ready"
		"$LOADGEN" idle -target "$addr" -k "$IDLE_K" -hold "$IDLE_HOLD" -ready "$ready" -max $MAX >"$TMP/idle.out" &
		local lg=$!
		while [[ ! -f $ready ]] && kill -0 $lg 2>/dev/null; do sleep 0.05; done
		if [[ -n $pid && -f $ready ]]; then
			sleep 0.5 # let the last accepted connections settle
			r1=$(rss_kb "$pid")
		fi
		wait $lg || true
		res=$(cat "$TMP/idle.out")
		;;
	esac
	[[ -n $res ]] || res='{"errors":1,"first_error":"loadgen printed nothing"}'
	if [[ -n $pid ]]; then
		sleep 0.5 # count the balancer's work on the last closes too
		c1=$(cpu_ticks "$pid")
		if [[ $sc != idle ]]; then r1=$(rss_kb "$pid"); fi
	fi
	record "{\"round\":$round,\"target\":\"$t\",\"scenario\":\"$sc\",\"cpu_ticks\":$((c1 - c0)),\"clk_tck\":$CLK_TCK,\"rss_before_kb\":$r0,\"rss_after_kb\":$r1,\"res\":$res}"
	log "  $sc $t: cpu $(((c1 - c0)))/$CLK_TCK s: $res"
}

# --- run -------------------------------------------------------------------
START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
"$TMP/benchnode" -listen "$NODES" >"$TMP/benchnode.out" 2>"$TMP/benchnode.log" &
NODE_PID=$!
for ((i = 0; i < 100; i++)); do grep -q ready "$TMP/benchnode.out" 2>/dev/null && break; sleep 0.05; done
alive benchnode "$NODE_PID" || exit 1
log "targets: ${TARGETS[*]}; $ROUNDS rounds; results in $RESULTS"

SCENARIOS=(idle short keepalive bulk latency) # idle first: fresh balancers give a clean RSS delta
for ((round = 1; round <= ROUNDS; round++)); do
	if ((round > 1 && SECONDS > BUDGET)); then
		loud "time budget of ${BUDGET}s spent after $((round - 1)) of $ROUNDS rounds: stopping here"
		break
	fi
	log "round $round/$ROUNDS"
	# Direct "start" is the probe's own floor: exec + one round trip to a running node.
	record "{\"round\":$round,\"target\":\"direct\",\"scenario\":\"start\",\"res\":$("$LOADGEN" probe -target "$NODES" -since "$EPOCHREALTIME" -max 10s)}"
	for t in "${TARGETS[@]:1}"; do start_balancer "$round" "$t" || true; done
	# Rotate the order every round so no target always runs first or last.
	order=()
	for ((i = 0; i < ${#TARGETS[@]}; i++)); do order+=("${TARGETS[(i + round) % ${#TARGETS[@]}]}"); done
	for sc in "${SCENARIOS[@]}"; do
		for t in "${order[@]}"; do
			if [[ $t == direct || -n $(pid_of "$t") ]]; then run_scenario "$round" "$t" "$sc"; fi
		done
	done
	stop_pid "$PB_PID"
	stop_pid "$HAP_PID"
	PB_PID="" HAP_PID=""
done

{
	echo "## Proto Balance benchmark, $START"
	echo
	echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r); load average before $LOAD0, after $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- $(go version | cut -d' ' -f3), ${HAPROXY:+$("$HAPROXY" -v | head -1 | cut -d' ' -f1-3)}, HAProxy maxconn $HAP_MAXCONN, splice: ${HAPROXY_SPLICE:-none (stock buffered copy; HAPROXY_SPLICE=forced to splice)}"
	echo "- Proto Balance data_path: ${DATA_PATH:-auto} (auto = event loops on Linux)"
	echo "- scenarios: short $SHORT_N conns x$SHORT_C; keep-alive $KA_N requests x$KA_C; bulk $BULK_STREAMS streams x$BULK_C of $BULK_BYTES B each way; idle $IDLE_K conns held $IDLE_HOLD; low-load latency $LAT_N conns x$LAT_C"
	echo "- targets: ${TARGETS[*]}"
	echo
	"$TMP/benchreport" "$RESULTS"
} >"$OUT/table.md"
cat "$OUT/table.md"
log "table: $OUT/table.md; raw: $RESULTS; logs: $TMP"
