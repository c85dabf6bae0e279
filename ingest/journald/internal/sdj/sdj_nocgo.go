//go:build !cgo || !linux

package sdj

import (
	"fmt"
	"runtime"
	"time"
)

var errBuild = fmt.Errorf("%w: built without cgo (CGO_ENABLED=0) or not on Linux (GOOS=%s)", ErrUnavailable, runtime.GOOS)

// Load reports that this build cannot read the journal.
func Load() error { return errBuild }

// Journal cannot be opened in this build.
type Journal struct{}

// OpenLocal returns ErrUnavailable.
func OpenLocal() (*Journal, error) { return nil, errBuild }

// OpenDirectory returns ErrUnavailable.
func OpenDirectory(string) (*Journal, error) { return nil, errBuild }

// OpenNamespace returns ErrUnavailable.
func OpenNamespace(string) (*Journal, error) { return nil, errBuild }

// ReadResult says what Read did.
type ReadResult struct {
	N, Used      int
	EOF          bool
	Skipped      int
	LastRealtime uint64
}

func (*Journal) Close()                               {}
func (*Journal) Wake()                                {}
func (*Journal) SetFields([]string, bool)             {}
func (*Journal) SetDataThreshold(int) error           { return errBuild }
func (*Journal) AddMatch(string) error                { return errBuild }
func (*Journal) AddDisjunction() error                { return errBuild }
func (*Journal) AddConjunction() error                { return errBuild }
func (*Journal) FlushMatches()                        {}
func (*Journal) SeekHead() error                      { return errBuild }
func (*Journal) SeekTail() error                      { return errBuild }
func (*Journal) SeekRealtime(time.Time) error         { return errBuild }
func (*Journal) SeekCursor(string) error              { return errBuild }
func (*Journal) Next() (bool, error)                  { return false, errBuild }
func (*Journal) Previous() (bool, error)              { return false, errBuild }
func (*Journal) Current()                             {}
func (*Journal) TestCursor(string) (bool, error)      { return false, errBuild }
func (*Journal) Cursor() (string, error)              { return "", errBuild }
func (*Journal) Read([]byte, int) (ReadResult, error) { return ReadResult{}, errBuild }
func (*Journal) Wait(time.Duration) (Event, error)    { return Nop, errBuild }

// Ring cannot be made in this build.
type Ring struct{}

// NewRing returns ErrUnavailable.
func NewRing(int, int) (*Ring, error) { return nil, errBuild }

// PumpEvent is why Pump returned.
type PumpEvent int

// Pump results.
const (
	PumpEnd PumpEvent = iota
	PumpWoken
	PumpTooLarge
)

func (*Ring) Next() (int, error)                         { return -1, errBuild }
func (*Ring) Slot(int) ([]byte, ReadResult, time.Time)   { return nil, ReadResult{}, time.Time{} }
func (*Ring) Release(int)                                {}
func (*Ring) CloseWriter()                               {}
func (*Ring) Close()                                     {}
func (*Ring) Wake()                                      {}
func (*Ring) Collect() (bool, error)                     { return false, errBuild }
func (*Journal) Pump(*Ring, int, int) (PumpEvent, error) { return PumpEnd, errBuild }
