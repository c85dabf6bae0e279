package journald

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/logstream/logstream/bus"
	"github.com/logstream/logstream/internal/config"
	"go.yaml.in/yaml/v3"
)

// Toggle is on, off, or auto (on when the journal is there to read).
type Toggle string

// Toggle values; in YAML true, false or auto.
const (
	Auto Toggle = "auto"
	On   Toggle = "true"
	Off  Toggle = "false"
)

// UnmarshalYAML accepts true, false (and YAML's other booleans) or auto.
func (t *Toggle) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if strings.EqualFold(n.Value, "auto") {
			*t = Auto
			return nil
		}
		var b bool
		if err := n.Decode(&b); err == nil {
			*t = Off
			if b {
				*t = On
			}
			return nil
		}
	}
	return fmt.Errorf("line %d: want true, false or auto", n.Line)
}

// MarshalYAML writes true, false or auto.
func (t Toggle) MarshalYAML() (any, error) {
	switch t {
	case On:
		return true, nil
	case Off:
		return false, nil
	}
	return "auto", nil
}

// Config is the journald section of the daemon's configuration. New
// applies the defaults of DefaultConfig to zero fields.
type Config struct {
	// Enabled: true, false, or auto (the default): on when the journal
	// to read exists and this build can read it (cgo), else one info line.
	Enabled Toggle `yaml:"enabled"`
	// Path of a directory of journal files to read (e.g. another
	// machine's /var/log/journal/<machine-id>). Empty (the default): the
	// local system journal. Exclusive with namespace.
	Path string `yaml:"path"`
	// Namespace of journald to read (systemd-journald@<namespace>).
	// Empty (the default): the default namespace.
	Namespace string `yaml:"namespace"`
	// Start is where reading begins when there is no usable saved cursor:
	// "tail" (the default: entries written from now on), "head" (every
	// entry the journal holds), a duration (entries since that long ago,
	// e.g. "1h") or an RFC 3339 time.
	Start string `yaml:"start"`
	// CursorFile holds the position of the last entry the bus
	// acknowledged. Default <state_dir>/journald.cursor. Its content is a
	// journald cursor: journalctl --cursor-file reads it too.
	CursorFile string `yaml:"cursor_file"`
	// CommitInterval is how often, at most, the cursor is saved while
	// entries flow; an idle journal writes nothing. Default 1s.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// CommitEntries also saves the cursor once this many entries were read
	// since the last save, even before CommitInterval. 0 (the default):
	// by time only.
	CommitEntries int `yaml:"commit_entries"`
	// Matches select the entries to read, with journald's own match
	// engine. Empty (the default): every entry.
	Matches Matches `yaml:"matches"`
	// ExcludeUnits are systemd units (system or user) whose entries are
	// skipped; a name without a suffix gets ".service". Default
	// [logstreamd.service]; the unit logstreamd itself runs in (read from
	// /proc/self/cgroup) is always skipped, so it never reads its own log.
	ExcludeUnits []string `yaml:"exclude_units"`
	// Fields are the journald fields copied into the entry's fields, under
	// their journald names. "*" copies every field. Default: the units,
	// SYSLOG_IDENTIFIER, _BOOT_ID, _TRANSPORT, CODE_FILE, CODE_LINE,
	// CODE_FUNC and _STREAM_ID (see DefaultFields).
	Fields []string `yaml:"fields"`
	// DefaultLevel is the level of an entry whose PRIORITY is absent or
	// invalid. Default info; emerg is refused.
	DefaultLevel string `yaml:"default_level"`
	// MaxFieldBytes cuts MESSAGE (fields "message_truncated": "true") and
	// drops other fields longer than this. Default 64KiB.
	MaxFieldBytes config.ByteSize `yaml:"max_field_bytes"`
	// ReaderNice lowers the priority of the thread that reads the journal
	// by this many nice levels (0-19; the result is at most 19). The
	// journal is the buffer: reading gives way to publishing and to the
	// embedded server storing what was read, which on a busy small
	// machine moves more entries a second. 0 reads at the daemon's own
	// priority. Unset (nil) it depends on the bus, and logstreamd fills it
	// in with SetReaderNiceDefault: DefaultReaderNice when the bus
	// publishes to JetStream, else 0 — in core-NATS mode reading is most
	// of the work and sets the rate. A Source whose ReaderNice is still
	// nil reads at 0.
	ReaderNice *int `yaml:"reader_nice,omitempty"`
}

