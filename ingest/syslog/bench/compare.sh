#!/usr/bin/env bash
# compare.sh: the syslog receiver's end-to-end figures, side by side, in one run
# on this machine (the load generator shares the box with every receiver):
#
#   1. logstreamd, core NATS mode:  RFC 5424 over TCP (octet counting) from
#      `logstream bench syslog`, counted on a NATS subscriber;
#   2. logstreamd, JetStream mode:  the same;
#   3. a bare JetStream async publisher of the same entries into the same
#      daemon's stream (`logstream bench jsbaseline`), with the same counting
#      subscriber;
#   4. rsyslog (imptcp -> omfile), started here with its own configuration,
#      receiving the same load, counted as lines of its output file;
#   5. UDP at a fixed rate (100,000/s for 10 s) into logstreamd (core and
#      JetStream) and into rsyslog (imudp -> omfile): what is lost.
#
# Each TCP measurement runs ROUNDS times, interleaved, and the median is
# printed, so that other load on the machine weighs on every column alike.
#
# Usage: ingest/syslog/bench/compare.sh            (from the repository root)
#   COUNT=1000000 CONNS=4 SIZE=200 ROUNDS=3 UDP_RATE=100000 UDP_SECONDS=10
# Needs: go, rsyslog (rsyslogd), ss (iproute2).
set -euo pipefail
cd "$(dirname "$0")/../../.."

COUNT=${COUNT:-1000000}
CONNS=${CONNS:-4}
SIZE=${SIZE:-200}
ROUNDS=${ROUNDS:-3}
UDP_RATE=${UDP_RATE:-100000}
UDP_SECONDS=${UDP_SECONDS:-10}
BASE_COUNT=${BASE_COUNT:-$((COUNT / 2))}

command -v rsyslogd >/dev/null || { echo "rsyslogd not found: apt-get install rsyslog" >&2; exit 1; }
command -v ss >/dev/null || { echo "ss not found: apt-get install iproute2" >&2; exit 1; }

