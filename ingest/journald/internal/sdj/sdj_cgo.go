//go:build cgo && linux

package sdj

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

// Function pointers resolved with dlopen: the binary does not link
// libsystemd, so it runs (without the journal) where it is missing.
static struct {
	__typeof__(&sd_journal_open) open;
	__typeof__(&sd_journal_open_directory) open_directory;
	__typeof__(&sd_journal_open_namespace) open_namespace;
	__typeof__(&sd_journal_close) close;
	__typeof__(&sd_journal_add_match) add_match;
	__typeof__(&sd_journal_add_disjunction) add_disjunction;
	__typeof__(&sd_journal_add_conjunction) add_conjunction;
	__typeof__(&sd_journal_flush_matches) flush_matches;
	__typeof__(&sd_journal_next) next;
	__typeof__(&sd_journal_previous) previous;
	__typeof__(&sd_journal_seek_head) seek_head;
	__typeof__(&sd_journal_seek_tail) seek_tail;
	__typeof__(&sd_journal_seek_realtime_usec) seek_realtime_usec;
	__typeof__(&sd_journal_seek_cursor) seek_cursor;
	__typeof__(&sd_journal_test_cursor) test_cursor;
	__typeof__(&sd_journal_get_cursor) get_cursor;
	__typeof__(&sd_journal_get_realtime_usec) get_realtime_usec;
	__typeof__(&sd_journal_restart_data) restart_data;
	__typeof__(&sd_journal_enumerate_data) enumerate_data;
	__typeof__(&sd_journal_set_data_threshold) set_data_threshold;
	__typeof__(&sd_journal_get_fd) get_fd;
	__typeof__(&sd_journal_get_events) get_events;
	__typeof__(&sd_journal_get_timeout) get_timeout;
	__typeof__(&sd_journal_process) process;
} ls_fn;

static char ls_load_err[512];
static const char *ls_load_error(void) { return ls_load_err; }

// ls_load resolves every function; 0 or -1 with ls_load_err set.
static int ls_load(void) {
	void *h = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(ls_load_err, sizeof ls_load_err, "%s", dlerror());
		return -1;
	}
#define LS_SYM(field, name) \
	if (!(ls_fn.field = dlsym(h, name))) { \
		snprintf(ls_load_err, sizeof ls_load_err, "libsystemd.so.0 has no %s", name); \
		return -1; \
	}
	LS_SYM(open, "sd_journal_open")
	LS_SYM(open_directory, "sd_journal_open_directory")
	LS_SYM(close, "sd_journal_close")
	LS_SYM(add_match, "sd_journal_add_match")
	LS_SYM(add_disjunction, "sd_journal_add_disjunction")
	LS_SYM(add_conjunction, "sd_journal_add_conjunction")
	LS_SYM(flush_matches, "sd_journal_flush_matches")
	LS_SYM(next, "sd_journal_next")
	LS_SYM(previous, "sd_journal_previous")
	LS_SYM(seek_head, "sd_journal_seek_head")
	LS_SYM(seek_tail, "sd_journal_seek_tail")
	LS_SYM(seek_realtime_usec, "sd_journal_seek_realtime_usec")
	LS_SYM(seek_cursor, "sd_journal_seek_cursor")
	LS_SYM(test_cursor, "sd_journal_test_cursor")
	LS_SYM(get_cursor, "sd_journal_get_cursor")
	LS_SYM(get_realtime_usec, "sd_journal_get_realtime_usec")
	LS_SYM(restart_data, "sd_journal_restart_data")
	LS_SYM(set_data_threshold, "sd_journal_set_data_threshold")
	LS_SYM(get_fd, "sd_journal_get_fd")
	LS_SYM(get_events, "sd_journal_get_events")
	LS_SYM(get_timeout, "sd_journal_get_timeout")
	LS_SYM(process, "sd_journal_process")
