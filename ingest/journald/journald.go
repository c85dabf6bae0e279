package journald

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/logstream/logstream/internal/ratelog"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/ingest/journald/internal/sdj"
	"github.com/prometheus/client_golang/prometheus"
)

// Sink is what the source publishes to; *bus.Publisher is one. Publish
// may block (backpressure): the source then stops reading. Flush returns
// once every entry published before the call is acknowledged.
//
// Publish must not keep e.Fields after it returns: the source fills the
// same map for the next entry (bus.Publisher encodes the entry before it
// returns). A sink that keeps entries copies the map.
type Sink interface {
	Publish(ctx context.Context, e bus.Entry) error
	Flush(ctx context.Context) error
}

// The fields every entry is read for, by index in Source.names.
const (
	fMessage = iota
	fPriority
	fFacility
	fIdentifier
	fUnit
	fUserUnit
	fComm
	fHostname
	fPID
	fSyslogPID
	fSourceTime
	nFixed
)

var fixedNames = [nFixed]string{
	"MESSAGE", "PRIORITY", "SYSLOG_FACILITY", "SYSLOG_IDENTIFIER", "_SYSTEMD_UNIT",
	"_SYSTEMD_USER_UNIT", "_COMM", "_HOSTNAME", "_PID", "SYSLOG_PID", "_SOURCE_REALTIME_TIMESTAMP",
}

// Field keys logstream adds to Entry.Fields (journald's own names are
// upper case, so these cannot clash).
const (
	FieldMessageTruncated = "message_truncated"
	FieldMessageEscaped   = "message_escaped"
)

const (
	batchEntries    = 256     // entries a read
	pipelineBuffers = 4       // read buffers: what is read ahead of publishing
	initialBuf      = 1 << 20 // bytes of a read buffer, grown for a larger entry
	maxBuf          = 256 << 20
)

// Source follows the journal. Build it with New; Run it once.
type Source struct {
	cfg        Config
	log        *slog.Logger
	m          *metrics
	cursorPath string
	enabled    bool
	start      startPoint
	defLevel   bus.Level
	hostname   string
	exclude    map[string]struct{}
	names      []string // fields asked of the journal: fixedNames, then copied ones
	copyKey    []string // by index in names: the key in Entry.Fields, "" if not copied
	allFields  bool
	hasMatches bool
	lim        ratelog.Limiter
}

// New validates cfg (applying defaults to zero fields) and returns a
// Source; stateDir holds the cursor file unless cursor_file says
// otherwise. With enabled: auto, a source without a journal to read (or
// built without cgo) logs one info line and is not Enabled; with enabled:
// true, a build without cgo logs one warning instead, and a path that
// cannot be opened is an error. reg, when not nil, receives the metrics.
func New(cfg Config, stateDir string, log *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: log, cursorPath: cfg.cursorPath(stateDir), lim: ratelog.Limiter{Every: logEvery}}
	s.start, _ = parseStart(cfg.Start)
	s.defLevel, _ = bus.ParseLevel(cfg.DefaultLevel)
	s.hostname, _ = os.Hostname()
	s.exclude = map[string]struct{}{}
	for _, u := range cfg.ExcludeUnits {
		s.exclude[unitName(u)] = struct{}{}
	}
	if u := selfUnit(); u != "" {
		s.exclude[u] = struct{}{}
	}
	s.names = append([]string(nil), fixedNames[:]...)
	s.copyKey = make([]string, nFixed)
	for _, f := range cfg.Fields {
		if f == "*" {
			s.allFields = true
			continue
		}
		i := indexOf(s.names, f)
		switch {
		case i == fMessage:
		case i >= 0:
			s.copyKey[i] = f
		default:
			s.names = append(s.names, f)
			s.copyKey = append(s.copyKey, f)
		}
	}
	if s.allFields {
		for i := 1; i < nFixed; i++ {
			s.copyKey[i] = s.names[i]
		}
	}
	mt := cfg.Matches
	s.hasMatches = len(mt.Units)+len(mt.Identifiers)+len(mt.Fields) > 0 || mt.Level != ""
	s.m = newMetrics(reg)

	switch cfg.Enabled {
	case Off:
		return s, nil
	case Auto:
		if err := s.available(); err != nil {
			log.Info("journald source off (enabled: auto)", "reason", err.Error())
			return s, nil
		}
	case On:
		if err := sdj.Load(); err != nil {
			log.Warn("journald source unavailable: entries from the journal will not be collected", "err", err.Error())
			return s, nil
		}
	}
	if err := s.probe(); err != nil {
		return nil, err
	}
	if cfg.Enabled == On {
		for _, d := range s.journalDirs() {
			if err := readableFiles(d); err != nil {
				log.Warn("journal files unreadable: entries will be missing", "err", err.Error())
			}
		}
	}
	if err := checkWritable(filepath.Dir(s.cursorPath)); err != nil {
		return nil, fmt.Errorf("journald.cursor_file: %w", err)
	}
	s.enabled = true
	log.Info("journald source on", "journal", s.describe(), "cursor_file", s.cursorPath, "start", cfg.Start)
	return s, nil
}

