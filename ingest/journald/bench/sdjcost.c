/* sdjcost: what libsystemd's calls cost an entry, on one journal, alone.
 *
 * The journald source reads each entry with sd_journal_next,
 * sd_journal_get_realtime_usec, sd_journal_get_cursor and one pass of
 * sd_journal_enumerate_available_data (internal/sdj/sdj_cgo.go). This
 * program times those calls in a plain C loop over every entry of a
 * journal directory, so that the floor the library sets can be told apart
 * from the source's own work, and compares fetching the wanted fields one
 * by one with sd_journal_get_data.
 *
 *   gcc -O2 -o /tmp/sdjcost ingest/journald/bench/sdjcost.c -lsystemd
 *   /tmp/sdjcost DIR [ROUNDS] [MATCH]
 *
 * DIR is a directory of journal files (logstream bench journald -dir takes
 * the same); ROUNDS passes of each kind (default 3), the best printed;
 * MATCH (e.g. TEST_ID=bench) is added with sd_journal_add_match.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>
#include <time.h>

enum { NEXT = 0, CURSOR = 1, ENUMERATE = 2, GET_DATA = 4 };

static const char *wanted[] = {
	"MESSAGE", "PRIORITY", "_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "_COMM", "_HOSTNAME", "_PID",
	"_SOURCE_REALTIME_TIMESTAMP", "_BOOT_ID", "_TRANSPORT", "CODE_FILE", "CODE_LINE", "CODE_FUNC",
	"_SYSTEMD_USER_UNIT", NULL,
};

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* pass reads every entry once doing what mode says; ns an entry, or -1. */
static double pass(const char *dir, const char *match, int mode, long *entries) {
	sd_journal *j;
	int k = sd_journal_open_directory(&j, dir, 0);
	if (k < 0) {
		fprintf(stderr, "sdjcost: open %s: %s\n", dir, strerror(-k));
		return -1;
	}
	sd_journal_set_data_threshold(j, 64 << 10);
	if (match && (k = sd_journal_add_match(j, match, 0)) < 0) {
		fprintf(stderr, "sdjcost: match %s: %s\n", match, strerror(-k));
		sd_journal_close(j);
		return -1;
	}
	size_t sink = 0;
	long n = 0;
	double t0 = now();
	while (sd_journal_next(j) > 0) {
		uint64_t rt;
		const void *d;
		size_t l;
		n++;
		sd_journal_get_realtime_usec(j, &rt);
		sink += rt & 1;
		if (mode & CURSOR) {
			char *c;
			if (sd_journal_get_cursor(j, &c) >= 0) {
				sink += strlen(c);
				free(c);
			}
		}
		if (mode & ENUMERATE) {
			sd_journal_restart_data(j);
			while (sd_journal_enumerate_available_data(j, &d, &l) > 0)
				sink += l;
		}
		if (mode & GET_DATA)
			for (int i = 0; wanted[i]; i++)
				if (sd_journal_get_data(j, wanted[i], &d, &l) >= 0)
					sink += l;
	}
	double t = now() - t0;
	sd_journal_close(j);
	if (sink == 42) /* keep the reads */
		fputc('\n', stderr);
	*entries = n;
	return n ? t / n * 1e9 : -1;
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: sdjcost DIR [ROUNDS] [MATCH]\n");
		return 2;
	}
	int rounds = argc > 2 ? atoi(argv[2]) : 3;
	const char *match = argc > 3 ? argv[3] : NULL;
	static const struct {
		int mode;
		const char *what;
	} kinds[] = {
		{NEXT, "sd_journal_next + get_realtime_usec"},
		{NEXT | CURSOR, "  + get_cursor"},
		{NEXT | ENUMERATE, "  + restart_data, enumerate_available_data (every field)"},
		{NEXT | CURSOR | ENUMERATE, "  + get_cursor + enumerate (what the source calls)"},
		{NEXT | GET_DATA, "  + get_data for 14 fields instead of enumerating"},
	};
	long n = 0;
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		double best = -1;
		for (int r = 0; r < rounds; r++) {
			double v = pass(argv[1], match, kinds[i].mode, &n);
			if (v < 0)
				return 1;
			if (best < 0 || v < best)
				best = v;
		}
		printf("%8.0f ns/entry  %s\n", best, kinds[i].what);
	}
	printf("(%ld entries, best of %d passes each)\n", n, rounds);
	return 0;
}