#undef LS_SYM
	// enumerate_available_data (systemd 246) skips fields compressed with
	// an algorithm this libsystemd lacks instead of failing the entry.
	ls_fn.enumerate_data = dlsym(h, "sd_journal_enumerate_available_data");
	if (!ls_fn.enumerate_data)
		ls_fn.enumerate_data = dlsym(h, "sd_journal_enumerate_data");
	if (!ls_fn.enumerate_data) {
		snprintf(ls_load_err, sizeof ls_load_err, "libsystemd.so.0 has no sd_journal_enumerate_data");
		return -1;
	}
	ls_fn.open_namespace = dlsym(h, "sd_journal_open_namespace"); // systemd 245; optional
	return 0;
}

typedef struct {
	sd_journal *j;
	int have_current;   // the read pointer is on an entry not yet returned
	int all_fields;     // send fields not in wanted as "NAME=value"
	size_t max_value;   // cut values longer than this (0: no limit)
	int nwanted;
	char **wanted;      // field names
	size_t *wanted_len;
	unsigned char first[256]; // first[c]: some wanted name starts with c
	int wake_r, wake_w; // self-pipe for ls_wait
} ls_reader;

static int ls_open(int mode, const char *arg, ls_reader **out) {
	ls_reader *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	int k;
	switch (mode) {
	case 0:
		k = ls_fn.open(&r->j, SD_JOURNAL_LOCAL_ONLY);
		break;
	case 1:
		k = ls_fn.open_directory(&r->j, arg, 0);
		break;
	default:
		k = ls_fn.open_namespace ? ls_fn.open_namespace(&r->j, arg, SD_JOURNAL_LOCAL_ONLY) : -EOPNOTSUPP;
	}
	if (k < 0) {
		free(r);
		return k;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		k = -errno;
		ls_fn.close(r->j);
		free(r);
		return k;
	}
	r->wake_r = p[0];
	r->wake_w = p[1];
	// Set up inotify now, before the first read, so that no change
	// between opening and the first wait is missed.
	k = ls_fn.get_fd(r->j);
	if (k < 0) {
		ls_fn.close(r->j);
		close(p[0]);
		close(p[1]);
		free(r);
		return k;
	}
	*out = r;
	return 0;
}

static void ls_free_wanted(ls_reader *r) {
	for (int i = 0; i < r->nwanted; i++)
		free(r->wanted[i]);
	free(r->wanted);
	free(r->wanted_len);
	r->wanted = NULL;
	r->wanted_len = NULL;
	r->nwanted = 0;
	memset(r->first, 0, sizeof r->first);
}

static void ls_close(ls_reader *r) {
	ls_fn.close(r->j);
	close(r->wake_r);
	close(r->wake_w);
	ls_free_wanted(r);
	free(r);
}

// ls_set_fields takes ownership of names (malloc'd strings).
static void ls_set_fields(ls_reader *r, char **names, int n, int all) {
	ls_free_wanted(r);
	r->wanted = names;
	r->nwanted = n;
	r->wanted_len = calloc(n > 0 ? n : 1, sizeof(size_t));
	for (int i = 0; i < n; i++) {
		r->wanted_len[i] = strlen(names[i]);
		r->first[(unsigned char)names[i][0]] = 1;
	}
	r->all_fields = all;
}

static int ls_set_threshold(ls_reader *r, size_t max) {
	r->max_value = max;
	return ls_fn.set_data_threshold(r->j, max);
}

static inline void put16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

