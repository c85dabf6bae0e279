//go:build linux

package journald

import "syscall"

// lowerThreadPriority adds n to the nice value of the calling thread
// (Linux keeps one for each thread), at most 19, and returns the value
// set and a function that sets the former value again. Raising a nice
// value needs no privilege; restoring it needs CAP_SYS_NICE (or a
// RLIMIT_NICE that allows it), so restore may fail.
func lowerThreadPriority(n int) (nice int, restore func() error, err error) {
	tid := syscall.Gettid()
	// The system call returns 20 - nice, not nice.
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		return 0, nil, err
	}
	old := 20 - raw
	nice = min(old+n, 19)
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
		return 0, nil, err
	}
	return nice, func() error { return syscall.Setpriority(syscall.PRIO_PROCESS, tid, old) }, nil
}
