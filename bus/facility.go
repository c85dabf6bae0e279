package bus

import (
	"fmt"
	"strconv"
	"strings"
)

// Facility is a syslog facility. Its zero value means "no facility"
// (journald entries written by a service's stdout have none); a syslog
// facility code n (0 kern … 23 local7) is FacilityFromCode(n).
type Facility uint8

// NoFacility is the zero Facility: the entry has none.
const NoFacility Facility = 0

var facilityNames = [24]string{
	"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

// FacilityFromCode returns the facility with syslog code n (0–23), or
// NoFacility when n is out of range.
func FacilityFromCode(n int) Facility {
	if n < 0 || n >= len(facilityNames) {
		return NoFacility
	}
	return Facility(n + 1)
}

// Code returns the syslog facility code (0–23), or -1 for NoFacility.
func (f Facility) Code() int {
	if f == NoFacility || int(f) > len(facilityNames) {
		return -1
	}
	return int(f) - 1
}

// String returns the facility keyword ("daemon", "local0", ...), or "" for
// NoFacility.
func (f Facility) String() string {
	if c := f.Code(); c >= 0 {
		return facilityNames[c]
	}
	return ""
}

// ParseFacility parses a facility keyword or its code 0–23.
func ParseFacility(s string) (Facility, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for i, n := range facilityNames {
		if t == n {
			return Facility(i + 1), nil
		}
	}
	if n, err := strconv.Atoi(t); err == nil && n >= 0 && n < len(facilityNames) {
		return Facility(n + 1), nil
	}
	return NoFacility, fmt.Errorf("bus: unknown facility %q", s)
}