// ls_put_entry writes the current entry at buf+*off. -ENOBUFS when it does
// not fit (nothing is consumed), other negative errnos for a broken entry.
static int ls_put_entry(ls_reader *r, unsigned char *buf, size_t cap, size_t *off, uint64_t *realtime) {
	uint64_t rt;
	int k = ls_fn.get_realtime_usec(r->j, &rt);
	if (k < 0)
		return k;
	char *cur = NULL;
	k = ls_fn.get_cursor(r->j, &cur);
	if (k < 0)
		return k;
	size_t cl = strlen(cur);
	size_t o = *off;
	if (cl > 0xffff || o + 18 + cl > cap) {
		free(cur);
		return cl > 0xffff ? -EINVAL : -ENOBUFS;
	}
	size_t start = o;
	put64(buf + o + 8, rt);
	put16(buf + o + 16, (uint16_t)cl);
	memcpy(buf + o + 18, cur, cl);
	free(cur);
	o += 18 + cl;
	uint32_t nf = 0;
	const void *d;
	size_t l;
	ls_fn.restart_data(r->j);
	while ((k = ls_fn.enumerate_data(r->j, &d, &l)) > 0) {
		const char *s = d;
		if (l == 0)
			continue;
		int idx = -1;
		if (r->first[(unsigned char)s[0]]) {
			const char *eq = memchr(s, '=', l);
			if (!eq)
				continue;
			size_t nl = eq - s;
			for (int i = 0; i < r->nwanted; i++) {
				if (r->wanted_len[i] == nl && memcmp(r->wanted[i], s, nl) == 0) {
					idx = i;
					break;
				}
			}
			if (idx >= 0) {
				s = eq + 1;
				l -= nl + 1;
			}
		}
		if (idx < 0) {
			if (!r->all_fields)
				continue;
			idx = 0x7fff;
		}
		if (r->max_value > 0 && l > r->max_value) {
			l = r->max_value;
			idx |= 0x8000;
		}
		if (o + 6 + l > cap)
			return -ENOBUFS;
		put16(buf + o, (uint16_t)idx);
		put32(buf + o + 2, (uint32_t)l);
		memcpy(buf + o + 6, s, l);
		o += 6 + l;
		nf++;
	}
	// A field that cannot be read (k < 0) ends the entry's fields: what
	// was read is kept rather than losing the entry.
	put32(buf + start, (uint32_t)(o - start));
	put32(buf + start + 4, nf);
	*off = o;
	*realtime = rt;
	return 0;
}

typedef struct {
	int n;        // entries written
	size_t used;  // bytes written
	int eof;      // the end of the journal was reached
	int skipped;  // entries that could not be read and were skipped
	int err;      // negative errno of a failed sd_journal_next, else 0
	uint64_t last_realtime; // of the last entry written
} ls_result;

// ls_read advances through up to max entries, writing each into buf.
static void ls_read(ls_reader *r, unsigned char *buf, size_t cap, int max, ls_result *res) {
	memset(res, 0, sizeof *res);
	size_t off = 0;
	while (res->n < max) {
		if (!r->have_current) {
			int k = ls_fn.next(r->j);
			if (k < 0) {
				res->err = k;
				break;
			}
			if (k == 0) {
				res->eof = 1;
				break;
			}
			r->have_current = 1;
		}
		int k = ls_put_entry(r, buf, cap, &off, &res->last_realtime);
		if (k == -ENOBUFS) {
			if (res->n == 0)
				res->err = k;
			break;
		}
		r->have_current = 0;
		if (k < 0) {
			res->skipped++;
			continue;
		}
		res->n++;
	}
	res->used = off;
}

// ls_woken reports (and consumes) bytes on the wake pipe wake_r.
static int ls_woken(int wake_r) {
	char b[64];
	int w = 0;
	while (read(wake_r, b, sizeof b) > 0)
		w = 1;
	return w;
}

