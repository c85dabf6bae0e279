package journald

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/logstream/logstream/bus"
	"go.yaml.in/yaml/v3"
)

// TestService is the derivation table: every rule of Service.
func TestService(t *testing.T) {
	cases := []struct {
		name                        string
		unit, userUnit, ident, comm string
		want                        string
	}{
		{"service unit", "nginx.service", "", "nginx-ident", "nginx", "nginx"},
		{"unit wins over identifier", "cron.service", "", "CRON", "cron", "cron"},
		{"template instance keeps instance", "getty@tty1.service", "", "agetty", "agetty", "getty@tty1"},
		{"escaped template instance", `systemd-fsck@dev-disk-by\x2duuid-1234.service`, "", "systemd-fsck", "", `systemd-fsck@dev-disk-by\x2duuid-1234`},
		{"user manager with user unit", "user@1000.service", "pipewire.service", "pipewire", "pipewire", "pipewire"},
		{"user manager with user template", "user@1000.service", "app@blue.service", "", "app", "app@blue"},
		{"user manager itself (user init.scope)", "user@1000.service", "init.scope", "systemd", "systemd", "systemd"},
		{"user manager with user scope", "user@1000.service", "app-gnome-firefox-123.scope", "firefox", "firefox", "firefox"},
		{"user manager without user unit", "user@1000.service", "", "systemd", "systemd", "user@1000"},
		{"user unit without user manager is ignored", "nginx.service", "other.service", "", "", "nginx"},
		{"session scope falls back to identifier", "session-3.scope", "", "sudo", "sudo", "sudo"},
		{"container scope falls back to comm", "docker-0123abcd.scope", "", "", "myapp", "myapp"},
		{"init scope", "init.scope", "", "systemd", "systemd", "systemd"},
		{"slice falls back", "user.slice", "", "", "bash", "bash"},
		{"socket unit keeps suffix", "docker.socket", "", "systemd", "", "docker.socket"},
		{"mount unit keeps suffix", "home.mount", "", "", "", "home.mount"},
		{"no unit: identifier", "", "", "kernel", "", "kernel"},
		{"no unit, no identifier: comm", "", "", "", "python3", "python3"},
		{"nothing: unknown", "", "", "", "", "unknown"},
		{"bare .service: fall back", ".service", "", "x", "", "x"},
		{"scope without anything: unknown", "session-1.scope", "", "", "", "unknown"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Service(c.unit, c.userUnit, c.ident, c.comm); got != c.want {
				t.Errorf("Service(%q, %q, %q, %q) = %q, want %q", c.unit, c.userUnit, c.ident, c.comm, got, c.want)
			}
		})
	}
}

// TestLevel is the level derivation table.
func TestLevel(t *testing.T) {
	cases := []struct {
		priority string
		absent   bool
		def      bus.Level
		want     bus.Level
	}{
		{"0", false, bus.LevelInfo, bus.LevelEmerg},
		{"3", false, bus.LevelInfo, bus.LevelErr},
		{"7", false, bus.LevelInfo, bus.LevelDebug},
		{"", true, bus.LevelInfo, bus.LevelInfo},   // absent
		{"", false, bus.LevelInfo, bus.LevelInfo},  // empty
		{"8", false, bus.LevelInfo, bus.LevelInfo}, // out of range
		{"-1", false, bus.LevelInfo, bus.LevelInfo},
		{"12", false, bus.LevelNotice, bus.LevelNotice},
		{"warning", false, bus.LevelInfo, bus.LevelWarning}, // keyword
		{"ERROR", false, bus.LevelInfo, bus.LevelErr},       // alias
		{"garbage", false, bus.LevelInfo, bus.LevelInfo},
		{" 3", false, bus.LevelInfo, bus.LevelErr},
		{"\xff", false, bus.LevelDebug, bus.LevelDebug},
		{strings.Repeat("9", 100), false, bus.LevelInfo, bus.LevelInfo},
	}
	for _, c := range cases {
		var p []byte
		if !c.absent {
			p = []byte(c.priority)
		}
		if got := Level(p, c.def); got != c.want {
			t.Errorf("Level(%q, %v) = %v, want %v", c.priority, c.def, got, c.want)
		}
		if got := Level(p, c.def); got == bus.LevelEmerg && c.priority != "0" && !strings.EqualFold(c.priority, "emerg") {
			t.Errorf("Level(%q) is emerg", c.priority)
		}
	}
}

