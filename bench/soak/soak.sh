#!/usr/bin/env bash
# Soak test: runs a moderate, bounded, mixed load through one protobalance
# process for DURATION and watches it for growth (RSS, descriptors, threads,
# goroutines, CPU). See bench/soak/README.md.
#
# Load, scheduled by one loop with 1-second ticks (every load run is a
# loadgen process bounded by a count and by -max, at most one per kind at a
# time, so nothing piles up on a slow machine):
#   short      every second: SHORT_N connections (connect, 100 B, 1 KB back,
#              close), SHORT_C at a time
#   keepalive  every 5 s: KA_N requests over KA_C persistent connections
#   bulk       every BULK_EVERY s: BULK_STREAMS streams (BULK_C at a time) of
#              BULK_BYTES each way, checksummed
#   idle pool  IDLE_SLOTS loadgen "idle" runs of IDLE_K connections each
#              (~IDLE_SLOTS*IDLE_K held open), each held IDLE_HOLD s, then
#              checked and closed, and replaced; the slots start staggered, so
#              ~IDLE_K connections are replaced every IDLE_HOLD/IDLE_SLOTS s
# Every SAMPLE_EVERY s: the balancer's VmRSS, open descriptors, threads,
# goroutines (protobalance_goroutines from /metrics), utime+stime, accepted
# connections and live connections, plus loadgen's errors, into samples.csv.
#
# Environment (all optional):
#   DURATION=30m            load time (s, m or h suffix)
#   SOAK_DATA_PATH=loop     [global] data_path: loop | goroutine | auto
#   SAMPLE_EVERY=30         seconds between samples
#   WARMUP, WINDOW          seconds; default min(300, DURATION/6) and
#                           min(300, (DURATION-WARMUP)/3): the verdict compares
#                           the median of [WARMUP, WARMUP+WINDOW) with the last WINDOW
#   SHORT_N=250 SHORT_C=4 KA_N=20000 KA_C=4 BULK_EVERY=60 BULK_STREAMS=2 BULK_C=2
#   BULK_BYTES=33554432 IDLE_SLOTS=8 IDLE_K=250 IDLE_HOLD=110 IDLE_C=25
#   BASE_PORT=24000         nodes 127.0.15.1-3:BASE+1, balancer 127.0.15.10:BASE+10,
#                           admin 127.0.15.10:BASE+90 (all must stay below 32768)
#   DRAIN_WAIT=15           seconds between the last loadgen run's end and the after-load sample
#   BIN=/tmp/pbsoak         where the binaries are built
#   OUT=DIR                 samples.csv, loads.jsonl, report.md, logs (default: new BIN/run.* dir)
#   SOAK_SAVE=1             also write bench/soak/results-DATE[-PATH].md (default: 1 when
#                           DURATION >= 10m); SAVE_TO=FILE writes there instead
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

secs() { # secs 30m -> 1800
	local v=$1
	case $v in
	*h) echo $((${v%h} * 3600)) ;;
	*m) echo $((${v%m} * 60)) ;;
	*s) echo $((${v%s})) ;;
	*) echo $((v)) ;;
	esac
}

DURATION=${DURATION:-30m}
DUR=$(secs "$DURATION")
DATA_PATH=${SOAK_DATA_PATH:-loop}
SAMPLE_EVERY=${SAMPLE_EVERY:-30}
WARMUP=${WARMUP:-$((DUR / 6 < 300 ? DUR / 6 : 300))}
WINDOW=${WINDOW:-$(((DUR - WARMUP) / 3 < 300 ? (DUR - WARMUP) / 3 : 300))}
SHORT_N=${SHORT_N:-250} SHORT_C=${SHORT_C:-4}
KA_N=${KA_N:-20000} KA_C=${KA_C:-4}
BULK_EVERY=${BULK_EVERY:-60} BULK_STREAMS=${BULK_STREAMS:-2} BULK_C=${BULK_C:-2} BULK_BYTES=${BULK_BYTES:-33554432}
IDLE_SLOTS=${IDLE_SLOTS:-8} IDLE_K=${IDLE_K:-250} IDLE_HOLD=${IDLE_HOLD:-110} IDLE_C=${IDLE_C:-25}
BASE_PORT=${BASE_PORT:-24000}
DRAIN_WAIT=${DRAIN_WAIT:-15}
BIN=${BIN:-/tmp/pbsoak}
if ((DUR >= 600)); then SOAK_SAVE=${SOAK_SAVE:-1}; else SOAK_SAVE=${SOAK_SAVE:-0}; fi