// Enabled reports whether Run will read the journal.
func (s *Source) Enabled() bool { return s.enabled }

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func (s *Source) describe() string {
	switch {
	case s.cfg.Path != "":
		return s.cfg.Path
	case s.cfg.Namespace != "":
		return "namespace " + s.cfg.Namespace
	}
	return "local"
}

// available says why the journal cannot be read, for enabled: auto.
func (s *Source) available() error {
	if err := sdj.Load(); err != nil {
		return err
	}
	for _, d := range s.journalDirs() {
		f, err := os.Open(d)
		if err != nil {
			continue
		}
		f.Close()
		return readableFiles(d)
	}
	return fmt.Errorf("no readable journal in %s", strings.Join(s.journalDirs(), " or "))
}

// journalDirs are the directories the configured journal lives in.
func (s *Source) journalDirs() []string {
	if s.cfg.Path != "" {
		return []string{s.cfg.Path}
	}
	id, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		return []string{"/var/log/journal/<machine-id> (no /etc/machine-id)"}
	}
	name := strings.TrimSpace(string(id))
	if s.cfg.Namespace != "" {
		name += "." + s.cfg.Namespace
	}
	return []string{"/var/log/journal/" + name, "/run/log/journal/" + name}
}

// readableFiles fails when dir holds journal files and none can be
// opened: sd-journal would then silently read nothing.
func readableFiles(dir string) error {
	files, _ := filepath.Glob(filepath.Join(dir, "*.journal"))
	if len(files) == 0 {
		return nil // none yet: journald creates them
	}
	var err error
	for _, f := range files {
		var fh *os.File
		if fh, err = os.Open(f); err == nil {
			fh.Close()
			return nil
		}
	}
	return fmt.Errorf("cannot read the journal files in %s (%v): run logstreamd as a member of the systemd-journal group", dir, err)
}