func TestParseCursor(t *testing.T) {
	const c = "s=91433d6cf53d47e9bb40eff3bcac9989;i=1a3;b=2f4fe591604a401aa5c24ad5b0f16842;m=544c2a4f;t=6612e41716a6f;x=80697fc798b341f"
	p, ok := parseCursor([]byte(c))
	if !ok || string(p.seqnumID) != "91433d6cf53d47e9bb40eff3bcac9989" || p.seq != 0x1a3 || string(p.boot) != "2f4fe591604a401aa5c24ad5b0f16842" {
		t.Fatalf("parseCursor: %+v %v", p, ok)
	}
	if id := string(p.appendID(nil)); id != "2f4fe591604a401a-91433d6cf53d47e9-1a3" {
		t.Errorf("ID %q", id)
	}
	for _, bad := range []string{"", "garbage", "s=xyz;i=1;b=2", "i=1;b=2f4fe591604a401aa5c24ad5b0f16842",
		"s=91433d6cf53d47e9bb40eff3bcac9989;i=;b=2f4fe591604a401aa5c24ad5b0f16842",
		"s=91433d6cf53d47e9bb40eff3bcac9989;i=1;b=2f4fe591604a401aa5c24ad5b0f16842;;",
		"s=91433d6cf53d47e9bb40eff3bcac9989;i=11111111111111111;b=2f4fe591604a401aa5c24ad5b0f16842"} {
		if _, ok := parseCursor([]byte(bad)); ok {
			t.Errorf("parseCursor(%q) accepted", bad)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add("s=91433d6cf53d47e9bb40eff3bcac9989;i=1a3;b=2f4fe591604a401aa5c24ad5b0f16842;m=544c2a4f;t=6612e41716a6f;x=80697fc798b341f")
	f.Add("s=;i=;b=")
	f.Add(";;;")
	f.Fuzz(func(t *testing.T, c string) {
		p, ok := parseCursor([]byte(c))
		if !ok {
			return
		}
		if len(p.seqnumID) != 32 || len(p.boot) != 32 || !isHex(p.seqnum) {
			t.Fatalf("accepted %q as %+v", c, p)
		}
		id := p.appendID(nil)
		if !utf8.Valid(id) || bytes.ContainsAny(id, ".*> ") {
			t.Fatalf("bad ID %q", id)
		}
	})
}

func TestEscape(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"caf\xc3\xa9", "café"},
		{"bad \xff byte", `bad \xff byte`},
		{`back\slash \xff`, `back\\slash \\xff`},
		{"\x00nul\x1b", "\x00nul\x1b"}, // control characters are valid UTF-8; JSON escapes them
		{"cut \xe2\x82", `cut \xe2\x82`},
	}
	for _, c := range cases {
		if got := Escape([]byte(c.in)); got != c.want {
			t.Errorf("Escape(%q) = %q, want %q", c.in, got, c.want)
		}
		if back := Unescape(Escape([]byte(c.in))); string(back) != c.in {
			t.Errorf("Unescape(Escape(%q)) = %q", c.in, back)
		}
	}
}

func FuzzEscape(f *testing.F) {
	f.Add([]byte("bad \xff byte \\ x"))
	f.Add([]byte("\xe2\x82"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := Escape(b)
		if !utf8.ValidString(s) {
			t.Fatalf("Escape(%q) = %q is not valid UTF-8", b, s)
		}
		if back := Unescape(s); !bytes.Equal(back, b) {
			t.Fatalf("Unescape(Escape(%q)) = %q", b, back)
		}
	})
}

