package bus_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/logstream/logstream/bus"
	"github.com/nats-io/nats-server/v2/server"
)

func TestSanitizeToken(t *testing.T) {
	long := strings.Repeat("a", 200)
	longUTF := strings.Repeat("é", 100) // 200 bytes
	tests := []struct {
		name, in, want string
	}{
		{"plain", "nginx", "nginx"},
		{"dots", "web1.example.com", "web1_example_com"},
		{"wildcards", "a*b>c", "a_b_c"},
		{"only gt", ">", "_"},
		{"only star", "*", "_"},
		{"spaces", "my service\tx\ny", "my_service_x_y"},
		{"unicode space", "a\u00a0b\u2003c", "a_b_c"},
		{"control", "a\x00b\x1bc\x7f", "a_b_c_"},
		{"line separators", "a\u2028b\u2029c", "a_b_c"},
		{"empty", "", "_"},
		{"invalid utf8", "a\xffb\xc3", "a_b_"},
		{"replacement char", "a\ufffdb", "a_b"},
		{"unicode kept", "café-日本", "café-日本"},
		{"dollar and dash kept", "$SYS-x_y", "$SYS-x_y"},
		{"cut", long, long[:bus.MaxTokenLen]},
		{"cut at rune boundary", longUTF, strings.Repeat("é", bus.MaxTokenLen/2)},
		{"cut odd boundary", "x" + longUTF, "x" + strings.Repeat("é", (bus.MaxTokenLen-1)/2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bus.SanitizeToken(tt.in)
			if got != tt.want {
				t.Errorf("SanitizeToken(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(got) > bus.MaxTokenLen || !utf8.ValidString(got) {
				t.Errorf("bad token %q", got)
			}
		})
	}
}

func TestSubject(t *testing.T) {
	tests := []struct {
		host, service string
		level         bus.Level
		want          string
	}{
		{"web1", "nginx", bus.LevelErr, "logs.web1.nginx.err"},
		{"web1.example.com", "user@1000.service", bus.LevelInfo, "logs.web1_example_com.user@1000_service.info"},
		{"", "", bus.LevelDebug, "logs._._.debug"},
		{"h", "s", bus.Level(42), "logs.h.s.notice"},
	}
	for _, tt := range tests {
		if got := bus.Subject("logs", tt.host, tt.service, tt.level); got != tt.want {
			t.Errorf("Subject(%q, %q, %v) = %q, want %q", tt.host, tt.service, tt.level, got, tt.want)
		}
	}
}

func TestFilterSubjects(t *testing.T) {
	tests := []struct {
		name string
		f    bus.Filter
		want []string
	}{
		{"all", bus.Filter{}, []string{"logs.>"}},
		{"all levels explicit", bus.Filter{Levels: bus.AllLevels}, []string{"logs.>"}},
		{"err and above", bus.Filter{Levels: bus.LevelsUpTo(bus.LevelErr)},
			[]string{"logs.*.*.emerg", "logs.*.*.alert", "logs.*.*.crit", "logs.*.*.err"}},
		{"one service", bus.Filter{Services: []string{"nginx"}}, []string{"logs.*.nginx.*"}},
		{"hosts sanitised, sorted, deduplicated", bus.Filter{Hosts: []string{"web2", "web1.x", "web2"}},
			[]string{"logs.web1_x.*.*", "logs.web2.*.*"}},
		{"glob widens to wildcard", bus.Filter{Hosts: []string{"web*", "db1"}}, []string{"logs.>"}},
		{"star alone is all", bus.Filter{Services: []string{"*"}}, []string{"logs.>"}},
		{"product", bus.Filter{Hosts: []string{"a", "b"}, Services: []string{"s"}, Levels: bus.LevelsUpTo(bus.LevelAlert)},
			[]string{"logs.a.s.emerg", "logs.a.s.alert", "logs.b.s.emerg", "logs.b.s.alert"}},
		{"scope narrows hosts", bus.Filter{Scope: &bus.Filter{Hosts: []string{"a"}}}, []string{"logs.a.*.*"}},
		{"scope intersects", bus.Filter{Hosts: []string{"a", "b"}, Scope: &bus.Filter{Hosts: []string{"b", "c"}}}, []string{"logs.b.*.*"}},
		{"scope excludes all", bus.Filter{Hosts: []string{"a"}, Scope: &bus.Filter{Hosts: []string{"b"}}}, nil},
		{"scope levels", bus.Filter{Levels: bus.LevelsUpTo(bus.LevelWarning), Scope: &bus.Filter{Levels: bus.LevelsUpTo(bus.LevelAlert)}},
			[]string{"logs.*.*.emerg", "logs.*.*.alert"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.f.Subjects("logs")
			if !slices.Equal(got, tt.want) {
				t.Errorf("Subjects() = %q, want %q", got, tt.want)
			}
			for _, s := range got {
				if !server.IsValidSubject(s) {
					t.Errorf("invalid subject %q", s)
				}
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	e := bus.Entry{Host: "web1.example.com", Service: "nginx", Level: bus.LevelErr, Message: "upstream timed out"}
	tests := []struct {
		name string
		f    bus.Filter
		want bool
	}{
		{"zero", bus.Filter{}, true},
		{"host raw form", bus.Filter{Hosts: []string{"web1.example.com"}}, true},
		{"host token form", bus.Filter{Hosts: []string{"web1_example_com"}}, true},
		{"host glob", bus.Filter{Hosts: []string{"web*"}}, true},
		{"host glob middle", bus.Filter{Hosts: []string{"web*.com"}}, true},
		{"host glob miss", bus.Filter{Hosts: []string{"db*"}}, false},
		{"service miss", bus.Filter{Services: []string{"sshd"}}, false},
		{"level in", bus.Filter{Levels: bus.LevelsUpTo(bus.LevelWarning)}, true},
		{"level out", bus.Filter{Levels: bus.LevelsUpTo(bus.LevelCrit)}, false},
		{"contains", bus.Filter{Contains: "timed"}, true},
		{"contains miss", bus.Filter{Contains: "refused"}, false},
		{"regexp", bus.Filter{Regexp: regexp.MustCompile(`^up.*out$`)}, true},
		{"scope denies", bus.Filter{Scope: &bus.Filter{Services: []string{"sshd"}}}, false},
		{"scope allows", bus.Filter{Scope: &bus.Filter{Services: []string{"ng*"}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Match(&e); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
			m := tt.f.Compile()
			subj := bus.EntrySubject("logs", &e)
			if got := m.MatchSubject("logs", subj) && m.MatchMessage(e.Message); got != tt.want {
				t.Errorf("MatchSubject+MatchMessage = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, ok := range []string{"logs", "a.b", "$x"} {
		if err := bus.ValidatePrefix(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a..b", "logs.*", "a>", "a b", ".a"} {
		if err := bus.ValidatePrefix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzSubject: for any host and service, the subject is a valid NATS
// publish subject (nats-server's own check), has exactly four tokens, and
// is the same every time.
func FuzzSubject(f *testing.F) {
	for _, s := range []string{"", ".", "*", ">", "a.b", " ", "\x00", "\xff", "\ufffd", "web1", strings.Repeat("é", 80), "a\u2028b"} {
		f.Add(s, s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, host, service string, lvl uint8) {
		s := bus.Subject("logs", host, service, bus.Level(lvl%8))
		if !server.IsValidPublishSubject(s) {
			t.Fatalf("invalid publish subject %q from %q %q", s, host, service)
		}
		toks := strings.Split(s, ".")
		if len(toks) != 4 {
			t.Fatalf("subject %q has %d tokens", s, len(toks))
		}
		if len(toks[1]) > bus.MaxTokenLen || len(toks[2]) > bus.MaxTokenLen {
			t.Fatalf("token too long in %q", s)
		}
		if s2 := bus.Subject("logs", host, service, bus.Level(lvl%8)); s2 != s {
			t.Fatalf("not deterministic: %q then %q", s, s2)
		}
		if bus.SanitizeToken(toks[1]) != toks[1] {
			t.Fatalf("sanitising is not idempotent on %q", toks[1])
		}
	})
}