// Matches select entries. Units and identifiers are alternatives (an
// entry of any listed unit or with any listed identifier); the level and
// the field matches narrow that further.
type Matches struct {
	// Units: _SYSTEMD_UNIT values; a name without a suffix gets ".service".
	Units []string `yaml:"units"`
	// Identifiers: SYSLOG_IDENTIFIER values.
	Identifiers []string `yaml:"identifiers"`
	// Level: the least severe level read, e.g. "warning" reads emerg to
	// warning. Entries without PRIORITY are then not read. Empty: all.
	Level string `yaml:"level"`
	// Fields: "FIELD=value" matches; several values of one field are
	// alternatives, different fields must all match (journalctl's rules).
	Fields []string `yaml:"fields"`
}

// DefaultFields are the journald fields copied into Entry.Fields by
// default.
var DefaultFields = []string{
	"_SYSTEMD_UNIT", "_SYSTEMD_USER_UNIT", "SYSLOG_IDENTIFIER", "_BOOT_ID", "_TRANSPORT",
	"CODE_FILE", "CODE_LINE", "CODE_FUNC", "_STREAM_ID",
}

// DefaultConfig returns the daemon's defaults.
func DefaultConfig() Config {
	return Config{
		Enabled:        Auto,
		Start:          "tail",
		CommitInterval: time.Second,
		ExcludeUnits:   []string{"logstreamd.service"},
		Fields:         append([]string(nil), DefaultFields...),
		DefaultLevel:   "info",
		MaxFieldBytes:  64 << 10,
	}
}

// DefaultReaderNice is the default of Config.ReaderNice when the bus
// publishes to JetStream.
const DefaultReaderNice = 10

// SetReaderNiceDefault fills an unset ReaderNice with its default for the
// bus the source publishes to: DefaultReaderNice with JetStream (the
// embedded server's storing sets the rate, and reading gives way to it),
// 0 in core-NATS mode (reading sets the rate). A set value stays.
func (c *Config) SetReaderNiceDefault(jetStream bool) {
	if c.ReaderNice != nil {
		return
	}
	n := 0
	if jetStream {
		n = DefaultReaderNice
	}
	c.ReaderNice = &n
}

// withDefaults fills zero fields from DefaultConfig. A nil ExcludeUnits or
// Fields gets the default list; an empty one stays empty.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Enabled == "" {
		c.Enabled = d.Enabled
	}
	if c.Start == "" {
		c.Start = d.Start
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = d.CommitInterval
	}
	if c.ExcludeUnits == nil {
		c.ExcludeUnits = d.ExcludeUnits
	}
	if c.Fields == nil {
		c.Fields = d.Fields
	}
	if c.DefaultLevel == "" {
		c.DefaultLevel = d.DefaultLevel
	}
	if c.MaxFieldBytes == 0 {
		c.MaxFieldBytes = d.MaxFieldBytes
	}
	return c
}

// cursorPath returns the cursor file's path.
func (c *Config) cursorPath(stateDir string) string {
	if c.CursorFile != "" {
		return c.CursorFile
	}
	return filepath.Join(stateDir, "journald.cursor")
}

// startPoint is a parsed Start.
type startPoint struct {
	kind string // "tail", "head" or "time"
	ago  time.Duration
	at   time.Time
}

func (p startPoint) time(now time.Time) time.Time {
	if p.ago > 0 {
		return now.Add(-p.ago)
	}
	return p.at
}

