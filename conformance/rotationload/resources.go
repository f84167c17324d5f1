package rotationload

import (
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/signet-id/signet/internal/procfs"
)

// Memory is a sample of this process's memory. The server, its embedded
// etcd and the simulated agents all run in this one process.
type Memory struct {
	// HeapAlloc is the live Go heap after a forced garbage collection.
	HeapAlloc uint64
	// Sys is the memory the Go runtime obtained from the OS.
	Sys uint64
	// RSS is the resident set size (VmRSS; 0 where /proc is unavailable).
	// It includes etcd's memory-mapped database.
	RSS        uint64
	Goroutines int
}

// sampleMemory collects garbage, then reads the runtime's statistics.
func sampleMemory() Memory {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return Memory{HeapAlloc: m.HeapAlloc, Sys: m.Sys, RSS: residentSetSize(), Goroutines: runtime.NumGoroutine()}
}

// residentSetSize reads VmRSS from /proc/self/status, or returns 0.
func residentSetSize() uint64 {
	st, err := procfs.ReadStatus("/proc/self")
	if err != nil {
		return 0
	}
	return st.RSS
}

// loadAverage returns the machine's 1-minute load average from
// /proc/loadavg, or -1 where it is unavailable.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