// probe opens and closes the journal, so that a bad path fails start-up.
func (s *Source) probe() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	j, err := s.openJournal()
	if err != nil {
		key := "journald"
		switch {
		case s.cfg.Path != "":
			key = "journald.path"
		case s.cfg.Namespace != "":
			key = "journald.namespace"
		}
		return fmt.Errorf("%s: %w", key, err)
	}
	j.Close()
	return nil
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".journald-probe-*")
	if err != nil {
		return fmt.Errorf("cannot write the cursor's directory: %w", err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// selfUnit returns the systemd service logstreamd runs in (system or
// user), read from /proc/self/cgroup, or "".
func selfUnit() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	return unitFromCgroup(string(b))
}

// unitFromCgroup finds the innermost service in /proc/self/cgroup's
// content, skipping user managers (user@UID.service: excluding one would
// exclude a whole user's services).
func unitFromCgroup(content string) string {
	for line := range strings.SplitSeq(content, "\n") {
		// "0::/system.slice/logstreamd.service" (cgroup v2) or
		// "1:name=systemd:/system.slice/…" (v1).
		if !strings.HasPrefix(line, "0::") && !strings.Contains(line, ":name=systemd:") {
			continue
		}
		_, path, _ := strings.Cut(line, ":/")
		parts := strings.Split(path, "/")
		for i := len(parts) - 1; i >= 0; i-- {
			p := parts[i]
			if strings.HasSuffix(p, ".service") && !isUserManager(p) {
				return p
			}
		}
	}
	return ""
}

func (s *Source) openJournal() (*sdj.Journal, error) {
	var j *sdj.Journal
	var err error
	switch {
	case s.cfg.Path != "":
		j, err = sdj.OpenDirectory(s.cfg.Path)
	case s.cfg.Namespace != "":
		j, err = sdj.OpenNamespace(s.cfg.Namespace)
	default:
		j, err = sdj.OpenLocal()
	}
	if err != nil {
		return nil, err
	}
	j.SetFields(s.names, s.allFields)
	if err := j.SetDataThreshold(int(s.cfg.MaxFieldBytes)); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// addMatches installs the configured matches:
// (units ∨ identifiers) ∧ level ∧ fields.
func (s *Source) addMatches(j *sdj.Journal) error {
	m := s.cfg.Matches
	for _, u := range m.Units {
		if err := j.AddMatch("_SYSTEMD_UNIT=" + unitName(u)); err != nil {
			return err
		}
	}
	if len(m.Units) > 0 && len(m.Identifiers) > 0 {
		if err := j.AddDisjunction(); err != nil {
			return err
		}
	}
	for _, id := range m.Identifiers {
		if err := j.AddMatch("SYSLOG_IDENTIFIER=" + id); err != nil {
			return err
		}
	}
	if len(m.Units)+len(m.Identifiers) > 0 && (m.Level != "" || len(m.Fields) > 0) {
		if err := j.AddConjunction(); err != nil {
			return err
		}
	}
	if m.Level != "" {
		l, _ := bus.ParseLevel(m.Level)
		for p := bus.LevelEmerg; p <= l; p++ {
			if err := j.AddMatch("PRIORITY=" + strconv.Itoa(int(p))); err != nil {
				return err
			}
		}
	}
	for _, f := range m.Fields {
		if err := j.AddMatch(f); err != nil {
			return err
		}
	}
	return nil
}

// Run follows the journal and publishes to sink until ctx ends, then
// saves the cursor of the last acknowledged entry and returns. All journal
// calls happen on the goroutine that calls Run, locked to its OS thread;
// a helper goroutine saves the cursor. Read errors are logged and the
// journal is reopened at the last position, with backoff; Run returns an
// error only for a sink that fails for good.
func (s *Source) Run(ctx context.Context, sink Sink) error {
	if !s.enabled {
		return nil
	}
	com := newCommitter(s, sink)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		com.run(ctx, stop)
	}()
	err := s.follow(ctx, sink, com)
	close(stop)
	<-done
	return err
}

// follow runs the pipeline: a goroutine locked to its OS thread owns
// the journal and reads batches of records into buffers; this goroutine
// decodes them, publishes, and offers positions to the committer.
// pipelineBuffers bound what is read ahead, so the reader stops when
// Publish blocks.
func (s *Source) follow(ctx context.Context, sink Sink, com *committer) error {
	ring, err := sdj.NewRing(pipelineBuffers, initialBuf)
	if err != nil {
		return err
	}
	defer ring.Close()
	r := newReader(s, sink, com, ring)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		// Every sd_journal call comes from this thread, run at a lower
		// priority. It goes back to run other goroutines only once its
		// priority is restored; otherwise it stays locked and ends with
		// this goroutine (the main thread, which cannot end, then parks
		// for good).
		runtime.LockOSThread()
		restore := s.lowerReaderPriority(s.readerNice())
		r.readLoop(pctx)
		if restore == nil || restore() == nil {
			runtime.UnlockOSThread()
		}
		ring.CloseWriter() // Run returns after this
	}()
	var pubErr, ringErr error
	for {
		i, err := ring.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				ringErr = fmt.Errorf("journal read buffers: %w", err)
			}
			break
		}
		if pubErr == nil {
			buf, res, now := ring.Slot(i)
			if res.Skipped > 0 {
				s.m.unreadable.Add(float64(res.Skipped))
			}
			if res.N > 0 {
				s.m.read.Add(float64(res.N))
				r.com.noteRead(res.LastRealtime)
			}
			err := sdj.Records(buf, func(rec *sdj.Record) error { return r.handle(pctx, rec, now) })
			r.flushCounts()
			r.offer()
			if err != nil {
				pubErr = err
				cancel()
			}
		}
		ring.Release(i)
	}
	// The ring is freed when follow returns: the reader must be done.
	cancel()
	<-readerDone
	if ringErr != nil {
		return ringErr
	}
	if pubErr != nil && ctx.Err() == nil && !errors.Is(pubErr, bus.ErrClosed) && !errors.Is(pubErr, context.Canceled) {
		return fmt.Errorf("publish: %w", pubErr)
	}
	return nil
}

