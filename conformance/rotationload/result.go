package rotationload

import (
	"io"
	"log/slog"
	"time"

	"github.com/signet-id/signet/rotation/taint"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults for Config.
const (
	DefaultStartConcurrency = 32
	DefaultPollInterval     = 100 * time.Millisecond
	DefaultCeilingDuration  = 2 * time.Second
	// entryChunk is how many entries one BatchCreateEntry call creates.
	entryChunk = 500
	// tokenWorkers is how many join tokens are created at once.
	tokenWorkers = 8
	// waitStep is the polling step of the bounded waits between phases.
	waitStep = 50 * time.Millisecond
	// phaseTimeout bounds each wait between phases.
	phaseTimeout = 5 * time.Minute
)

// Config configures one measurement.
type Config struct {
	// TrustDomain defaults to example.org.
	TrustDomain     spiffeid.TrustDomain
	Agents          int
	EntriesPerAgent int
	// ReuseKey: see AgentConfig.ReuseKey.
	ReuseKey bool
	// Dir holds the server's data and admin socket; its path must be short
	// (Unix socket paths are limited to 108 bytes).
	Dir string
	// StartConcurrency bounds how many agents attest and obtain their first
	// SVIDs at once (default DefaultStartConcurrency).
	StartConcurrency int
	// PollInterval is how often the server's count is polled during the
	// rotation (default DefaultPollInterval).
	PollInterval time.Duration
	// CeilingDuration is how long the signing ceiling is measured (default
	// DefaultCeilingDuration).
	CeilingDuration time.Duration
	// CPUProfile, if set, receives a CPU profile of the process from the
	// taint until the rotation is done.
	CPUProfile io.Writer
	Logger     *slog.Logger
	Rand       io.Reader
	Now        func() time.Time
}

// Result is what one measurement found. Durations of the rotation are
// measured from the TaintX509Authority call.
type Result struct {
	Agents, EntriesPerAgent int
	ReuseKey                bool
	Cores                   int
	// LoadBefore and LoadAfter are the machine's 1-minute load average
	// before and after the rotation and its ceilings (-1 if unknown): other
	// processes on the machine compete for the same cores.
	LoadBefore, LoadAfter float64
	OldAuthority          string
	NewAuthority          string

	// Setup.
	Entries      int // registration entries the server counts
	AgentRecords int // attested agents the server counts
	SetupElapsed time.Duration
	LoadElapsed  time.Duration // all agents attested and holding all their SVIDs

	// Rotation.
	OldBefore     int // SVIDs of the old authority counted before the taint
	Replaced      int // the largest count seen while waiting
	Polls         int
	ServerElapsed time.Duration // until the server counted none of the old authority
	AgentsElapsed time.Duration // until the last agent reported holding only new SVIDs
	// AgentsP50 and AgentsP90: until half and nine tenths of the agents had.
	AgentsP50, AgentsP90 time.Duration
	Converged            int // agents that reported
	// Progress is the server's count of the old authority's SVIDs, each
	// time it changed while waiting.
	Progress []taint.Progress
	// PollMax is the longest CountSVIDsByAuthority call while waiting (it
	// writes the server's queued SVID records before counting).
	PollMax  time.Duration
	CPU      time.Duration // process CPU time from the taint until both were done
	OldAfter int           // SVIDs of the old authority counted afterwards
	NewAfter int           // SVIDs of the new authority counted afterwards

	// What the agents hold afterwards, verified against the new authority
	// alone.
	Held          int // workload SVIDs held
	HeldVerified  int // of those, chains verifying to the new authority and naming the entry's ID
	Missing       int // registered entries an agent holds no SVID for
	OwnVerified   int // agent SVIDs verifying to the new authority
	AgentRenewals int
	Notifications map[string]int

	// KEX counts the agent listener's TLS handshakes by key exchange group.
	KEX map[string]int

	// Memory of this process (server, embedded etcd and simulated agents).
	MemBaseline Memory // server started, nothing loaded
	MemLoaded   Memory // every agent connected and holding its SVIDs
	MemServer   Memory // after the rotation with every agent disconnected
	Etcd        EtcdStats

	// CeilingBefore is measured just before the taint, CeilingAfter just
	// after the rotation (agents connected and idle both times), so that
	// the ceiling sees about the same competition for the cores as the
	// rotation.
	CeilingBefore, CeilingAfter Ceiling
}

// Ceiling combines the two ceiling measurements.
func (r Result) Ceiling() Ceiling {
	b, a := r.CeilingBefore, r.CeilingAfter
	return Ceiling{Workers: max(b.Workers, a.Workers), Certificates: b.Certificates + a.Certificates, Elapsed: b.Elapsed + a.Elapsed, CPU: b.CPU + a.CPU}
}

// SVIDs is the number of X.509-SVIDs rotated: every workload SVID and every
// agent's own SVID.
func (r Result) SVIDs() int { return r.Agents*r.EntriesPerAgent + r.Agents }

// ServerRate is the SVIDs replaced per second until the server counted none
// of the old authority.
func (r Result) ServerRate() float64 { return rate(r.SVIDs(), r.ServerElapsed) }

// AgentsRate is the SVIDs replaced per second until every agent held only
// new ones.
func (r Result) AgentsRate() float64 { return rate(r.SVIDs(), r.AgentsElapsed) }

// CeilingRatio is ServerRate divided by the raw signing ceiling.
func (r Result) CeilingRatio() float64 {
	if c := r.Ceiling().PerSecond(); c > 0 {
		return r.ServerRate() / c
	}
	return 0
}

// CPUPerSVID is the process's CPU time per rotated SVID: the server's
// work and the simulated agents' (keys, CSRs, TLS) together.
func (r Result) CPUPerSVID() time.Duration {
	if r.SVIDs() == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.SVIDs())
}

// CPUBusy is the share of the machine's cores the process used during the
// rotation.
func (r Result) CPUBusy() float64 {
	d := max(r.ServerElapsed, r.AgentsElapsed)
	if d <= 0 || r.Cores == 0 {
		return 0
	}
	return r.CPU.Seconds() / (d.Seconds() * float64(r.Cores))
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