// ls_wait waits for a journal change, a byte on the wake pipe, or
// timeout_usec ((uint64_t)-1: no limit). Returns 0 nothing, 1 append,
// 2 invalidate, 3 woken, or a negative errno.
static int ls_wait(ls_reader *r, uint64_t timeout_usec) {
	int fd = ls_fn.get_fd(r->j);
	if (fd < 0)
		return fd;
	int ev = ls_fn.get_events(r->j);
	if (ev < 0)
		return ev;
	uint64_t t = (uint64_t)-1;
	int k = ls_fn.get_timeout(r->j, &t);
	if (k < 0)
		return k;
	int64_t ms = -1;
	if (t != (uint64_t)-1) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
		ms = t > now ? (int64_t)((t - now + 999) / 1000) : 0;
	}
	if (timeout_usec != (uint64_t)-1) {
		int64_t m2 = (int64_t)((timeout_usec + 999) / 1000);
		if (ms < 0 || m2 < ms)
			ms = m2;
	}
	if (ms > 0x7fffffff)
		ms = 0x7fffffff;
	struct pollfd p[2] = {{.fd = fd, .events = (short)ev}, {.fd = r->wake_r, .events = POLLIN}};
	k = poll(p, 2, (int)ms);
	if (k < 0 && errno != EINTR)
		return -errno;
	int woken = 0;
	if (k > 0 && (p[1].revents & POLLIN)) {
		ls_woken(r->wake_r);
		woken = 1;
	}
	k = ls_fn.process(r->j);
	if (k < 0)
		return k;
	if (woken)
		return 3;
	return k == SD_JOURNAL_APPEND ? 1 : k == SD_JOURNAL_INVALIDATE ? 2 : 0;
}

static int ls_seek(ls_reader *r, int how, uint64_t usec, const char *cursor) {
	r->have_current = 0;
	switch (how) {
	case 0: return ls_fn.seek_head(r->j);
	case 1: return ls_fn.seek_tail(r->j);
	case 2: return ls_fn.seek_realtime_usec(r->j, usec);
	default: return ls_fn.seek_cursor(r->j, cursor);
	}
}

static int ls_step(ls_reader *r, int forward) {
	r->have_current = 0;
	return forward ? ls_fn.next(r->j) : ls_fn.previous(r->j);
}

static int ls_test_cursor(ls_reader *r, const char *c) { return ls_fn.test_cursor(r->j, c); }

static int ls_get_cursor(ls_reader *r, char **c) { return ls_fn.get_cursor(r->j, c); }

static int ls_add_match(ls_reader *r, const void *d, size_t l) { return ls_fn.add_match(r->j, d, l); }
static int ls_add_disjunction(ls_reader *r) { return ls_fn.add_disjunction(r->j); }
static int ls_add_conjunction(ls_reader *r) { return ls_fn.add_conjunction(r->j); }
static void ls_flush_matches(ls_reader *r) { ls_fn.flush_matches(r->j); }

// A ring is the set of read buffers shared with the publishing side:
// ls_pump fills free slots and names each filled one on full_w; the
// publisher names each slot it is done with on free_w. Both pipes carry
// one byte (the slot index) a batch.
typedef struct {
	unsigned char *buf;
	size_t cap;
	ls_result res;
	int64_t now_sec, now_nsec; // CLOCK_REALTIME when the batch was read
} ls_slot;

typedef struct {
	int n;
	ls_slot *slots;
	int full_r, full_w, free_r, free_w;
	int wake_r, wake_w; // wakes ls_collect
} ls_ring;

static void ls_ring_free(ls_ring *g) {
	if (!g)
		return;
	for (int i = 0; i < g->n; i++)
		free(g->slots[i].buf);
	free(g->slots);
	int fds[6] = {g->full_r, g->full_w, g->free_r, g->free_w, g->wake_r, g->wake_w};
	for (int i = 0; i < 6; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(g);
}

static int ls_ring_new(int n, size_t size, ls_ring **out) {
	if (n < 1 || n > 256 || size < 1)
		return -EINVAL;
	ls_ring *g = calloc(1, sizeof *g);
	if (!g)
		return -ENOMEM;
	g->full_r = g->full_w = g->free_r = g->free_w = g->wake_r = g->wake_w = -1;
	g->slots = calloc(n, sizeof *g->slots);
	if (!g->slots) {
		ls_ring_free(g);
		return -ENOMEM;
	}
	g->n = n;
	for (int i = 0; i < n; i++) {
		if (!(g->slots[i].buf = malloc(size))) {
			ls_ring_free(g);
			return -ENOMEM;
		}
		g->slots[i].cap = size;
	}
	int *ends[3][2] = {{&g->full_r, &g->full_w}, {&g->free_r, &g->free_w}, {&g->wake_r, &g->wake_w}};
	for (int i = 0; i < 3; i++) {
		int p[2];
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
			int k = -errno;
			ls_ring_free(g);
			return k;
		}
		*ends[i][0] = p[0];
		*ends[i][1] = p[1];
	}
	for (int i = 0; i < n; i++) {
		unsigned char c = (unsigned char)i;
		if (write(g->free_w, &c, 1) != 1) {
			int k = -errno;
			ls_ring_free(g);
			return k;
		}
	}
	*out = g;
	return 0;
}

