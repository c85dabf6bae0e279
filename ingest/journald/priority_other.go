//go:build !linux

package journald

import "errors"

func lowerThreadPriority(int) (int, func() error, error) {
	return 0, nil, errors.New("thread priorities are set on Linux only")
}