// readerNice returns reader_nice: 0 when unset (SetReaderNiceDefault
// was not called).
func (s *Source) readerNice() int {
	if s.cfg.ReaderNice != nil {
		return *s.cfg.ReaderNice
	}
	return 0
}

// lowerReaderPriority applies n (reader_nice) to the calling thread:
// reading the journal then takes the CPU that publishing and the bus
// leave. It returns the function that restores the priority, nil when
// unchanged.
func (s *Source) lowerReaderPriority(n int) (restore func() error) {
	if n == 0 {
		return nil
	}
	nice, restore, err := lowerThreadPriority(n)
	if err != nil {
		s.log.Warn("cannot lower the priority of the journal reading thread; it reads at the daemon's priority", "reader_nice", n, "err", err)
		return nil
	}
	s.log.Debug("journal reading thread priority lowered", "nice", nice)
	return restore
}

// readLoop reads until ctx ends, reopening the journal after errors.
func (r *reader) readLoop(ctx context.Context) {
	s := r.s
	backoff := time.Second
	for first := true; ; first = false {
		began := time.Now()
		err := r.session(ctx, first)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second
		}
		s.m.journalErrors.Inc()
		s.log.Error("journal read failed; reopening it at the last position", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 30*time.Second)
		s.m.journalReopens.Inc()
		// Reopening starts after the last published entry: wait until the
		// publishing goroutine has handled every buffer.
		if !r.sync(ctx) {
			return
		}
	}
}

// sync waits until every buffer is back from the publishing goroutine.
func (r *reader) sync(ctx context.Context) bool {
	stop := context.AfterFunc(ctx, r.ring.Wake)
	defer stop()
	ok, err := r.ring.Collect()
	if err != nil {
		r.s.log.Error("waiting for the read buffers failed", "err", err)
		return false
	}
	return ok && ctx.Err() == nil
}

// reader is the state of the goroutine that owns the journal.
type reader struct {
	s    *Source
	sink Sink
	com  *committer

	// The last entry processed (published, or skipped by exclusion).
	has      bool
	cur      []byte
	realtime uint64
	entries  uint64

	// For gaps in sequence numbers (entries lost): the last entry read.
	lastSeqID [32]byte
	lastSeq   uint64
	haveSeq   bool

	ring *sdj.Ring // read buffers

	idb     []byte
	fields  map[string]string // Entry.Fields, reused
	strs    map[string]string
	last    []string // by field index: the previous value
	e       bus.Entry
	vals    [nFixed][]byte
	trunc   [nFixed]bool
	present [nFixed]bool

	// per-batch counts, added to the metrics once a batch
	nExcluded, nLost, nTruncated, nFieldsDropped uint64
}

func newReader(s *Source, sink Sink, com *committer, ring *sdj.Ring) *reader {
	return &reader{s: s, sink: sink, com: com, strs: make(map[string]string, 256), last: make([]string, len(s.names)), ring: ring}
}

// session opens the journal, positions it, and reads until ctx ends or an
// error. The publishing goroutine must be idle when it starts.
func (r *reader) session(ctx context.Context, first bool) error {
	s := r.s
	j, err := s.openJournal()
	if err != nil {
		return err
	}
	defer j.Close()
	stopWake := context.AfterFunc(ctx, j.Wake)
	defer stopWake()
	if err := r.position(j, first); err != nil {
		return err
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		ev, err := j.Pump(r.ring, batchEntries, maxBuf)
		if err != nil {
			return err
		}
		switch ev {
		case sdj.PumpTooLarge:
			// One entry over maxBuf: skip it.
			s.m.dropped.WithLabelValues("too_large").Inc()
			if ok, err := j.Next(); err != nil {
				return err
			} else if ok {
				j.Current()
			}
		case sdj.PumpEnd:
			if _, err := j.Wait(-1); err != nil {
				return err
			}
		}
	}
}

