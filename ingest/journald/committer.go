package journald

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logstream/logstream/internal/ratelog"
)

// finalFlushTimeout bounds the wait for acknowledgements at shutdown
// before the last cursor is saved.
const finalFlushTimeout = 5 * time.Second

// position is how far the reader got: the cursor of the last entry it
// handed to the sink (or skipped), that entry's journal time, and how many
// entries it processed in all.
type position struct {
	cursor   string
	realtime uint64 // microseconds
	entries  uint64
}

// committer saves the reader's position, each time only after the sink
// acknowledged every entry published before it: the reader offers a
// position after publishing up to it; the committer calls Flush (which
// waits for everything published before the call), then writes the file.
// It runs in its own goroutine, so the reader never waits for the disk or
// for acknowledgements.
type committer struct {
	sink     Sink
	path     string
	log      *slog.Logger
	m        *metrics
	interval time.Duration
	every    uint64

	mu     sync.Mutex
	latest position
	gen    uint64
	notify chan struct{}

	// For the lag gauge: the newest entry read, the saved position.
	readRealtime  atomic.Uint64
	savedRealtime atomic.Uint64

	// owned by run
	saved    position
	savedGen uint64
	lastSave time.Time
	retryAt  time.Time // after a failed save
	lim      ratelog.Limiter
}

func newCommitter(s *Source, sink Sink) *committer {
	return &committer{
		lim:  ratelog.Limiter{Every: logEvery},
		sink: sink, path: s.cursorPath, log: s.log, m: s.m,
		interval: s.cfg.CommitInterval, every: uint64(s.cfg.CommitEntries),
		notify: make(chan struct{}, 1),
	}
}

// noteRead records the journal time of the newest entry read, for the
// cursor lag gauge.
func (c *committer) noteRead(realtime uint64) {
	c.readRealtime.Store(realtime)
	if saved := c.savedRealtime.Load(); saved > 0 {
		c.m.cursorLag.Set(lagSeconds(realtime, saved))
	}
}

// offer records p as the latest position. Cheap; never blocks.
func (c *committer) offer(p position) {
	c.mu.Lock()
	c.latest = p
	c.gen++
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *committer) get() (position, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest, c.gen
}

// run commits until stop is closed, then commits the last position (with
// its own deadline) and returns. ctx bounds Flush calls before stop.
func (c *committer) run(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			c.final()
			return
		case <-c.notify:
		}
		for {
			p, gen := c.get()
			if gen == c.savedGen {
				break
			}
			due := c.lastSave.Add(c.interval)
			if c.every > 0 && p.entries-c.saved.entries >= c.every {
				due = time.Time{}
			}
			if due.Before(c.retryAt) {
				due = c.retryAt
			}
			if wait := time.Until(due); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-stop:
					t.Stop()
					c.final()
					return
				case <-t.C:
				}
				continue // commit the latest position, which may be newer
			}
			if err := c.sink.Flush(ctx); err != nil {
				if ctx.Err() != nil {
					<-stop
					c.final()
					return
				}
				c.logLimited("flush before saving the cursor failed, will retry", "err", err)
				t := time.NewTimer(time.Second)
				select {
				case <-stop:
					t.Stop()
					c.final()
					return
				case <-t.C:
				}
				continue
			}
			c.save(p, gen)
		}
	}
}

func (c *committer) final() {
	p, gen := c.get()
	if gen == c.savedGen {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), finalFlushTimeout)
	defer cancel()
	if err := c.sink.Flush(ctx); err != nil {
		c.log.Warn("cursor not saved at shutdown: entries still unacknowledged will be read again at the next start",
			"err", err, "cursor_file", c.path)
		return
	}
	c.save(p, gen)
}

func (c *committer) save(p position, gen uint64) {
	if err := writeFileAtomic(c.path, []byte(p.cursor+"\n")); err != nil {
		c.m.cursorErrors.Inc()
		c.logLimited("cursor save failed, will retry", "err", err)
		// Try again after an interval, not in a loop.
		c.retryAt = time.Now().Add(max(c.interval, time.Second))
		return
	}
	c.saved, c.savedGen, c.lastSave = p, gen, time.Now()
	c.m.cursorSaves.Inc()
	if p.realtime > 0 {
		c.savedRealtime.Store(p.realtime)
		c.m.cursorLag.Set(lagSeconds(c.readRealtime.Load(), p.realtime))
	}
}

func lagSeconds(newest, saved uint64) float64 {
	if newest <= saved {
		return 0
	}
	return float64(newest-saved) / 1e6
}

func (c *committer) logLimited(msg string, args ...any) {
	if n, ok := c.lim.Allow(); ok {
		if n > 0 {
			args = append(args, "suppressed", n)
		}
		c.log.Warn(msg, args...)
	}
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, fsync, rename, fsync of the directory. A crash leaves the
// old or the new content, never a mix.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write cursor %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write cursor %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// readCursor reads a cursor file. It returns "" and no error when there is
// none; a reason ("empty", "unreadable") with the error otherwise.
func readCursor(path string) (cursor, reason string, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "unreadable", err
	}
	c := strings.TrimSpace(string(b))
	if c == "" {
		return "", "empty", errors.New("the file is empty")
	}
	return c, "", nil
}