func parseStart(s string) (startPoint, error) {
	switch s {
	case "tail", "head":
		return startPoint{kind: s}, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d > 0 {
		return startPoint{kind: "time", ago: d}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return startPoint{kind: "time", at: t}, nil
	}
	return startPoint{}, fmt.Errorf("%q is not tail, head, a duration such as 1h, or an RFC 3339 time", s)
}

// validFieldName reports whether s is a journald field name: upper-case
// letters, digits and underscores, not starting with a digit, at most 64
// bytes.
func validFieldName(s string) bool {
	if s == "" || len(s) > 64 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// unitName adds ".service" to a unit name without a suffix.
func unitName(u string) string {
	if strings.Contains(u, ".") {
		return u
	}
	return u + ".service"
}

// Validate checks c after defaults (it applies them to a copy); errors
// start with the key path.
func (c *Config) Validate() error {
	v := c.withDefaults()
	switch v.Enabled {
	case Auto, On, Off:
	default:
		return fmt.Errorf("journald.enabled: %q is not true, false or auto", v.Enabled)
	}
	if v.Path != "" && v.Namespace != "" {
		return fmt.Errorf("journald.namespace: set either path or namespace, not both")
	}
	if v.Namespace != "" && (strings.ContainsAny(v.Namespace, "/. \t\n") || len(v.Namespace) > 200) {
		return fmt.Errorf("journald.namespace: %q is not a namespace name", v.Namespace)
	}
	if _, err := parseStart(v.Start); err != nil {
		return fmt.Errorf("journald.start: %v", err)
	}
	if v.CommitInterval < 10*time.Millisecond {
		return fmt.Errorf("journald.commit_interval: %v is too short (at least 10ms)", v.CommitInterval)
	}
	if v.CommitEntries < 0 {
		return fmt.Errorf("journald.commit_entries: %d is negative", v.CommitEntries)
	}
	for i, u := range v.Matches.Units {
		if u == "" || strings.ContainsAny(u, "\n=") {
			return fmt.Errorf("journald.matches.units[%d]: %q is not a unit name", i, u)
		}
	}
	for i, id := range v.Matches.Identifiers {
		if id == "" || strings.Contains(id, "\n") {
			return fmt.Errorf("journald.matches.identifiers[%d]: %q is not an identifier", i, id)
		}
	}
	if v.Matches.Level != "" {
		if _, err := bus.ParseLevel(v.Matches.Level); err != nil {
			return fmt.Errorf("journald.matches.level: %v", err)
		}
	}
	for i, f := range v.Matches.Fields {
		name, _, ok := strings.Cut(f, "=")
		if !ok || !validFieldName(name) {
			return fmt.Errorf("journald.matches.fields[%d]: %q is not FIELD=value with an upper-case journald field name", i, f)
		}
	}
	for i, u := range v.ExcludeUnits {
		if u == "" {
			return fmt.Errorf("journald.exclude_units[%d]: empty unit name", i)
		}
	}
	for i, f := range v.Fields {
		if f != "*" && !validFieldName(f) {
			return fmt.Errorf("journald.fields[%d]: %q is not a journald field name (upper-case letters, digits, _) or *", i, f)
		}
	}
	l, err := bus.ParseLevel(v.DefaultLevel)
	if err != nil {
		return fmt.Errorf("journald.default_level: %v", err)
	}
	if l == bus.LevelEmerg {
		return fmt.Errorf("journald.default_level: emerg would mark every entry without a priority as an emergency")
	}
	if v.MaxFieldBytes < 1024 || v.MaxFieldBytes > 64<<20 {
		return fmt.Errorf("journald.max_field_bytes: %v out of range 1KiB-64MiB", v.MaxFieldBytes)
	}
	if n := v.ReaderNice; n != nil && (*n < 0 || *n > 19) {
		return fmt.Errorf("journald.reader_nice: %d out of range 0-19 (raising the priority needs privileges logstreamd does not ask for)", *n)
	}
	return nil
}