func TestTrimPartialRune(t *testing.T) {
	cases := []struct{ in, want string }{
		{"abc", "abc"},
		{"ab\xe2\x82", "ab"},
		{"ab\xe2\x82\xac", "ab\xe2\x82\xac"},
		{"ab\xc3", "ab"},
		{"\xf0\x9f\x98", ""},
		{"", ""},
	}
	for _, c := range cases {
		if got := string(trimPartialRune([]byte(c.in))); got != c.want {
			t.Errorf("trimPartialRune(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestUnitFromCgroup(t *testing.T) {
	cases := []struct{ content, want string }{
		{"0::/system.slice/logstreamd.service\n", "logstreamd.service"},
		{"0::/system.slice/logstream-agent.service\n", "logstream-agent.service"},
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/logstream.service\n", "logstream.service"},
		{"0::/user.slice/user-1000.slice/session-2.scope\n", ""},
		{"0::/user.slice/user-1000.slice/user@1000.service/init.scope\n", ""},
		{"12:memory:/x\n1:name=systemd:/system.slice/logstreamd.service\n0::/\n", "logstreamd.service"},
		{"0::/\n", ""},
		{"", ""},
	}
	for _, c := range cases {
		if got := unitFromCgroup(c.content); got != c.want {
			t.Errorf("unitFromCgroup(%q) = %q, want %q", c.content, got, c.want)
		}
	}
}

func TestConfigYAML(t *testing.T) {
	cases := []struct {
		yaml string
		want Toggle
	}{
		{"enabled: auto", Auto}, {"enabled: true", On}, {"enabled: false", Off}, {"enabled: AUTO", Auto},
		{"enabled: yes", On}, // yaml.v3 takes YAML 1.1 booleans for a bool
		{"enabled: maybe", ""},
		{"enabled: [1]", ""},
	}
	for _, c := range cases {
		var cfg Config
		err := yaml.Unmarshal([]byte(c.yaml), &cfg)
		if c.want == "" {
			if err == nil {
				t.Errorf("%q: accepted as %q", c.yaml, cfg.Enabled)
			}
			continue
		}
		if err != nil || cfg.Enabled != c.want {
			t.Errorf("%q: got %q, %v", c.yaml, cfg.Enabled, err)
		}
	}
	// An explicit empty list stays empty: no fields copied, nothing
	// excluded.
	cfg := DefaultConfig()
	if err := yaml.Unmarshal([]byte("fields: []\nexclude_units: []"), &cfg); err != nil {
		t.Fatal(err)
	}
	if d := cfg.withDefaults(); len(d.Fields) != 0 || len(d.ExcludeUnits) != 0 {
		t.Errorf("empty lists became %v and %v", d.Fields, d.ExcludeUnits)
	}
	// reader_nice absent: unset (Run decides by the sink's mode; see
	// TestReaderPriorityDefault); 0 given: 0.
	for _, c := range []struct {
		yaml string
		want int // -1: unset
	}{{"start: head", -1}, {"reader_nice: 0", 0}, {"reader_nice: 3", 3}} {
		var cfg Config
		if err := yaml.Unmarshal([]byte(c.yaml), &cfg); err != nil {
			t.Fatal(err)
		}
		got := -1
		if n := cfg.withDefaults().ReaderNice; n != nil {
			got = *n
		}
		if got != c.want {
			t.Errorf("%q: reader_nice %d, want %d (-1: unset)", c.yaml, got, c.want)
		}
	}
	out, err := yaml.Marshal(DefaultConfig())
	if err != nil || !strings.Contains(string(out), "enabled: auto") || !strings.Contains(string(out), "max_field_bytes: 64KiB") {
		t.Errorf("marshal defaults: %v\n%s", err, out)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		err  string // prefix; "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"zero config gets defaults", func(c *Config) { *c = Config{} }, ""},
		{"path and namespace", func(c *Config) { c.Path, c.Namespace = "/x", "y" }, "journald.namespace: "},
		{"bad namespace", func(c *Config) { c.Namespace = "a/b" }, "journald.namespace: "},
		{"start head", func(c *Config) { c.Start = "head" }, ""},
		{"start duration", func(c *Config) { c.Start = "1h" }, ""},
		{"start negative duration", func(c *Config) { c.Start = "-30m" }, ""},
		{"start RFC 3339", func(c *Config) { c.Start = "2026-01-02T03:04:05Z" }, ""},
		{"bad start", func(c *Config) { c.Start = "yesterday" }, "journald.start: "},
		{"short commit interval", func(c *Config) { c.CommitInterval = time.Millisecond }, "journald.commit_interval: "},
		{"negative commit entries", func(c *Config) { c.CommitEntries = -1 }, "journald.commit_entries: "},
		{"bad unit match", func(c *Config) { c.Matches.Units = []string{"ok", ""} }, "journald.matches.units[1]: "},
		{"bad identifier match", func(c *Config) { c.Matches.Identifiers = []string{"a\nb"} }, "journald.matches.identifiers[0]: "},
		{"bad level", func(c *Config) { c.Matches.Level = "loud" }, "journald.matches.level: "},
		{"bad field match", func(c *Config) { c.Matches.Fields = []string{"lower=x"} }, "journald.matches.fields[0]: "},
		{"field match without =", func(c *Config) { c.Matches.Fields = []string{"FIELD"} }, "journald.matches.fields[0]: "},
		{"good field match", func(c *Config) { c.Matches.Fields = []string{"_TRANSPORT=kernel"} }, ""},
		{"bad field", func(c *Config) { c.Fields = []string{"MESSAGE", "bad-name"} }, "journald.fields[1]: "},
		{"all fields", func(c *Config) { c.Fields = []string{"*"} }, ""},
		{"empty exclude", func(c *Config) { c.ExcludeUnits = []string{""} }, "journald.exclude_units[0]: "},
		{"emerg default level", func(c *Config) { c.DefaultLevel = "emerg" }, "journald.default_level: "},
		{"bad default level", func(c *Config) { c.DefaultLevel = "x" }, "journald.default_level: "},
		{"tiny max field", func(c *Config) { c.MaxFieldBytes = 10 }, "journald.max_field_bytes: "},
		{"bad enabled", func(c *Config) { c.Enabled = "maybe" }, "journald.enabled: "},
		{"reader nice 0", func(c *Config) { c.ReaderNice = new(0) }, ""},
		{"reader nice 19", func(c *Config) { c.ReaderNice = new(19) }, ""},
		{"negative reader nice", func(c *Config) { c.ReaderNice = new(-1) }, "journald.reader_nice: "},
		{"reader nice 20", func(c *Config) { c.ReaderNice = new(20) }, "journald.reader_nice: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			switch {
			case c.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)):
				t.Errorf("error %v, want prefix %q", err, c.err)
			}
		})
	}
}

func TestParseStart(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p, err := parseStart("90m")
	if err != nil || p.kind != "time" || !p.time(now).Equal(now.Add(-90*time.Minute)) {
		t.Errorf("90m: %+v %v", p, err)
	}
	p, err = parseStart("2025-12-31T00:00:00+01:00")
	if err != nil || !p.time(now).Equal(time.Date(2025, 12, 30, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("RFC 3339: %+v %v", p, err)
	}
}