// ls_take waits for a free slot; -1 when woken (a byte on wake_r), -2 -
// errno on error.
static int ls_take(int wake_r, ls_ring *g) {
	for (;;) {
		unsigned char c;
		ssize_t k = read(g->free_r, &c, 1);
		if (k == 1)
			return c;
		if (k < 0 && errno != EAGAIN && errno != EINTR)
			return -2 - errno;
		struct pollfd p[2] = {{.fd = g->free_r, .events = POLLIN}, {.fd = wake_r, .events = POLLIN}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return -2 - errno;
		if ((p[1].revents & POLLIN) && ls_woken(wake_r))
			return -1;
	}
}

static int ls_give(int fd, int idx) {
	unsigned char c = (unsigned char)idx;
	for (;;) {
		if (write(fd, &c, 1) == 1)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

// ls_pump reads batches of up to max entries into free slots of g, handing
// each to the publisher, until the end of the journal (0), a wake-up (1),
// an entry larger than max_buf (2), or an error (negative errno; a batch
// read before the error is handed over first).
static int ls_pump(ls_reader *r, ls_ring *g, int max, size_t max_buf) {
	for (;;) {
		if (ls_woken(r->wake_r))
			return 1;
		int i = ls_take(r->wake_r, g);
		if (i == -1)
			return 1;
		if (i < -1)
			return -(i + 2);
		ls_slot *s = &g->slots[i];
		ls_read(r, s->buf, s->cap, max, &s->res);
		if (s->res.err == -ENOBUFS) {
			int k = ls_give(g->free_w, i);
			if (k < 0)
				return k;
			if (s->cap >= max_buf)
				return 2;
			size_t nc = s->cap * 2 < max_buf ? s->cap * 2 : max_buf;
			unsigned char *nb = realloc(s->buf, nc);
			if (!nb)
				return -ENOMEM;
			s->buf = nb;
			s->cap = nc;
			continue;
		}
		int err = s->res.err, eof = s->res.eof;
		if (s->res.n > 0 || s->res.skipped > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			s->now_sec = ts.tv_sec;
			s->now_nsec = ts.tv_nsec;
			int k = ls_give(g->full_w, i);
			if (k < 0)
				return k;
		} else {
			int k = ls_give(g->free_w, i);
			if (k < 0)
				return k;
		}
		if (err < 0)
			return err;
		if (eof)
			return 0;
	}
}

// ls_collect waits until every slot is free: 0, 1 when woken, or a
// negative errno.
static int ls_collect(ls_ring *g) {
	int got = 0, k = 0;
	unsigned char held[256];
	while (got < g->n) {
		int i = ls_take(g->wake_r, g);
		if (i == -1) {
			k = 1;
			break;
		}
		if (i < -1) {
			k = -(i + 2);
			break;
		}
		held[got++] = (unsigned char)i;
	}
	for (int i = 0; i < got; i++)
		ls_give(g->free_w, held[i]);
	return k;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

var (
	loadOnce sync.Once
	loadErr  error
)

// Load loads libsystemd.so.0 once. It returns an error wrapping
// ErrUnavailable when it cannot.
func Load() error {
	loadOnce.Do(func() {
		if C.ls_load() != 0 {
			loadErr = fmt.Errorf("%w: %s", ErrUnavailable, C.GoString(C.ls_load_error()))
		}
	})
	return loadErr
}

// Journal is an open journal. See the package comment for its threading
// rules.
type Journal struct {
	r      *C.ls_reader
	wakeFD int
	closed bool
}

func errno(k C.int) error { return syscall.Errno(-k) }

func open(mode C.int, arg string) (*Journal, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	var carg *C.char
	if arg != "" {
		carg = C.CString(arg)
		defer C.free(unsafe.Pointer(carg))
	}
	var r *C.ls_reader
	if k := C.ls_open(mode, carg, &r); k < 0 {
		return nil, errno(k)
	}
	return &Journal{r: r, wakeFD: int(r.wake_w)}, nil
}

// OpenLocal opens the local system's journal (all local journal files
// the process may read).
func OpenLocal() (*Journal, error) {
	j, err := open(0, "")
	if err != nil {
		return nil, fmt.Errorf("open the local journal: %w", err)
	}
	return j, nil
}

// OpenDirectory opens the journal files in dir.
func OpenDirectory(dir string) (*Journal, error) {
	j, err := open(1, dir)
	if err != nil {
		return nil, fmt.Errorf("open journal directory %s: %w", dir, err)
	}
	return j, nil
}

// OpenNamespace opens the journal of a journald namespace.
func OpenNamespace(ns string) (*Journal, error) {
	j, err := open(2, ns)
	if err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) {
			return nil, fmt.Errorf("open journal namespace %s: this libsystemd has no namespaces (systemd < 245)", ns)
		}
		return nil, fmt.Errorf("open journal namespace %s: %w", ns, err)
	}
	return j, nil
}

// Close closes the journal.
func (j *Journal) Close() {
	if j.closed {
		return
	}
	j.closed = true
	C.ls_close(j.r)
}

// Wake makes a running or the next Wait return Woken. Safe from any
// goroutine, also after Close (it then does nothing useful).
func (j *Journal) Wake() {
	_, _ = syscall.Write(j.wakeFD, []byte{1})
}

// SetFields selects the fields Read copies: names, each reported with its
// index in names, and, when all is true, every other field as AllFields.
func (j *Journal) SetFields(names []string, all bool) {
	arr := (**C.char)(C.malloc(C.size_t(max(len(names), 1)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	s := unsafe.Slice(arr, max(len(names), 1))
	for i, n := range names {
		s[i] = C.CString(n)
	}
	b := C.int(0)
	if all {
		b = 1
	}
	C.ls_set_fields(j.r, arr, C.int(len(names)), b)
}

// SetDataThreshold cuts field values longer than n bytes (0: no limit);
// such fields are reported Truncated.
func (j *Journal) SetDataThreshold(n int) error {
	if k := C.ls_set_threshold(j.r, C.size_t(n)); k < 0 {
		return fmt.Errorf("set data threshold: %w", errno(k))
	}
	return nil
}

// AddMatch adds a "FIELD=value" match (sd_journal_add_match).
func (j *Journal) AddMatch(m string) error {
	p := C.CString(m)
	defer C.free(unsafe.Pointer(p))
	if k := C.ls_add_match(j.r, unsafe.Pointer(p), C.size_t(len(m))); k < 0 {
		return fmt.Errorf("add match %q: %w", m, errno(k))
	}
	return nil
}

// AddDisjunction inserts a logical OR between the matches before and
// after it.
func (j *Journal) AddDisjunction() error {
	if k := C.ls_add_disjunction(j.r); k < 0 {
		return fmt.Errorf("add disjunction: %w", errno(k))
	}
	return nil
}

// AddConjunction inserts a logical AND between the disjunctions before
// and after it.
func (j *Journal) AddConjunction() error {
	if k := C.ls_add_conjunction(j.r); k < 0 {
		return fmt.Errorf("add conjunction: %w", errno(k))
	}
	return nil
}

// FlushMatches removes every match.
func (j *Journal) FlushMatches() { C.ls_flush_matches(j.r) }

func (j *Journal) seek(how C.int, usec uint64, cursor string) error {
	var c *C.char
	if how == 3 {
		c = C.CString(cursor)
		defer C.free(unsafe.Pointer(c))
	}
	if k := C.ls_seek(j.r, how, C.uint64_t(usec), c); k < 0 {
		return errno(k)
	}
	return nil
}

// SeekHead moves before the first entry.
func (j *Journal) SeekHead() error { return j.seek(0, 0, "") }

// SeekTail moves after the last entry. Next after it may return old
// entries (one per file): use Previous to land on the last entry.
func (j *Journal) SeekTail() error { return j.seek(1, 0, "") }

// SeekRealtime moves before the first entry at or after t.
func (j *Journal) SeekRealtime(t time.Time) error {
	return j.seek(2, uint64(max(t.UnixMicro(), 0)), "")
}

// SeekCursor moves to cursor: the next Next lands on the entry it names
// if it exists, else on the closest entry after it.
func (j *Journal) SeekCursor(cursor string) error { return j.seek(3, 0, cursor) }

// Next moves to the next entry; false at the end of the journal.
func (j *Journal) Next() (bool, error) {
	k := C.ls_step(j.r, 1)
	if k < 0 {
		return false, errno(k)
	}
	return k > 0, nil
}

// Previous moves to the previous entry; false at the start.
func (j *Journal) Previous() (bool, error) {
	k := C.ls_step(j.r, 0)
	if k < 0 {
		return false, errno(k)
	}
	return k > 0, nil
}

// Current makes the next Read return the entry the read pointer is on
// (after Next), instead of moving past it first.
func (j *Journal) Current() { j.r.have_current = 1 }

// TestCursor reports whether the read pointer is on the entry cursor
// names. A malformed cursor is an error (EINVAL).
func (j *Journal) TestCursor(cursor string) (bool, error) {
	c := C.CString(cursor)
	defer C.free(unsafe.Pointer(c))
	k := C.ls_test_cursor(j.r, c)
	if k < 0 {
		return false, errno(k)
	}
	return k > 0, nil
}

// Cursor returns the cursor of the entry the read pointer is on.
func (j *Journal) Cursor() (string, error) {
	var c *C.char
	if k := C.ls_get_cursor(j.r, &c); k < 0 {
		return "", errno(k)
	}
	defer C.free(unsafe.Pointer(c))
	return C.GoString(c), nil
}

// ReadResult says what Read did.
type ReadResult struct {
	N       int  // records written
	Used    int  // bytes of the buffer used
	EOF     bool // the end of the journal was reached
	Skipped int  // entries that could not be read at all and were skipped
	// LastRealtime is the __REALTIME_TIMESTAMP of the last record.
	LastRealtime uint64
}

// Read moves through up to max entries, writing each as a record into
// buf (decode with Records). It returns ErrNoBuffer when the first entry
// does not fit into buf, and the error of a failed move after the records
// it wrote (N > 0).
func (j *Journal) Read(buf []byte, max int) (ReadResult, error) {
	var res C.ls_result
	C.ls_read(j.r, (*C.uchar)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), C.int(max), &res)
	r := ReadResult{N: int(res.n), Used: int(res.used), EOF: res.eof != 0, Skipped: int(res.skipped), LastRealtime: uint64(res.last_realtime)}
	switch {
	case res.err == -C.ENOBUFS:
		return r, ErrNoBuffer
	case res.err < 0:
		return r, fmt.Errorf("read journal: %w", errno(res.err))
	}
	return r, nil
}

// Wait waits up to timeout (negative: no limit) for a change of the
// journal or a Wake.
func (j *Journal) Wait(timeout time.Duration) (Event, error) {
	t := ^uint64(0)
	if timeout >= 0 {
		t = uint64(timeout / time.Microsecond)
	}
	k := C.ls_wait(j.r, C.uint64_t(t))
	if k < 0 {
		return Nop, fmt.Errorf("wait for the journal: %w", errno(k))
	}
	return Event(k), nil
}

// Ring is the set of read buffers Pump fills and the publishing side
// reads: slots travel between the two by index over two pipes, so the
// reading thread stays in C while it has free slots. Next, Slot and
// Release are for one publishing goroutine; Pump and Collect for the
// journal's thread.
type Ring struct {
	g    *C.ls_ring
	full *os.File
	rbuf []byte // what the last read of full got
	pend []byte // its indices not yet returned by Next
	// hb mirrors the hand-overs the pipes make, for the race detector,
	// which does not see them: what one side wrote before handing a slot
	// over happens before what the other does after taking it.
	hb atomic.Uint64
}

// NewRing allocates n slots (at most 256) of size bytes each.
func NewRing(n, size int) (*Ring, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	var g *C.ls_ring
	if k := C.ls_ring_new(C.int(n), C.size_t(size), &g); k < 0 {
		return nil, fmt.Errorf("read buffers: %w", errno(k))
	}
	return &Ring{g: g, full: os.NewFile(uintptr(g.full_r), "journal-ring"), rbuf: make([]byte, n)}, nil
}

// Next waits for a filled slot and returns its index; io.EOF once
// CloseWriter was called and every slot handed over was returned.
func (r *Ring) Next() (int, error) {
	if len(r.pend) == 0 {
		b := r.rbuf
		n, err := r.full.Read(b)
		if n == 0 {
			if err == nil {
				err = io.EOF
			}
			return -1, err
		}
		r.pend = b[:n]
	}
	i := int(r.pend[0])
	r.pend = r.pend[1:]
	r.hb.Load()
	return i, nil
}

// Slot returns slot i's records, what Read reported for them, and when
// they were read.
func (r *Ring) Slot(i int) ([]byte, ReadResult, time.Time) {
	s := unsafe.Slice(r.g.slots, int(r.g.n))[i]
	res := ReadResult{N: int(s.res.n), Used: int(s.res.used), EOF: s.res.eof != 0, Skipped: int(s.res.skipped), LastRealtime: uint64(s.res.last_realtime)}
	return unsafe.Slice((*byte)(unsafe.Pointer(s.buf)), int(s.res.used)), res, time.Unix(int64(s.now_sec), int64(s.now_nsec))
}

// Release hands slot i back to Pump.
func (r *Ring) Release(i int) {
	r.hb.Add(1)
	_, _ = syscall.Write(int(r.g.free_w), []byte{byte(i)})
}

// CloseWriter ends the stream of filled slots: Next returns io.EOF after
// the last. Call it from the journal's thread once it pumps no more.
func (r *Ring) CloseWriter() {
	_ = syscall.Close(int(r.g.full_w))
	r.g.full_w = -1
}

// Close frees the ring; nothing may use it after.
func (r *Ring) Close() {
	_ = r.full.Close()
	r.g.full_r = -1
	C.ls_ring_free(r.g)
}

// PumpEvent is why Pump returned.
type PumpEvent int

// Pump results.
const (
	PumpEnd      PumpEvent = iota // the end of the journal
	PumpWoken                     // Wake was called
	PumpTooLarge                  // the next entry is larger than maxBuf
)

// Pump reads batches of up to max entries into free slots of r until the
// end of the journal, a Wake, an entry larger than maxBuf (the read
// pointer is then before it), or an error (after handing over what was
// read before it). Slots grow up to maxBuf for a large entry.
func (j *Journal) Pump(r *Ring, max, maxBuf int) (PumpEvent, error) {
	r.hb.Add(1)
	k := C.ls_pump(j.r, r.g, C.int(max), C.size_t(maxBuf))
	r.hb.Load()
	if k < 0 {
		return PumpEnd, fmt.Errorf("read journal: %w", errno(k))
	}
	return PumpEvent(k), nil
}

// Wake makes a running or the next Collect return false. Safe from any
// goroutine until Close.
func (r *Ring) Wake() {
	_, _ = syscall.Write(int(r.g.wake_w), []byte{1})
}

// Collect waits until every slot is free; false when woken first.
func (r *Ring) Collect() (bool, error) {
	k := C.ls_collect(r.g)
	r.hb.Load()
	if k < 0 {
		return false, errno(k)
	}
	return k == 0, nil
}
