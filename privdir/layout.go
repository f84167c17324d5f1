package privdir

import (
	"path/filepath"
	"strconv"
)

// Layout is where the daemons keep their state and sockets by default.
type Layout struct {
	ServerDataDir string
	AgentDataDir  string
	// WorkloadSocket is outside the agent's 0700 data directory, in a
	// 0755 public directory, so that workloads of every uid can connect.
	WorkloadSocket string
}

// AdminSocket returns the admin socket path inside a server data directory.
func AdminSocket(serverDataDir string) string {
	return filepath.Join(serverDataDir, "private", "api.sock")
}

// DefaultLayout returns the default layout for the user uid, reading the
// environment through getenv (os.Getenv). Root gets the system locations
// SPIRE and Vault operators expect (/var/lib/signet, /run/signet); other
// users get $XDG_DATA_HOME (or ~/.local/share) for state and
// $XDG_RUNTIME_DIR for the Workload API socket. Nothing defaults to a
// world-writable directory such as /tmp.
func DefaultLayout(uid int, getenv func(string) string) Layout {
	if uid == 0 {
		return Layout{
			ServerDataDir:  "/var/lib/signet/server",
			AgentDataDir:   "/var/lib/signet/agent",
			WorkloadSocket: "/run/signet/agent/public/api.sock",
		}
	}
	base := ""
	switch {
	case getenv("XDG_DATA_HOME") != "":
		base = filepath.Join(getenv("XDG_DATA_HOME"), "signet")
	case getenv("HOME") != "":
		base = filepath.Join(getenv("HOME"), ".local", "share", "signet")
	default:
		// Last resort; the directory checks refuse it if someone else
		// created it first.
		base = filepath.Join("/tmp", "signet-"+strconv.Itoa(uid))
	}
	l := Layout{
		ServerDataDir:  filepath.Join(base, "server"),
		AgentDataDir:   filepath.Join(base, "agent"),
		WorkloadSocket: filepath.Join(base, "agent-public", "api.sock"),
	}
	if rt := getenv("XDG_RUNTIME_DIR"); rt != "" {
		l.WorkloadSocket = filepath.Join(rt, "signet", "agent", "public", "api.sock")
	}
	return l
}