func (r *reader) flushCounts() {
	m := r.s.m
	add := func(c prometheus.Counter, n *uint64) {
		if *n > 0 {
			c.Add(float64(*n))
			*n = 0
		}
	}
	add(m.excluded, &r.nExcluded)
	add(m.lost, &r.nLost)
	add(m.truncated, &r.nTruncated)
	add(m.fieldsDropped, &r.nFieldsDropped)
}

func (r *reader) offer() {
	if r.has {
		r.com.offer(position{cursor: string(r.cur), realtime: r.realtime, entries: r.entries})
	}
}

// position moves the read pointer: after the last processed entry when
// reopening, else after the saved cursor, else to the configured start.
func (r *reader) position(j *sdj.Journal, first bool) error {
	s := r.s
	cursor := ""
	switch {
	case r.has:
		cursor = string(r.cur)
	case first:
		c, reason, err := readCursor(s.cursorPath)
		if err != nil {
			r.invalid(reason, err, "start: "+s.cfg.Start)
		}
		cursor = c
	}
	if cursor != "" {
		ok, err := r.seekCursor(j, cursor)
		if err != nil {
			return err
		}
		if ok {
			s.log.Info("following the journal", "journal", s.describe(), "from", "cursor")
			return nil
		}
	}
	if err := r.seekStart(j); err != nil {
		return err
	}
	s.log.Info("following the journal", "journal", s.describe(), "from", "start: "+s.cfg.Start)
	return nil
}

func (r *reader) invalid(reason string, err error, fallback string) {
	r.s.m.cursorInvalid.WithLabelValues(reason).Inc()
	r.s.log.Warn("saved journal cursor unusable", "reason", reason, "cursor_file", r.s.cursorPath, "err", err, "fallback", fallback)
}

// seekCursor positions after cursor. false: the cursor is unusable and
// the configured start applies.
func (r *reader) seekCursor(j *sdj.Journal, cursor string) (bool, error) {
	p, ok := parseCursor([]byte(cursor))
	if !ok {
		r.invalid("corrupt", fmt.Errorf("not a journald cursor: %.100q", cursor), "start: "+r.s.cfg.Start)
		return false, nil
	}
	// Does the entry still exist? Asked before the matches are added, as
	// they could hide it.
	j.FlushMatches()
	if err := j.SeekCursor(cursor); err != nil {
		if errors.Is(err, syscall.EINVAL) {
			r.invalid("corrupt", err, "start: "+r.s.cfg.Start)
			return false, nil
		}
		return false, fmt.Errorf("seek to cursor: %w", err)
	}
	found, err := j.Next()
	if err != nil {
		return false, fmt.Errorf("seek to cursor: %w", err)
	}
	exists := false
	var landed []byte
	if found {
		if exists, err = j.TestCursor(cursor); err != nil {
			return false, fmt.Errorf("test cursor: %w", err)
		}
		if !exists {
			c, err := j.Cursor()
			if err != nil {
				return false, fmt.Errorf("cursor: %w", err)
			}
			landed = []byte(c)
		}
	}
	if err := r.s.addMatches(j); err != nil {
		return false, err
	}
	if err := j.SeekCursor(cursor); err != nil {
		return false, fmt.Errorf("seek to cursor: %w", err)
	}
	// The first Next after SeekCursor lands on the cursor's own entry when
	// it exists and matches: TestCursor tells, and that entry is skipped.
	// Otherwise the entry it lands on is the first one to read.
	found, err = j.Next()
	if err != nil {
		return false, fmt.Errorf("seek to cursor: %w", err)
	}
	if found {
		same, err := j.TestCursor(cursor)
		if err != nil {
			return false, fmt.Errorf("test cursor: %w", err)
		}
		if !same {
			j.Current()
		}
	}
	if !exists {
		reason := "vanished"
		if lp, ok := parseCursor(landed); ok {
			if string(lp.seqnumID) != string(p.seqnumID) {
				reason = "foreign"
			} else if lp.seq > p.seq+1 {
				r.s.m.lost.Add(float64(lp.seq - p.seq - 1))
			}
		}
		r.invalid(reason, errors.New("the journal has no entry with this cursor (vacuumed, or another journal's)"),
			"the first entry after the cursor's position")
	}
	r.noteSeq(p)
	return true, nil
}

