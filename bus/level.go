package bus

import (
	"fmt"
	"strconv"
	"strings"
)

// Level is a syslog severity: 0 (emerg) is the most severe, 7 (debug) the
// least. The numbers are those of RFC 5424 section 6.2.1.
type Level uint8

// The eight syslog severities.
const (
	LevelEmerg   Level = 0
	LevelAlert   Level = 1
	LevelCrit    Level = 2
	LevelErr     Level = 3
	LevelWarning Level = 4
	LevelNotice  Level = 5
	LevelInfo    Level = 6
	LevelDebug   Level = 7
)

// NumLevels is the number of levels; valid levels are 0 to NumLevels-1.
const NumLevels = 8

var levelNames = [NumLevels]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// levelAliases maps common names used by loggers and humans onto the eight
// syslog keywords. The mapping is part of the public contract (README).
var levelAliases = map[string]Level{
	"emergency":     LevelEmerg,
	"panic":         LevelEmerg,
	"fatal":         LevelCrit,
	"critical":      LevelCrit,
	"error":         LevelErr,
	"warn":          LevelWarning,
	"information":   LevelInfo,
	"informational": LevelInfo,
	"trace":         LevelDebug,
}

// String returns the syslog keyword of l ("err", "warning", ...), or
// "level(N)" for a value outside 0–7.
func (l Level) String() string {
	if l < NumLevels {
		return levelNames[l]
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// Valid reports whether l is one of the eight syslog severities.
func (l Level) Valid() bool { return l < NumLevels }

// ParseLevel parses a syslog keyword (emerg alert crit err warning notice
// info debug), one of the aliases (emergency, panic → emerg; fatal,
// critical → crit; error → err; warn → warning; information,
// informational → info; trace → debug), or a number 0–7. Case and
// surrounding space are ignored. Anything else is an error: an unknown
// level never silently becomes emerg.
func ParseLevel(s string) (Level, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for i, n := range levelNames {
		if t == n {
			return Level(i), nil
		}
	}
	if l, ok := levelAliases[t]; ok {
		return l, nil
	}
	if len(t) == 1 && t[0] >= '0' && t[0] <= '7' {
		return Level(t[0] - '0'), nil
	}
	return 0, fmt.Errorf("bus: unknown level %q (want one of emerg, alert, crit, err, warning, notice, info, debug, or 0-7)", s)
}

// MarshalText implements encoding.TextMarshaler with the syslog keyword.
func (l Level) MarshalText() ([]byte, error) {
	if !l.Valid() {
		return nil, fmt.Errorf("bus: invalid level %d", uint8(l))
	}
	return []byte(levelNames[l]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseLevel.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