# Bound on pooled splice pipes, in descriptors: 32 per event loop (GOMAXPROCS=2
# loops) on the loop path, 128 on the goroutine path (internal/evloop, internal/relay).
case $DATA_PATH in goroutine) PIPE_CAP=256 ;; *) PIPE_CAP=128 ;; esac
case $DATA_PATH in loop | goroutine | auto) ;; *)
	echo "soak.sh: SOAK_DATA_PATH=$DATA_PATH: want loop, goroutine or auto" >&2
	exit 2
	;;
esac
((DUR >= 60)) || { echo "soak.sh: DURATION must be at least 1m" >&2; exit 2; }
((WINDOW >= SAMPLE_EVERY)) || echo "soak.sh: warning: WINDOW ${WINDOW}s < SAMPLE_EVERY ${SAMPLE_EVERY}s: the windows hold one sample or none" >&2

NODE_PORT=$((BASE_PORT + 1)) LB_PORT=$((BASE_PORT + 10)) ADMIN_PORT=$((BASE_PORT + 90))
((ADMIN_PORT < 32768)) || { echo "soak.sh: BASE_PORT too high" >&2; exit 2; }
NODES="127.0.15.1:$NODE_PORT,127.0.15.2:$NODE_PORT,127.0.15.3:$NODE_PORT"
LB="127.0.15.10:$LB_PORT"
ADMIN="127.0.15.10:$ADMIN_PORT"

# The exact command, for the report.
CMD="DURATION=$DURATION SOAK_DATA_PATH=$DATA_PATH"
for v in SAMPLE_EVERY WARMUP WINDOW SHORT_N SHORT_C KA_N KA_C BULK_EVERY BULK_STREAMS BULK_C BULK_BYTES \
	IDLE_SLOTS IDLE_K IDLE_HOLD IDLE_C BASE_PORT; do
	# only those given in the environment
	if printenv "$v" >/dev/null; then CMD+=" $v=${!v}"; fi
done
CMD+=" bench/soak/soak.sh"

mkdir -p "$BIN"
OUT=${OUT:-$(mktemp -d "$BIN/run.XXXXXX")}
mkdir -p "$OUT"
CSV=$OUT/samples.csv
LOADS=$OUT/loads.jsonl
: >"$LOADS"
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- processes we start, stopped by PID only -------------------------------
NODE_PID="" PB_PID=""
declare -A JOB_KIND=() JOB_OUT=() # running loadgen jobs, by PID

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
	local pid
	for pid in "${!JOB_KIND[@]}"; do stop_pid "$pid"; done
	stop_pid "$PB_PID"
	stop_pid "$NODE_PID"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------
# BUILD_RETRIES=N: when the tree does not build (someone is mid-edit), retry
# every 30 s, N times, before giving up.
build_all() {
	go build -o "$BIN/protobalance" ./cmd/protobalance &&
		go build -o "$BIN/benchnode" ./bench/cmd/benchnode &&
		go build -o "$BIN/loadgen" ./bench/cmd/loadgen
}
log "building into $BIN"
for ((try = 0; ; try++)); do
	build_all 2>"$OUT/build.log" && break
	if ((try >= ${BUILD_RETRIES:-0})); then
		cat "$OUT/build.log" >&2
		echo "soak.sh: the build failed (see above)" >&2
		exit 1
	fi
	log "build failed ($(head -c 300 "$OUT/build.log" | tr '\n' ' ')): retrying in 30 s"
	sleep 30
done
BUILT=$(date -u '+%H:%M:%S UTC')
# the tree as built (read-only git queries; the tree may change during the run)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" --no-optional-locks status --porcelain -- . ':!bench/soak' 2>/dev/null || true) ]]; then
	COMMIT+=" + uncommitted changes"
fi
PB_SUM=$(sha256sum "$BIN/protobalance" | cut -c1-16)
LOADGEN=$BIN/loadgen

for port in $NODE_PORT $LB_PORT $ADMIN_PORT; do
	if ss -Htln "( sport = :$port )" | grep -q .; then
		echo "soak.sh: port $port is already in use; choose another BASE_PORT" >&2
		exit 2
	fi
done

cat >"$OUT/protobalance.toml" <<EOF
[global]
shutdown_timeout = "2s"
data_path = "$DATA_PATH"

[admin]
listen = "$ADMIN"

