//go:build unix

package rotationload

import (
	"syscall"
	"time"
)

// cpuTime returns the user plus system CPU time this process has used, or
// 0 if unknown.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