func (r *reader) seekStart(j *sdj.Journal) error {
	s := r.s
	if err := s.addMatches(j); err != nil {
		return err
	}
	switch s.start.kind {
	case "head":
		return j.SeekHead()
	case "time":
		return j.SeekRealtime(s.start.time(time.Now()))
	}
	// tail: land on the last entry (SeekTail then Next would return old
	// entries, one per file), then read what follows it.
	if err := j.SeekTail(); err != nil {
		return err
	}
	found, err := j.Previous()
	if err != nil {
		return err
	}
	if !found {
		// An empty journal: everything that comes is new.
		return j.SeekHead()
	}
	c, err := j.Cursor()
	if err != nil {
		return err
	}
	// Save this position at once: a restart before the first entry must
	// not start from a later tail and miss what came in between.
	r.cur, r.has = append(r.cur[:0], c...), true
	if p, ok := parseCursor(r.cur); ok {
		r.noteSeq(p)
	}
	r.offer()
	return nil
}

func (r *reader) noteSeq(p cursorParts) {
	copy(r.lastSeqID[:], p.seqnumID)
	r.lastSeq, r.haveSeq = p.seq, true
}

// handle publishes one record. It returns an error only when publishing
// failed for good (ctx ended, publisher closed).
func (r *reader) handle(ctx context.Context, rec *sdj.Record, now time.Time) error {
	p, okCursor := parseCursor(rec.Cursor)
	if okCursor {
		if !r.s.hasMatches && r.haveSeq && string(p.seqnumID) == string(r.lastSeqID[:]) && p.seq > r.lastSeq+1 {
			r.nLost += p.seq - r.lastSeq - 1
		}
		r.noteSeq(p)
	}
	if r.build(rec, now) {
		if okCursor {
			r.idb = p.appendID(r.idb[:0])
			r.e.ID = string(r.idb)
		}
		if err := r.publish(ctx); err != nil {
			return err
		}
	}
	r.cur, r.has = append(r.cur[:0], rec.Cursor...), true
	r.realtime = rec.Realtime
	r.entries++
	return nil
}

func (r *reader) publish(ctx context.Context) error {
	err := r.sink.Publish(ctx, r.e)
	if errors.Is(err, bus.ErrTooLarge) {
		// Keep the entry: drop its fields, then cut its message.
		r.nFieldsDropped += uint64(len(r.e.Fields))
		r.e.Fields = map[string]string{FieldMessageTruncated: "true"}
		r.nTruncated++
		for _, limit := range []int{1 << 20, 64 << 10, 4 << 10, 512} {
			if len(r.e.Message) > limit {
				r.e.Message = cutString(r.e.Message, limit)
			}
			if err = r.sink.Publish(ctx, r.e); !errors.Is(err, bus.ErrTooLarge) {
				break
			}
		}
		if errors.Is(err, bus.ErrTooLarge) {
			r.s.m.dropped.WithLabelValues("too_large").Inc()
			r.logLimited("entry too large for the bus even when cut; dropped", "id", r.e.ID)
			return nil
		}
	}
	if err != nil {
		return err
	}
	r.s.m.published.Inc()
	return nil
}

func (r *reader) logLimited(msg string, args ...any) {
	if n, ok := r.s.lim.Allow(); ok {
		if n > 0 {
			args = append(args, "suppressed", n)
		}
		r.s.log.Warn(msg, args...)
	}
}

// cutString cuts s to at most n bytes at a UTF-8 boundary.
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return string(trimPartialRune([]byte(s[:n])))
}

// intern returns b as a string, shared with earlier equal values: hosts,
// units and most fields repeat.
func (r *reader) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := r.strs[string(b)]; ok {
		return s
	}
	if len(r.strs) >= 8192 {
		clear(r.strs)
	}
	s := string(b)
	r.strs[s] = s
	return s
}