[store]
path = "$OUT/protobalance.db"

[[listener]]
name = "soak"
bind = "$LB"
cluster = "soak"

[[cluster]]
name = "soak"
algorithm = "round-robin"

[[cluster.node]]
name = "n1"
address = "127.0.15.1:$NODE_PORT"

[[cluster.node]]
name = "n2"
address = "127.0.15.2:$NODE_PORT"

[[cluster.node]]
name = "n3"
address = "127.0.15.3:$NODE_PORT"
EOF

# --- measurement -----------------------------------------------------------
alive() { # alive NAME PID
	local state
	state=$(awk '{print $3}' "/proc/$2/stat" 2>/dev/null || true)
	if [[ -z $state || $state == Z ]]; then
		log "!!! $1 (PID $2) has died; see $OUT/$1.log"
		tail -20 "$OUT/$1.log" >&2 || true
		return 1
	fi
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
child_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; } # reaped children of this script (loadgens, curl, jq)
status_field() { awk -v k="$2:" '$1 == k {print $2; exit}' "/proc/$1/status" 2>/dev/null || echo 0; }
# (find fails when a descriptor closes while it reads the directory: not an error here)
fd_count() { { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null || true; } | wc -l; }
pipe_count() { { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -lname "pipe:*" 2>/dev/null || true; } | wc -l; } # pooled splice pipes, mostly

