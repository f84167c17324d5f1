package mldsa

import "golang.org/x/sys/cpu"

// circl's ML-DSA AVX2 assembly (v1.6.5) returns without VZEROUPPER, which
// leaves the upper halves of the YMM registers dirty; on many x86 CPUs every
// later legacy-SSE instruction (SHA-NI, AES-NI, the Go compiler's float and
// copy code) then runs with a heavy penalty. cleanUpper clears that state
// after each call into circl.

//go:noescape
func vzeroupper()

func cleanUpper() {
	if cpu.X86.HasAVX {
		vzeroupper()
	}
}