// value converts the value of the field with index i: escaped when not
// valid UTF-8, else shared with the previous value of the same field when
// equal (host, boot ID, transport repeat from entry to entry), else
// interned when short.
func (r *reader) value(i int, b []byte) string {
	if i < len(r.last) && r.last[i] == string(b) {
		return r.last[i]
	}
	var v string
	switch {
	case !utf8.Valid(b):
		return Escape(b)
	case len(b) <= 64:
		v = r.intern(b)
	default:
		v = string(b)
	}
	if i < len(r.last) {
		r.last[i] = v
	}
	return v
}

// fixed returns the value of fixed field i of the current record as a
// string, "" when absent.
func (r *reader) fixed(i int) string {
	if !r.present[i] {
		return ""
	}
	return r.value(i, r.vals[i])
}

// build fills r.e from rec; false when the entry is excluded.
func (r *reader) build(rec *sdj.Record, now time.Time) bool {
	s := r.s
	clear(r.present[:])
	n := 0 // fields to copy
	for _, f := range rec.Fields {
		if f.Index < nFixed && !r.present[f.Index] {
			r.present[f.Index] = true
			r.vals[f.Index] = f.Value
			r.trunc[f.Index] = f.Truncated
		}
		if f.Index == sdj.AllFields || s.copyKey[f.Index] != "" {
			n++
		}
	}
	v := func(i int) []byte {
		if r.present[i] {
			return r.vals[i]
		}
		return nil
	}
	unit, userUnit := r.fixed(fUnit), r.fixed(fUserUnit)
	if len(s.exclude) > 0 && (unit != "" || userUnit != "") {
		_, a := s.exclude[unit]
		_, b := s.exclude[userUnit]
		if a || b {
			r.nExcluded++
			return false
		}
	}
	e := &r.e
	*e = bus.Entry{Source: bus.SourceJournald, Received: now}
	if e.Host = r.fixed(fHostname); e.Host == "" {
		e.Host = s.hostname
	}
	e.Service = Service(unit, userUnit, r.fixed(fIdentifier), r.fixed(fComm))
	e.Level = Level(v(fPriority), s.defLevel)
	if n, ok := parseUint(v(fFacility)); ok {
		e.Facility = bus.FacilityFromCode(int(n))
	}
	if n, ok := parseUint(v(fPID)); ok && n <= 1<<31 {
		e.PID = int(n)
	} else if n, ok := parseUint(v(fSyslogPID)); ok && n <= 1<<31 {
		e.PID = int(n)
	}
	if n, ok := parseUint(v(fSourceTime)); ok && n > 0 {
		e.Time = time.UnixMicro(int64(n))
	} else {
		e.Time = time.UnixMicro(int64(rec.Realtime))
	}
	msg := v(fMessage)
	truncated := r.present[fMessage] && r.trunc[fMessage]
	if truncated {
		msg = trimPartialRune(msg)
		r.nTruncated++
	}
	escaped := !utf8.Valid(msg)
	if escaped {
		e.Message = Escape(msg)
	} else {
		e.Message = string(msg)
	}
	if n == 0 && !truncated && !escaped {
		return true
	}
	if truncated {
		n++
	}
	if escaped {
		n++
	}
	// One map serves every entry: Sink.Publish does not keep it.
	if r.fields == nil {
		r.fields = make(map[string]string, n)
	}
	clear(r.fields)
	e.Fields = r.fields
	for _, f := range rec.Fields {
		var key string
		val := f.Value
		if f.Index == sdj.AllFields {
			i := bytes.IndexByte(val, '=')
			if i <= 0 {
				continue
			}
			key = r.intern(val[:i])
			val = val[i+1:]
		} else if key = s.copyKey[f.Index]; key == "" {
			continue
		}
		if f.Truncated {
			r.nFieldsDropped++
			continue
		}
		// A field given twice keeps its last value.
		e.Fields[key] = r.value(f.Index, val)
	}
	if truncated {
		e.Fields[FieldMessageTruncated] = "true"
	}
	if escaped {
		e.Fields[FieldMessageEscaped] = "true"
	}
	return true
}
