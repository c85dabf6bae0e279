#!/usr/bin/env bash
# compare.sh: the journald source against journald's own reader and against
# a bare JetStream publisher, on one journal, in one run.
#
# It runs BenchmarkJournal (ingest/journald/bench_test.go): a private
# systemd-journald (root needed) gets LOGSTREAM_BENCH_ENTRIES entries
# (default 200,000), is stopped, and every case reads the same files:
#
#   journalctl-export    journalctl -D <dir> -o export > /dev/null
#   source-core          the source publishing to core NATS (embedded server)
#   source-jetstream     the source publishing to JetStream (embedded server)
#   bare-jetstream       nats.go's JetStream async publisher sending the same
#                        messages (subjects, JSON, Nats-Msg-Id) from memory
#   publisher-jetstream  bus.Publisher sending the same entries from memory
#   source-discard       the source into a sink that discards (its own cost)
#   sdjournal-getentry   go-systemd's sdjournal reading them with GetEntry
#
# Each case runs COUNT times (default 3); the median is reported, and the
# two ratios of the issue's targets.
#
# Usage: sudo ingest/journald/bench/compare.sh     (from anywhere)
set -euo pipefail
cd "$(dirname "$0")/../../.."
export LOGSTREAM_BENCH_ENTRIES="${LOGSTREAM_BENCH_ENTRIES:-200000}"
count="${COUNT:-3}"
out=$(go test -run '^$' -bench '^BenchmarkJournal$' -benchtime 1x -count "$count" -timeout 60m ./ingest/journald/ 2>&1) || {
	echo "$out"
	exit 1
}
echo "$out" | grep -E '^(goos|goarch|cpu|Benchmark)'
echo
echo "$out" | awk '
/^BenchmarkJournal\// {
	name = $1; sub(/^BenchmarkJournal\//, "", name); sub(/-[0-9]+$/, "", name)
	for (i = 2; i < NF; i++) if ($(i + 1) == "entries/s") v[name] = v[name] " " $i
}
END {
	for (n in v) {
		k = split(substr(v[n], 2), a, " ")
		# median by insertion sort
		for (i = 2; i <= k; i++) { x = a[i]; j = i - 1; while (j > 0 && a[j] + 0 > x + 0) { a[j + 1] = a[j]; j-- } a[j + 1] = x }
		med[n] = (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
		printf "%-22s %10.0f entries/s (median of %d)\n", n, med[n], k
	}
	if (med["journalctl-export"] > 0 && med["source-core"] > 0)
		printf "\nsource-core / journalctl-export     = %.2f  (target >= 1.0)\n", med["source-core"] / med["journalctl-export"]
	if (med["bare-jetstream"] > 0 && med["source-jetstream"] > 0)
		printf "source-jetstream / bare-jetstream   = %.2f  (target >= 0.9)\n", med["source-jetstream"] / med["bare-jetstream"]
}'
echo
echo "entries: $LOGSTREAM_BENCH_ENTRIES; $(nproc) CPUs; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