# metrics: prints "goroutines accepted active balancer_errors go_heap_kb go_free_kb
# go_stacks_kb go_runtime_kb" (-1 when /metrics does not answer)
metrics() {
	local m
	if ! m=$(curl -s --max-time 5 "http://$ADMIN/metrics"); then
		echo "-1 -1 -1 -1 -1 -1 -1 -1"
		return
	fi
	awk '
		/^protobalance_go_memory_bytes\{class="heap_objects"\}/ {gh = $2}
		/^protobalance_go_memory_bytes\{class="heap_free"\}/ {gf = $2}
		/^protobalance_go_memory_bytes\{class="stacks"\}/ {gs = $2}
		/^protobalance_go_memory_bytes\{class="runtime"\}/ {gr = $2}
		/^protobalance_goroutines / {g = $2}
		/^protobalance_listener_accepted_total\{listener="soak"\}/ {acc = $2}
		/^protobalance_listener_active_connections\{listener="soak"\}/ {act = $2}
		/^protobalance_node_connect_failures_total\{/ || /^protobalance_listener_no_node_total\{/ ||
		/^protobalance_listener_refused_total\{/ || /^protobalance_listener_no_source_port_total\{/ {e += $2}
		END {printf "%d %d %d %d %d %d %d %d\n", g + 0, acc + 0, act + 0, e + 0, gh / 1024, gf / 1024, gs / 1024, gr / 1024}' <<<"$m"
}

echo "t_s,phase,rss_kb,rss_anon_kb,rss_file_kb,fds,fds_extra,pipe_fds,threads,goroutines,pb_cpu_ticks,pb_cpu_pct,soak_cpu_pct,accepted,conns_per_s,active_conns,pb_errors,lg_runs,lg_errors,lg_errors_interval,lg_timed_out,short_p99_ms,short_max_ms,ka_p99_ms,idle_alive,loadavg1,go_heap_kb,go_free_kb,go_stacks_kb,go_runtime_kb" >"$CSV"
PREV_T="" PREV_CPU=0 PREV_ACC=0 PREV_ALL=0 PREV_ERR=0

# sample PHASE: append one row to the CSV (and a line to the log)
sample() {
	local phase=$1 now t rss anon file fds pipes thr g acc act pberr cpu all dt cpupct allpct cps lg extra gh gf gs gr
	now=$EPOCHREALTIME
	t=$(awk -v a="$now" -v b="$T0" 'BEGIN {printf "%.0f", a - b}')
	rss=$(status_field "$PB_PID" VmRSS)
	thr=$(status_field "$PB_PID" Threads)
	# Descriptors and the live-connection gauge are read separately; when an
	# idle batch closes or opens in between, "fds extra" is off by hundreds.
	# Read the gauge before and after the descriptors, and retry when it moved.
	local act0 try
	for ((try = 0; try < 5; try++)); do
		read -r g acc act0 pberr gh gf gs gr < <(metrics)
		fds=$(fd_count "$PB_PID")
		pipes=$(pipe_count "$PB_PID")
		read -r g acc act pberr gh gf gs gr < <(metrics)
		((act - act0 <= 10 && act0 - act <= 10)) && break
		sleep 0.2
	done
	anon=$(status_field "$PB_PID" RssAnon)
	file=$(status_field "$PB_PID" RssFile)
	cpu=$(cpu_ticks "$PB_PID")
	all=$((cpu + $(cpu_ticks "$NODE_PID") + $(child_ticks)))
	extra=$((fds - pipes - 2 * act))
	if [[ -n $PREV_T ]]; then
		dt=$(awk -v a="$now" -v b="$PREV_T" 'BEGIN {print a - b}')
		cpupct=$(awk -v c=$((cpu - PREV_CPU)) -v k="$CLK_TCK" -v d="$dt" 'BEGIN {printf "%.1f", 100 * c / k / d}')
		allpct=$(awk -v c=$((all - PREV_ALL)) -v k="$CLK_TCK" -v d="$dt" 'BEGIN {printf "%.1f", 100 * c / k / d}')
		cps=$(awk -v c=$((acc - PREV_ACC)) -v d="$dt" 'BEGIN {printf "%.1f", c / d}')
	else
		cpupct="" allpct="" cps=""
	fi
	# loadgen results: cumulative runs/errors/timeouts, and the worst latencies
	# of the runs that ended since the previous sample.
	lg=$(jq -rs --argjson a "${PREV_REL:-0}" '
		def sum(f): map(f // 0) | add // 0;
		def since: map(select(.t > $a));
		[length,
		 sum(.res.errors + (.res.checksum_errors // 0)),
		 (map(select(.res.timed_out == true)) | length),
		 (since | map(select(.kind == "short") | .res.p99_us // 0) | max // 0) / 1000,
		 (since | map(select(.kind == "short") | .res.max_us // 0) | max // 0) / 1000,
		 (since | map(select(.kind == "keepalive") | .res.p99_us // 0) | max // 0) / 1000,
		 (since | map(select(.kind == "idle")) | if length == 0 then "" else "\(sum(.res.alive))/\(sum(.res.opened))" end)
		] | map(tostring) | join(",")' "$LOADS") || lg="-1,-1,-1,,,,"
	local runs errs tout rest
	IFS=, read -r runs errs tout rest <<<"$lg"
	echo "$t,$phase,$rss,$anon,$file,$fds,$extra,$pipes,$thr,$g,$cpu,$cpupct,$allpct,$acc,$cps,$act,$pberr,$runs,$errs,$((errs - PREV_ERR)),$tout,$rest,$(cut -d' ' -f1 /proc/loadavg),$gh,$gf,$gs,$gr" >>"$CSV"
	log "sample t=${t}s $phase: rss ${rss} kB (anon $anon), fds $fds (pipes $pipes, extra $extra), threads $thr, goroutines $g, cpu ${cpupct}% (soak ${allpct}%), ${cps} conn/s, active $act, errors $errs (+$((errs - PREV_ERR))), pb errors $pberr"
	PREV_T=$now PREV_CPU=$cpu PREV_ACC=$acc PREV_ALL=$all PREV_ERR=$errs PREV_REL=$t
}

# --- jobs ------------------------------------------------------------------
launch() { # launch KIND ARGS...: one bounded loadgen run in the background
	local kind=$1 out
	shift
	out=$OUT/job.$kind.$RANDOM$RANDOM
	"$LOADGEN" "$@" >"$out" 2>>"$OUT/loadgen.log" &
	JOB_KIND[$!]=$kind
	JOB_OUT[$!]=$out
}
running() { # running KIND: is a job of this kind still going?
	local pid
	for pid in "${!JOB_KIND[@]}"; do [[ ${JOB_KIND[$pid]} == "$1" ]] && return 0; done
	return 1
}
reap() { # collect finished jobs into loads.jsonl
	local pid res t
	for pid in "${!JOB_KIND[@]}"; do
		kill -0 "$pid" 2>/dev/null && continue
		wait "$pid" 2>/dev/null || true
		res=$(head -1 "${JOB_OUT[$pid]}" 2>/dev/null || true)
		[[ $res == \{* ]] || res='{"errors":1,"first_error":"loadgen printed nothing"}'
		t=$(awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN {printf "%.0f", a - b}')
		echo "{\"t\":$t,\"kind\":\"${JOB_KIND[$pid]%%.*}\",\"res\":$res}" >>"$LOADS"
		if [[ $res == *'"first_error"'* ]]; then log "  ${JOB_KIND[$pid]} error: $res"; fi
		rm -f "${JOB_OUT[$pid]}"
		unset "JOB_KIND[$pid]" "JOB_OUT[$pid]"
	done
}

# --- start -----------------------------------------------------------------
START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
"$BIN/benchnode" -listen "$NODES" >"$OUT/benchnode.out" 2>"$OUT/benchnode.log" &
NODE_PID=$!
for ((i = 0; i < 100; i++)); do grep -q ready "$OUT/benchnode.out" 2>/dev/null && break; sleep 0.05; done
alive benchnode "$NODE_PID"
GOMAXPROCS=2 "$BIN/protobalance" run -c "$OUT/protobalance.toml" 2>"$OUT/protobalance.log" &
PB_PID=$!
log "benchnode PID $NODE_PID, protobalance PID $PB_PID (data_path $DATA_PATH), out $OUT"
"$LOADGEN" probe -target "$LB" -max 10s >"$OUT/probe.json"
alive protobalance "$PB_PID"
for ((i = 0; i < 100; i++)); do curl -s --max-time 1 -o /dev/null "http://$ADMIN/metrics" && break; sleep 0.1; done
T0=$EPOCHREALTIME
sample start
log "load for ${DUR}s: short ${SHORT_N}x${SHORT_C}/s, keepalive ${KA_N}x${KA_C}/5s, bulk ${BULK_STREAMS}x${BULK_BYTES}B/${BULK_EVERY}s, idle ${IDLE_SLOTS}x${IDLE_K} held ${IDLE_HOLD}s"

# --- load loop ---------------------------------------------------------------
STAGGER=$((IDLE_HOLD / IDLE_SLOTS))
NEXT_SAMPLE=$SAMPLE_EVERY
for ((tick = 0; ; tick++)); do
	# sleep until T0 + tick seconds
	d=$(awk -v t0="$T0" -v k="$tick" -v now="$EPOCHREALTIME" 'BEGIN {d = t0 + k - now; printf "%.3f", (d > 0 ? d : 0)}')
	sleep "$d"
	((tick < DUR)) || break
	reap
	if ! alive protobalance "$PB_PID" || ! alive benchnode "$NODE_PID"; then
		DIED=1
		break
	fi
	left=$((DUR - tick))
	running short || launch short short -target "$LB" -n "$SHORT_N" -c "$SHORT_C" -max 5s
	if ((tick % 5 == 0)) && ! running keepalive; then
		launch keepalive keepalive -target "$LB" -n "$KA_N" -c "$KA_C" -max 15s
	fi
	if ((tick % BULK_EVERY == BULK_EVERY / 2 && left > 40)) && ! running bulk; then
		launch bulk bulk -target "$LB" -streams "$BULK_STREAMS" -c "$BULK_C" -up "$BULK_BYTES" -down "$BULK_BYTES" -max 30s
	fi
	for ((s = 0; s < IDLE_SLOTS; s++)); do
		# slot s starts at s*STAGGER; a run near the end holds only until DURATION
		if ((tick >= s * STAGGER && left >= 30)) && ! running "idle.$s"; then
			hold=$((left - 15 < IDLE_HOLD ? left - 15 : IDLE_HOLD))
			launch "idle.$s" idle -target "$LB" -k "$IDLE_K" -c "$IDLE_C" -hold "${hold}s" -max "$((hold + 60))s"
		fi
	done
	if ((tick >= NEXT_SAMPLE)); then
		sample load
		NEXT_SAMPLE=$((NEXT_SAMPLE + SAMPLE_EVERY))
	fi
done

# --- drain -------------------------------------------------------------------
log "load time over: waiting for the running loadgens (all bounded by -max)"
for ((i = 0; i < 900 && ${#JOB_KIND[@]} > 0; i++)); do
	reap
	sleep 0.1
done
if ((${#JOB_KIND[@]} > 0)); then
	log "!!! ${#JOB_KIND[@]} loadgen runs still going after 90 s: stopping them"
	for pid in "${!JOB_KIND[@]}"; do stop_pid "$pid"; done
	reap
fi
sleep "$DRAIN_WAIT" # let the last closes finish, and idle goroutine-path workers (10 s) exit
if [[ -z ${DIED:-} ]] && alive protobalance "$PB_PID"; then sample drain; fi
END=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ------------------------------------------------------------------
# table + verdict from the CSV (awk: medians, least-squares slopes)
report_table() {
	awk -F, -v warm="$WARMUP" -v win="$WINDOW" -v dur="$DUR" -v pipecap="$PIPE_CAP" -v drainwait="$DRAIN_WAIT" '
	function median(a, n,   i, j, t) {
		if (n == 0) return 0
		for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function slope(xs, ys, n,   i, sx, sy, sxx, sxy) {
		if (n < 2) return 0
		for (i = 1; i <= n; i++) { sx += xs[i]; sy += ys[i]; sxx += xs[i] * xs[i]; sxy += xs[i] * ys[i] }
		return (n * sxx - sx * sx) == 0 ? 0 : (n * sxy - sx * sy) / (n * sxx - sx * sx)
	}
	function v(name) { return $(col[name]) }
	NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
	{
		t = v("t_s"); ph = v("phase"); rss = v("rss_kb") / 1024; fds = v("fds"); ex = v("fds_extra"); pp = v("pipe_fds")
		thr = v("threads"); g = v("goroutines")
		tag = ph
		if (ph == "load") tag = t < warm ? "warm-up" : (t < warm + win ? "first" : (t > dur - win ? "last" : ""))
		printf "| %02d:%02d | %s | %.1f | %.1f | %d | %d | %d | %d | %d | %s | %s | %s | %d | %s | %d / %d | %s |\n", \
			int(t / 60), t % 60, tag, rss, v("rss_anon_kb") / 1024, fds, pp, ex, thr, g, v("pb_cpu_pct"), v("soak_cpu_pct"), v("conns_per_s"), \
			v("active_conns"), v("short_p99_ms"), v("lg_errors_interval"), v("lg_errors"), v("idle_alive")
		if (ph == "start") { s_fds = fds; s_np = fds - pp; s_g = g; s_rss = rss; s_thr = thr }
		if (ph == "drain") { d_fds = fds; d_np = fds - pp; d_pp = pp; d_g = g; d_rss = rss; d_thr = thr; d_act = v("active_conns"); have_drain = 1 }
		if (ph == "load") {
			if (v("lg_errors") + 0 > maxerr) maxerr = v("lg_errors")
			if (v("lg_errors_interval") + 0 > maxerri) maxerri = v("lg_errors_interval")
			if (v("short_p99_ms") + 0 > maxp99) { maxp99 = v("short_p99_ms"); maxp99t = t }
			if (v("short_max_ms") + 0 > maxlat) { maxlat = v("short_max_ms"); maxlatt = t }
			if (v("ka_p99_ms") + 0 > maxka) { maxka = v("ka_p99_ms"); maxkat = t }
			if (thr > maxthr) maxthr = thr
			if (pp > maxpp) maxpp = pp
			if (v("pb_errors") + 0 > pberr) pberr = v("pb_errors")
			if (v("lg_timed_out") + 0 > tout) tout = v("lg_timed_out")
			if (v("pb_cpu_pct") != "") { ncpu++; spb += v("pb_cpu_pct"); ssoak += v("soak_cpu_pct"); scps += v("conns_per_s") }
			split(v("idle_alive"), ia, "/"); ialive += ia[1]; iopened += ia[2]
		}
		if (ph == "load" && t >= dur / 2) { n2++; X2[n2] = t / 3600; R2[n2] = rss; A2[n2] = v("rss_anon_kb") / 1024 }
		gh = v("go_heap_kb") / 1024; gz = v("go_free_kb") / 1024; gs = (v("go_stacks_kb") + v("go_runtime_kb")) / 1024
		if (ph == "load" && t >= warm) { n++; X[n] = t / 3600; R[n] = rss; A[n] = v("rss_anon_kb") / 1024; F[n] = fds; E[n] = ex; G[n] = g; P[n] = pp; H[n] = gh; Z[n] = gz }
		if (ph == "load" && t >= warm && t < warm + win) { nf++; fR[nf] = rss; fA[nf] = v("rss_anon_kb") / 1024; fF[nf] = fds; fE[nf] = ex; fG[nf] = g; fT[nf] = thr; fP[nf] = pp; fH[nf] = gh; fZ[nf] = gz; fS[nf] = gs }
		if (ph == "load" && t > dur - win) { nl++; lR[nl] = rss; lA[nl] = v("rss_anon_kb") / 1024; lF[nl] = fds; lE[nl] = ex; lG[nl] = g; lT[nl] = thr; lP[nl] = pp; lH[nl] = gh; lZ[nl] = gz; lS[nl] = gs }
	}
	END {
		mfR = median(fR, nf); mlR = median(lR, nl)
		mfA = median(fA, nf); mlA = median(lA, nl)
		sA = slope(X, A, n); sR2 = slope(X2, R2, n2); sA2 = slope(X2, A2, n2)
		mfF = median(fF, nf); mlF = median(lF, nl)
		mfE = median(fE, nf); mlE = median(lE, nl)
		mfP = median(fP, nf); mlP = median(lP, nl)
		mfG = median(fG, nf); mlG = median(lG, nl)
		mfT = median(fT, nf); mlT = median(lT, nl)
		sR = slope(X, R, n); sF = slope(X, F, n); sE = slope(X, E, n); sG = slope(X, G, n); sP = slope(X, P, n)
		print ""
		printf "Windows: first = [%ds, %ds) after a %ds warm-up (%d samples), last = the final %ds (%d samples); slopes are least squares over the %d samples after warm-up.\n\n", warm, warm + win, warm, nf, win, nl, n
		print "| figure | first window (median) | last window (median) | change | slope per hour |"
		print "|---|---|---|---|---|"
		printf "| RSS, MiB | %.1f | %.1f | %+.1f (%+.1f%%) | %+.2f MiB/h (second half of the run: %+.2f) |\n", mfR, mlR, mlR - mfR, mfR ? 100 * (mlR - mfR) / mfR : 0, sR, sR2
		printf "| RssAnon, MiB | %.1f | %.1f | %+.1f | %+.2f MiB/h (second half: %+.2f) |\n", mfA, mlA, mlA - mfA, sA, sA2
		mfH = median(fH, nf); mlH = median(lH, nl); mfZ = median(fZ, nf); mlZ = median(lZ, nl); mfS = median(fS, nf); mlS = median(lS, nl)
		printf "| Go heap objects (live and not yet swept), MiB | %.1f | %.1f | %+.1f | %+.2f MiB/h |\n", mfH, mlH, mlH - mfH, slope(X, H, n)
		printf "| Go heap held but free (fragmentation, not yet scavenged), MiB | %.1f | %.1f | %+.1f | %+.2f MiB/h |\n", mfZ, mlZ, mlZ - mfZ, slope(X, Z, n)
		printf "| Go stacks and runtime metadata, MiB | %.1f | %.1f | %+.1f | |\n", mfS, mlS, mlS - mfS
		printf "| open descriptors (swing with the idle pool) | %d | %d | %+d | %+.0f /h |\n", mfF, mlF, mlF - mfF, sF
		printf "| descriptors neither pipes nor held by a live connection (fds − pipes − 2 × live) | %d | %d | %+d | %+.1f /h |\n", mfE, mlE, mlE - mfE, sE
		printf "| pipe descriptors (splice pipes, pooled; pool bound %d) | %d | %d | %+d | %+.1f /h |\n", pipecap, mfP, mlP, mlP - mfP, sP
		printf "| goroutines | %d | %d | %+d | %+.0f /h |\n", mfG, mlG, mlG - mfG, sG
		printf "| threads | %d | %d | %+d | |\n", mfT, mlT, mlT - mfT
		print ""
		if (have_drain)
			printf "Before load vs after load (every loadgen finished, +%d s): RSS %.1f → %.1f MiB; descriptors %d → %d (non-pipe %d → %d, pipe %d after); threads %d → %d; goroutines %d → %d; live connections after: %d.\n\n", drainwait, s_rss, d_rss, s_fds, d_fds, s_np, d_np, d_pp, s_thr, d_thr, s_g, d_g, d_act
		else
			print "No after-load sample: the balancer or the nodes died (see the log).\n"
		printf "Over the load: loadgen errors %d in all (worst interval %d), runs cut short by -max %d, balancer-side errors (connect failures, no node, refused, no source port) %d; idle connections alive after their hold %d of %d; threads at most %d, pipe descriptors at most %d; worst short p99 %.2f ms (at %ds), worst short max %.2f ms (at %ds), worst keep-alive p99 %.2f ms (at %ds); mean balancer CPU %.1f%% of one core, whole soak %.1f%%, %.1f conn/s.\n\n", \
			maxerr, maxerri, tout, pberr, ialive, iopened, maxthr, maxpp, maxp99, maxp99t, maxlat, maxlatt, maxka, maxkat, ncpu ? spb / ncpu : 0, ncpu ? ssoak / ncpu : 0, ncpu ? scps / ncpu : 0
		# Verdict rules (see the Rule line).
		rg = (mlR - mfR > 2 && mlR - mfR > 0.05 * mfR)
		fg = (mlE - mfE > 10) || (mlP - mfP > 16) || (have_drain && d_np > s_np + 2) || maxpp > pipecap
		gg = have_drain && (d_g > s_g + 5)
		verdict = (rg || fg || gg) ? "GROWING" : "FLAT"
		printf "**Verdict: %s.** RSS %s (%+.1f MiB between the window medians, slope %+.2f MiB/h); descriptors %s (%+d between windows not counting pipes and live connections, raw slope %+.0f/h; %s); goroutines %s.\n\n", verdict, \
			rg ? "growing" : "flat", mlR - mfR, sR, fg ? "growing" : "flat", mlE - mfE, sF, \
			have_drain ? sprintf("non-pipe descriptors %d before load, %d after", s_np, d_np) : "no after-load sample", \
			have_drain ? (gg ? sprintf("not back to start (%d → %d)", s_g, d_g) : sprintf("back to start (%d → %d)", s_g, d_g)) : "?"
		print "Rule: RSS grows when the last window median exceeds the first by more than max(2 MiB, 5%). Descriptors grow when those neither pipes nor held by live connections rise by more than 10 between the windows, pipe descriptors by more than 16 or above the pool bound, or non-pipe descriptors after the load exceed those before it by more than 2. Goroutines grow when more than 5 more remain after the load than before it."
	}' "$CSV"
}

{
	echo "# Soak: protobalance, data_path = \"$DATA_PATH\", $DURATION"
	echo
	echo "- command: \`$CMD\` (from the module root)"
	echo "- started $START, ended $END; machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), $(go version | cut -d' ' -f3); load average before $LOAD0, after $LOAD1"
	echo "- built $BUILT from $COMMIT (tree state at build time, bench/soak/ not counted); protobalance sha256 $PB_SUM…"
	echo "- load (bounded loadgen runs, one per kind at a time): short ${SHORT_N} conns x${SHORT_C} every 1 s; keep-alive ${KA_N} requests x${KA_C} every 5 s; bulk ${BULK_STREAMS} streams x${BULK_C} of ${BULK_BYTES} B each way every ${BULK_EVERY} s; idle pool ${IDLE_SLOTS} x ${IDLE_K} connections, each batch held ${IDLE_HOLD} s then checked, closed and reopened (staggered ${STAGGER} s)"
	echo "- balancer: GOMAXPROCS=2, admin on $ADMIN; samples every ${SAMPLE_EVERY} s; goroutines from \`protobalance_goroutines\` (/metrics), RSS/threads from /proc/PID/status, descriptors from /proc/PID/fd, CPU from /proc/PID/stat"
	echo
	echo "Columns: anon = RssAnon (heap, stacks, buffers; RSS also counts pages of the binary); pb CPU = the balancer's utime+stime over the interval, % of one core; soak CPU = balancer + nodes + loadgens + sampling; pipe fds = descriptors that are pipes (splice pipes: in use or pooled); fds extra = descriptors − pipe fds − 2 × live connections; p99 = worst short-connection p99 among the runs that ended in the interval; errors = loadgen errors in the interval / cumulative; idle = alive/opened of the idle batches that ended in the interval."
	echo
	echo "| time | window | RSS MiB | anon MiB | fds | pipe fds | fds extra | threads | goroutines | pb CPU % | soak CPU % | conns/s | live conns | short p99 ms | errors | idle alive |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	report_table
} >"$OUT/report.md"
cat "$OUT/report.md"

if [[ $SOAK_SAVE == 1 ]]; then
	suffix=""
	[[ $DATA_PATH == loop ]] || suffix=-$DATA_PATH
	dest=${SAVE_TO:-$ROOT/bench/soak/results-$(date -u +%F)$suffix.md}
	[[ ! -e $dest ]] || dest=${dest%.md}-$(date -u +%H%M).md
	{
		cat "$OUT/report.md"
		echo
		echo "## Samples (CSV)"
		echo
		echo '```csv'
		cat "$CSV"
		echo '```'
	} >"$dest"
	log "saved $dest"
fi
log "report: $OUT/report.md; samples: $CSV; loadgen results: $LOADS; logs: $OUT"
[[ -z ${DIED:-} ]] || exit 1