tmp=$(mktemp -d /tmp/logstream-compare.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "building into $tmp/bin" >&2
go build -o "$tmp/bin/" ./cmd/logstreamd ./cmd/logstream
LS="$tmp/bin/logstream"

freeport() {
	local p
	while :; do
		# Below the kernel's ephemeral range (32768+), so that no client
		# connection takes the port between this check and the bind; and
		# no socket of any state on it now.
		p=$((RANDOM % 12000 + 20000))
		if ! ss -Htuan "sport = :$p" | grep -q .; then echo "$p"; return; fi
	done
}

# json KEY FILE: a number from a one-line JSON report.
json() { { grep -o "\"$1\":[-0-9.e+]*" "$2" || true; } | head -1 | cut -d: -f2; }

# start_daemon MODE (core|jetstream): a fresh logstreamd with its own state and
# free ports; sets DPID, NATS, SYSLOG_PORT, METRICS.
start_daemon() {
	local mode=$1 js=false dir
	[ "$mode" = jetstream ] && js=true
	dir=$(mktemp -d "$tmp/$mode.XXXX")
	local nats_port http_port
	nats_port=$(freeport); SYSLOG_PORT=$(freeport); http_port=$(freeport)
	cat >"$dir/logstreamd.yaml" <<EOF
state_dir: $dir/state
log: {level: warn}
http: {listen: "127.0.0.1:$http_port"}
grpc: {listen: ""}
journald: {enabled: false}
bus:
  jetstream: $js
  embedded: {listen: "127.0.0.1:$nats_port"}
syslog:
  listeners:
    - {name: syslog, protocol: udp, address: "127.0.0.1:$SYSLOG_PORT"}
    - {name: syslog, protocol: tcp, address: "127.0.0.1:$SYSLOG_PORT"}
EOF
	"$tmp/bin/logstreamd" -config "$dir/logstreamd.yaml" >"$dir/log" 2>&1 &
	DPID=$!
	pids+=("$DPID")
	NATS="nats://127.0.0.1:$nats_port"
	METRICS="http://127.0.0.1:$http_port/metrics"
	for _ in $(seq 300); do
		if curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then return; fi
		kill -0 "$DPID" 2>/dev/null || { cat "$dir/log" >&2; exit 1; }
		sleep 0.1
	done
	echo "logstreamd ($mode) not ready" >&2; cat "$dir/log" >&2; exit 1
}

stop_daemon() { kill "$DPID"; wait "$DPID" 2>/dev/null || true; }

# start_rsyslog INPUT (imptcp|imudp): rsyslogd with its own configuration
# writing every message to a file; sets RPID, RS_PORT, RS_FILE.
start_rsyslog() {
	local input=$1 dir
	dir=$(mktemp -d "$tmp/rsyslog.XXXX")
	RS_PORT=$(freeport)
	RS_FILE="$dir/out.log"
	local in
	if [ "$input" = imptcp ]; then
		in="module(load=\"imptcp\")
input(type=\"imptcp\" address=\"127.0.0.1\" port=\"$RS_PORT\")"
	else
		in="module(load=\"imudp\")
input(type=\"imudp\" address=\"127.0.0.1\" port=\"$RS_PORT\")"
	fi
	cat >"$dir/rsyslog.conf" <<EOF
global(workDirectory="$dir" maxMessageSize="64k")
$in
action(type="omfile" file="$RS_FILE" template="RSYSLOG_FileFormat")
EOF
	rsyslogd -N1 -f "$dir/rsyslog.conf" >/dev/null
	rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/pid" >"$dir/log" 2>&1 &
	RPID=$!
	pids+=("$RPID")
	for _ in $(seq 400); do
		if ss -Htuln "sport = :$RS_PORT" | grep -q .; then sleep 0.2; return; fi
		kill -0 "$RPID" 2>/dev/null || break
		sleep 0.05
	done
	echo "rsyslogd not listening on $RS_PORT" >&2; cat "$dir/log" >&2; exit 1
}

stop_rsyslog() { kill "$RPID"; wait "$RPID" 2>/dev/null || true; }

TICK=$(getconf CLK_TCK)
# cputime PID: the process's CPU seconds so far.
cputime() { awk -v t="$TICK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
# per_msg BEFORE AFTER COUNT: microseconds of CPU a message.
per_msg() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }'; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

core=() js=() base=() rs=()
core_cpu=() js_cpu=() rs_cpu=() client_cpu=()
num() { printf '%.0f' "$1"; }
for round in $(seq "$ROUNDS"); do
	echo "round $round/$ROUNDS" >&2

	start_daemon core
	c0=$(cputime "$DPID")
	"$LS" bench syslog -address "tcp://127.0.0.1:$SYSLOG_PORT" -count "$COUNT" -connections "$CONNS" -size "$SIZE" \
		-nats "$NATS" -metrics "$METRICS" -label "core r$round" -json >"$tmp/core.$round.json"
	core_cpu+=("$(per_msg "$c0" "$(cputime "$DPID")" "$COUNT")")
	client_cpu+=("$(per_msg 0 "$(json client_cpu_seconds "$tmp/core.$round.json")" "$COUNT")")
	core+=("$(num "$(json end_to_end_rate "$tmp/core.$round.json")")")
	echo "  core NATS:  ${core[-1]} msgs/s, lost $(json lost "$tmp/core.$round.json")" >&2
	stop_daemon

	start_daemon jetstream
	c0=$(cputime "$DPID")
	"$LS" bench syslog -address "tcp://127.0.0.1:$SYSLOG_PORT" -count "$COUNT" -connections "$CONNS" -size "$SIZE" \
		-nats "$NATS" -metrics "$METRICS" -label "jetstream r$round" -json >"$tmp/js.$round.json"
	js_cpu+=("$(per_msg "$c0" "$(cputime "$DPID")" "$COUNT")")
	js+=("$(num "$(json end_to_end_rate "$tmp/js.$round.json")")")
	echo "  JetStream:  ${js[-1]} msgs/s, lost $(json lost "$tmp/js.$round.json")" >&2
	"$LS" bench jsbaseline -nats "$NATS" -count "$BASE_COUNT" -size "$SIZE" -label "baseline r$round" -json >"$tmp/base.$round.json"
	base+=("$(num "$(json rate "$tmp/base.$round.json")")")
	echo "  baseline:   ${base[-1]} entries/s" >&2
	stop_daemon

	start_rsyslog imptcp
	c0=$(cputime "$RPID")
	"$LS" bench syslog -address "tcp://127.0.0.1:$RS_PORT" -count "$COUNT" -connections "$CONNS" -size "$SIZE" \
		-file "$RS_FILE" -label "rsyslog r$round" -json >"$tmp/rs.$round.json"
	rs_cpu+=("$(per_msg "$c0" "$(cputime "$RPID")" "$COUNT")")
	rs+=("$(num "$(json end_to_end_rate "$tmp/rs.$round.json")")")
	echo "  rsyslog:    ${rs[-1]} msgs/s, lost $(json lost "$tmp/rs.$round.json")" >&2
	stop_rsyslog
done

udp() { # udp LABEL TARGET-ARGS...: sets UDP_SENT UDP_LOST UDP_KERNEL
	local label=$1; shift
	"$LS" bench syslog -connections 1 -size "$SIZE" -rate "$UDP_RATE" -duration "${UDP_SECONDS}s" -idle 5s \
		-label "$label" -json "$@" >"$tmp/udp.json"
	UDP_SENT=$(json sent "$tmp/udp.json"); UDP_LOST=$(json lost "$tmp/udp.json"); UDP_KERNEL=$(json udp_rcvbuf_errors "$tmp/udp.json")
	UDP_KERNEL=${UDP_KERNEL:-0}
	echo "  $label: sent $UDP_SENT, lost $UDP_LOST (kernel buffer drops $UDP_KERNEL)" >&2
}
echo "udp" >&2
start_daemon core
udp "UDP core" -address "udp://127.0.0.1:$SYSLOG_PORT" -nats "$NATS" -metrics "$METRICS"
udp_core="$UDP_SENT $UDP_LOST $UDP_KERNEL"
stop_daemon
start_daemon jetstream
udp "UDP JetStream" -address "udp://127.0.0.1:$SYSLOG_PORT" -nats "$NATS" -metrics "$METRICS"
udp_js="$UDP_SENT $UDP_LOST $UDP_KERNEL"
stop_daemon
start_rsyslog imudp
udp "UDP rsyslog" -address "udp://127.0.0.1:$RS_PORT" -file "$RS_FILE"
udp_rs="$UDP_SENT $UDP_LOST $UDP_KERNEL"
stop_rsyslog

m_core=$(printf '%s\n' "${core[@]}" | median)
m_js=$(printf '%s\n' "${js[@]}" | median)
m_base=$(printf '%s\n' "${base[@]}" | median)
m_rs=$(printf '%s\n' "${rs[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

cat <<EOF

syslog receiver, end to end — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average before the run's end: $(cut -d' ' -f1-3 /proc/loadavg)
$COUNT × $SIZE-byte RFC 5424 messages over $CONNS TCP connections (octet counting); median of $ROUNDS interleaved rounds

  receiver                                   msgs/s   receiver CPU µs/msg   rounds (msgs/s)
  logstreamd, core NATS                    $(printf '%9.0f' "$m_core")   $(printf '%19s' "$(printf '%s\n' "${core_cpu[@]}" | median)")   ${core[*]}
  logstreamd, JetStream                    $(printf '%9.0f' "$m_js")   $(printf '%19s' "$(printf '%s\n' "${js_cpu[@]}" | median)")   ${js[*]}
  bare JetStream async publisher           $(printf '%9.0f' "$m_base")   $(printf '%19s' -)   ${base[*]}
  rsyslog imptcp -> omfile                 $(printf '%9.0f' "$m_rs")   $(printf '%19s' "$(printf '%s\n' "${rs_cpu[@]}" | median)")   ${rs[*]}
  (load generator and NATS subscriber: $(printf '%s\n' "${client_cpu[@]}" | median) µs CPU a message; logstreamd's CPU includes its embedded nats-server)

  targets                                    measured    target
  core NATS msgs/s                         $(printf '%9.0f' "$m_core")    >= 300000
  JetStream / bare JetStream publisher     $(printf '%9s' "$(ratio "$m_js" "$m_base")")    >= 0.9
  core NATS / rsyslog                      $(printf '%9s' "$(ratio "$m_core" "$m_rs")")    >= 0.6
  JetStream / rsyslog                      $(printf '%9s' "$(ratio "$m_js" "$m_rs")")

UDP at $UDP_RATE msgs/s for $UDP_SECONDS s ($SIZE bytes)        sent       lost   (kernel buffer drops)
EOF
for row in "logstreamd, core NATS|$udp_core" "logstreamd, JetStream|$udp_js" "rsyslog imudp -> omfile|$udp_rs"; do
	IFS='|' read -r name vals <<<"$row"
	read -r s l k <<<"$vals"
	printf '  %-40s %9s  %9s   (%s)\n' "$name" "$s" "$l" "$k"
done
