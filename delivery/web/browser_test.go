package web

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/logstream/logstream/bus"
)

const chromiumPath = "/usr/bin/chromium"

// browser is a headless Chromium with one tab, recording page errors and
// every request the page makes.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
	requests []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser test needs Chromium at %s: apt-get install chromium (%v)", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	b := &browser{t: t}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(b.event))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b.ctx = ctx
	// The first run starts the browser; it must not have a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// event records page errors (exceptions, console.error, CSP violations,
// failed loads) and every request the page makes.
func (b *browser) event(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		desc := d.Text
		if d.Exception != nil {
			desc += " " + d.Exception.Description
		}
		b.problems = append(b.problems, "exception: "+desc)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, a.Description+string(a.Value))
			}
			b.problems = append(b.problems, "console.error: "+strings.Join(parts, " "))
		}
	case *log.EventEntryAdded:
		// CSP violations and failed loads are reported here; a WebSocket
		// that cannot connect while the daemon restarts is expected.
		if ev.Entry.Level == log.EntryLevelError && !strings.Contains(ev.Entry.Text, "WebSocket") {
			b.problems = append(b.problems, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
		}
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, ev.Request.URL)
	}
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func evalJS[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (b *browser) click(sel string) { b.t.Helper(); b.do(chromedp.Click(chromedp.CSS(sel))) }

// waitJS polls a JavaScript expression until it is true.
func (b *browser) waitJS(what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !evalJS[bool](b, js) {
		if time.Now().After(deadline) {
			state := evalJS[string](b, `document.querySelector('#status').dataset.state + ' ' + document.querySelector('#log').innerText.slice(-2000)`)
			b.t.Fatalf("timed out waiting for %s; page: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *browser) messages() []string {
	b.t.Helper()
	return evalJS[[]string](b, `Array.from(document.querySelectorAll('#log .row:not(.notice-row) .msg')).map(e => e.textContent)`)
}

func (b *browser) seqs() []int {
	b.t.Helper()
	return evalJS[[]int](b, `Array.from(document.querySelectorAll('#log .row[data-seq]')).map(e => Number(e.dataset.seq))`)
}

func (b *browser) checkProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("page problem: %s", p)
	}
	b.problems = nil
}

// screenshot saves the page as a PNG under $LOGSTREAM_ARTIFACTS, else in
// the test's temporary directory, and logs where.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("LOGSTREAM_ARTIFACTS")
	if dir == "" {
		dir = b.t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", p, len(png))
}

// sendSyslog sends one message with logger(1) to the daemon's syslog
// port over TCP.
func sendSyslog(t *testing.T, d *daemon, prio, tag, msg string) {
	t.Helper()
	if _, err := exec.LookPath("logger"); err != nil {
		t.Fatal("the browser test needs logger: apt-get install bsdutils")
	}
	out, err := exec.Command("logger", "--tcp", "--server", "127.0.0.1", "--port", strconv.Itoa(d.SyslogPort),
		"--rfc5424", "--priority", prio, "--tag", tag, "--", msg).CombinedOutput()
	if err != nil {
		t.Fatalf("logger: %v: %s", err, out)
	}
}

func publish(t *testing.T, b *bus.Bus, entries ...bus.Entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, e := range entries {
		e.Time, e.Received = time.Now(), time.Now()
		if e.Source == "" {
			e.Source = bus.SourceSyslog
		}
		if err := b.Publisher().Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Publisher().Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func jsString(s string) string { return strconv.Quote(s) }

// TestDashboard drives the real dashboard in headless Chromium against
// the real logstreamd: syslog in, rows out, filters, pause, escaping,
// details, theme, bounded rows, and resume across a daemon restart.
func TestDashboard(t *testing.T) {
	d := newDaemon(t)
	b := newBrowser(t)
	pub := d.BusClient()
	page := d.URL() + "/?backlog=0"
	b.do(chromedp.Navigate(page))
	b.waitJS("the page to go live", `document.querySelector('#status').dataset.state === 'live'`)

	t.Run("syslog message appears", func(t *testing.T) {
		msg := "hello from logger " + strconv.FormatInt(time.Now().UnixNano(), 36)
		sendSyslog(t, d, "user.warning", "webtest", msg)
		b.waitJS("the syslog message", `Array.from(document.querySelectorAll('#log .msg')).some(e => e.textContent === `+jsString(msg)+`)`)
		type rowInfo struct {
			Svc, Lvl, Class string
		}
		row := evalJS[rowInfo](b, `(() => { const r = Array.from(document.querySelectorAll('#log .row')).find(r => r.querySelector('.msg').textContent === `+jsString(msg)+`);
			return {Svc: r.querySelector('.svc').textContent, Lvl: r.querySelector('.lvl').textContent, Class: r.className}; })()`)
		if row.Svc != "webtest" || row.Lvl != "warning" || !strings.Contains(row.Class, "lvl-warning") {
			t.Fatalf("row %+v", row)
		}
	})

	t.Run("level filter", func(t *testing.T) {
		evalJS[bool](b, `(() => { const s = document.querySelector('#level'); s.value = 'err'; s.dispatchEvent(new Event('change')); return true; })()`)
		b.waitJS("the filter to apply", `location.search.includes('level=err') && document.querySelectorAll('#log .row').length === 0`)
		publish(t, pub,
			bus.Entry{Host: "web1", Service: "lvl", Level: bus.LevelInfo, Message: "lf info hidden"},
			bus.Entry{Host: "web1", Service: "lvl", Level: bus.LevelWarning, Message: "lf warning hidden"},
			bus.Entry{Host: "web1", Service: "lvl", Level: bus.LevelCrit, Message: "lf crit shown"},
			bus.Entry{Host: "web1", Service: "lvl", Level: bus.LevelErr, Message: "lf err shown"},
		)
		b.waitJS("the err entry", `Array.from(document.querySelectorAll('#log .msg')).some(e => e.textContent === 'lf err shown')`)
		if got := b.messages(); !slices.Equal(got, []string{"lf crit shown", "lf err shown"}) {
			t.Fatalf("rows %q", got)
		}
		// The URL restores the view.
		u := evalJS[string](b, `location.href`)
		b.do(chromedp.Navigate(u))
		b.waitJS("the page to go live again", `document.querySelector('#status').dataset.state === 'live'`)
		level := evalJS[string](b, `document.querySelector('#level').value`)
		if level != "err" {
			t.Fatalf("level after reload: %q", level)
		}
		evalJS[bool](b, `(() => { const s = document.querySelector('#level'); s.value = ''; s.dispatchEvent(new Event('change')); return true; })()`)
		b.waitJS("the filter to clear", `!location.search.includes('level=')`)
	})

	t.Run("pause holds rows, resume shows them in order", func(t *testing.T) {
		b.click("#pause")
		before := b.messages()
		var entries []bus.Entry
		for i := range 5 {
			entries = append(entries, bus.Entry{Host: "web1", Service: "pause", Level: bus.LevelInfo, Message: "paused-" + strconv.Itoa(i)})
		}
		publish(t, pub, entries...)
		b.waitJS("5 waiting", `document.querySelector('#waiting').dataset.count === '5'`)
		if got := b.messages(); !slices.Equal(got, before) {
			t.Fatalf("rows changed while paused: %q", got)
		}
		b.click("#pause")
		b.waitJS("the held rows", `document.querySelectorAll('#log .row').length === `+strconv.Itoa(len(before)+5))
		got := b.messages()
		if !slices.Equal(got[len(got)-5:], []string{"paused-0", "paused-1", "paused-2", "paused-3", "paused-4"}) {
			t.Fatalf("rows after resume %q", got)
		}
	})

	t.Run("hostile entries render as text", func(t *testing.T) {
		evil := `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><b>bold</b> & "quotes"`
		publish(t, pub, bus.Entry{Host: `<i>host</i>`, Service: `<svg onload=alert(1)>`, Level: bus.LevelErr, Message: evil,
			Fields: map[string]string{"<x>": `<img src=y onerror="window.__pwned=3">`}})
		b.waitJS("the hostile row", `Array.from(document.querySelectorAll('#log .msg')).some(e => e.textContent === `+jsString(evil)+`)`)
		b.click(`#log .row:last-child`)
		b.waitJS("the details", `!document.querySelector('#details').hidden`)
		type result struct {
			Pwned    bool
			Elements int
			Host     string
			Field    string
		}
		res := evalJS[result](b, `({Pwned: window.__pwned !== undefined,
			Elements: document.querySelectorAll('#log script, #log img, #log b, #log i, #log svg, #details img, #details script').length,
			Host: document.querySelector('#log .row:last-child .host').textContent,
			Field: Array.from(document.querySelectorAll('#fields tr')).map(r => r.textContent).join('|')})`)
		if res.Pwned || res.Elements != 0 || res.Host != "<i>host</i>" || !strings.Contains(res.Field, `fields.<x><img src=y onerror="window.__pwned=3">`) {
			t.Fatalf("hostile entry was not rendered as text: %+v", res)
		}
	})

	t.Run("details and highlight", func(t *testing.T) {
		b.click("#close-details")
		b.do(chromedp.SendKeys(chromedp.CSS("#q"), "needle"))
		b.waitJS("the search to apply", `location.search.includes('q=needle') && document.querySelectorAll('#log .row').length === 0`)
		publish(t, pub,
			bus.Entry{Host: "web1", Service: "search", Level: bus.LevelNotice, Message: "hay needle hay needle", PID: 42,
				Fields: map[string]string{"msgid": "ID47"}},
			bus.Entry{Host: "web1", Service: "search", Level: bus.LevelNotice, Message: "only hay"},
		)
		b.waitJS("the needle row", `document.querySelectorAll('#log .row mark').length === 2`)
		if got := b.messages(); !slices.Equal(got, []string{"hay needle hay needle"}) {
			t.Fatalf("rows %q", got)
		}
		b.click(`#log .row:last-child .msg`)
		fields := evalJS[map[string]string](b, `Object.fromEntries(Array.from(document.querySelectorAll('#fields tr')).map(r => [r.cells[0].textContent, r.cells[1].textContent]))`)
		if fields["message"] != "hay needle hay needle" || fields["pid"] != "42" || fields["fields.msgid"] != "ID47" || fields["host"] != "web1" || fields["seq"] == "" {
			t.Fatalf("details %v", fields)
		}
		b.screenshot("dashboard-details.png")
		b.click("#close-details")
		evalJS[bool](b, `(() => { const q = document.querySelector('#q'); q.value = ''; q.form.requestSubmit(); return true; })()`)
		b.waitJS("the search to clear", `!location.search.includes('q=')`)
	})

	t.Run("theme", func(t *testing.T) {
		var themes []string
		for range 3 {
			b.click("#theme")
			th := evalJS[string](b, `document.documentElement.dataset.theme || 'auto'`)
			themes = append(themes, th)
			if th == "dark" {
				b.screenshot("dashboard-dark.png")
			}
		}
		if !slices.Equal(themes, []string{"light", "dark", "auto"}) {
			t.Fatalf("themes %q", themes)
		}
	})

	t.Run("resume across a daemon restart", func(t *testing.T) {
		publish(t, pub, bus.Entry{Host: "web1", Service: "restart", Level: bus.LevelInfo, Message: "before restart"})
		b.waitJS("the last row before the restart", `Array.from(document.querySelectorAll('#log .msg')).some(e => e.textContent === 'before restart')`)
		d.Stop()
		b.waitJS("the indicator to leave live", `document.querySelector('#status').dataset.state !== 'live'`)
		d.Start()
		// Published before the page has reconnected (its backoff is at
		// least 0.4 s): it must replay them, once, in order.
		pub2 := d.BusClient()
		var entries []bus.Entry
		for i := range 20 {
			entries = append(entries, bus.Entry{Host: "web1", Service: "restart", Level: bus.LevelInfo, Message: "after restart " + strconv.Itoa(i)})
		}
		publish(t, pub2, entries...)
		b.waitJS("the page to resume", `document.querySelector('#status').dataset.state === 'live' &&
			Array.from(document.querySelectorAll('#log .msg')).some(e => e.textContent === 'after restart 19')`)
		publish(t, pub2, bus.Entry{Host: "web1", Service: "restart", Level: bus.LevelInfo, Message: "live again"})
		b.waitJS("a live row", `Array.from(document.querySelectorAll('#log .msg')).some(e => e.textContent === 'live again')`)
		msgs := b.messages()
		i := slices.Index(msgs, "before restart")
		var want []string
		for i := range 20 {
			want = append(want, "after restart "+strconv.Itoa(i))
		}
		want = append([]string{"before restart"}, append(want, "live again")...)
		if i < 0 || !slices.Equal(msgs[i:], want) {
			t.Fatalf("rows around the restart %q, want %q", msgs[max(i, 0):], want)
		}
		seqs := b.seqs()
		for j := 1; j < len(seqs); j++ {
			if seqs[j] <= seqs[j-1] {
				t.Fatalf("seq %d after %d: a duplicate or disorder", seqs[j], seqs[j-1])
			}
		}
		b.screenshot("dashboard.png")
	})

	t.Run("bounded rows", func(t *testing.T) {
		b.do(chromedp.Navigate(d.URL() + "/?backlog=0&rows=100"))
		b.waitJS("the page to go live", `document.querySelector('#status').dataset.state === 'live'`)
		var entries []bus.Entry
		for i := range 400 {
			entries = append(entries, bus.Entry{Host: "web1", Service: "bulk", Level: bus.Level(i % 8), Message: fmt.Sprintf("bulk %03d", i)})
		}
		publish(t, pub, entries...)
		b.waitJS("the last bulk row", `Array.from(document.querySelectorAll('#log .msg')).some(e => e.textContent === 'bulk 399')`)
		n := evalJS[int](b, `document.querySelectorAll('#log .row').length`)
		if n > 100 {
			t.Fatalf("%d rows in the DOM, limit 100", n)
		}
		if got := b.messages(); got[len(got)-1] != "bulk 399" {
			t.Fatalf("last row %q", got[len(got)-1])
		}
		rate := evalJS[string](b, `document.querySelector('#chart').width > 0 && document.querySelector('#rows').textContent`)
		if rate != strconv.Itoa(n) {
			t.Fatalf("rows stat %q, want %d", rate, n)
		}
		b.screenshot("dashboard-levels.png")
	})

	// Every request the page made went to its own origin.
	b.mu.Lock()
	for _, r := range b.requests {
		u, err := url.Parse(r)
		if err != nil || u.Host != "127.0.0.1:"+strconv.Itoa(d.HTTPPort) {
			t.Errorf("request outside the origin: %s", r)
		}
	}
	b.mu.Unlock()
	b.checkProblems()
}
