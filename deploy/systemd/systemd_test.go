package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestVerify: `systemd-analyze verify` loads every unit (templates and an
// instance of each, and the agent with the TPM drop-in) with the real
// signet binary in ExecStart and prints nothing: no unknown key, no bad
// value, no missing executable. A misspelt key is reported (so the check
// can fail).
func TestVerify(t *testing.T) {
	analyze := lookTool(t, "systemd-analyze")
	exe := signetBinary(t)
	verify := func(p string) string {
		t.Helper()
		out, err := exec.Command(analyze, "verify", "--man=no", p).CombinedOutput()
		if err != nil {
			return strings.TrimSpace(string(out)) + " (" + err.Error() + ")"
		}
		return strings.TrimSpace(string(out))
	}
	for _, u := range units {
		loads := []string{u.instance}
		if u.instance != "" {
			loads = append(loads, "") // the template file itself
		}
		for _, inst := range loads {
			p := installed(t, u.file, inst, exe, u.dropIns...)
			if out := verify(p); out != "" {
				t.Errorf("systemd-analyze verify %s (drop-ins %v): %s", filepath.Base(p), u.dropIns, out)
			}
		}
	}
	bad := installed(t, "signet-server.service", "", exe)
	data, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(string(data), "ProtectSystem=", "ProtectSytem=", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := verify(bad); !strings.Contains(out, "Unknown key") || !strings.Contains(out, "ProtectSytem") {
		t.Errorf("a misspelt key passed verify: %q", out)
	}
}

var exposureLine = regexp.MustCompile(`Overall exposure level for (\S+): (\d+\.\d+) (\S+)`)

// exposure runs `systemd-analyze security --offline=true` on p and
// returns the overall exposure level and its rating.
func exposure(t *testing.T, analyze, p string) (float64, string) {
	t.Helper()
	// security exits non-zero only over --threshold (default 100).
	out, err := exec.Command(analyze, "security", "--offline=true", "--no-pager", p).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security %s: %v\n%s", p, err, out)
	}
	m := exposureLine.FindStringSubmatch(string(out))
	if m == nil || m[1] != filepath.Base(p) {
		t.Fatalf("systemd-analyze security %s: no overall exposure line for it in\n%s", p, out)
	}
	level, err := strconv.ParseFloat(m[2], 64)
	if err != nil {
		t.Fatal(err)
	}
	return level, m[3]
}

// TestSecurityExposure: `systemd-analyze security --offline=true` rates
// every unit at or under its threshold (0 is best, 10 worst; the server
// needs no capability, the agent CAP_SYS_PTRACE and, with the TPM
// drop-in, one device). A unit without hardening scores far above (so the
// threshold can fail).
func TestSecurityExposure(t *testing.T) {
	analyze := lookTool(t, "systemd-analyze")
	for _, u := range units {
		p := installed(t, u.file, u.instance, "/usr/local/bin/signet", u.dropIns...)
		level, rating := exposure(t, analyze, p)
		t.Logf("%s %v: exposure %.1f %s", filepath.Base(p), u.dropIns, level, rating)
		if level > u.maxExposure || rating != "OK" {
			t.Errorf("%s (drop-ins %v): exposure %.1f %s, want at most %.1f OK", filepath.Base(p), u.dropIns, level, rating, u.maxExposure)
		}
	}
	bare := filepath.Join(t.TempDir(), "bare.service")
	if err := os.WriteFile(bare, []byte("[Service]\nExecStart=/usr/local/bin/signet server run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if level, _ := exposure(t, analyze, bare); level <= 2.5 {
		t.Errorf("an unhardened unit scores %.1f, within the thresholds", level)
	}
}

// TestHardeningSettings: the settings the deployment promises are in
// every unit, with these values (the exposure score weighs them but does
// not require each one).
func TestHardeningSettings(t *testing.T) {
	common := map[string]string{
		"Type": "exec", "User": "signet", "Group": "signet", "UMask": "0077",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
		"ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "RestrictNamespaces": "yes",
		"RestrictSUIDSGID": "yes", "RestrictRealtime": "yes", "LockPersonality": "yes",
		"MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "DevicePolicy": "closed",
		"StateDirectoryMode": "0700",
	}
	perDaemon := map[string]map[string]string{
		"server": {"CapabilityBoundingSet": "", "AmbientCapabilities": "", "PrivateDevices": "yes", "PrivateUsers": "yes", "ProtectProc": "invisible"},
		"agent":  {"CapabilityBoundingSet": "CAP_SYS_PTRACE", "AmbientCapabilities": "CAP_SYS_PTRACE", "PrivateDevices": "yes", "RuntimeDirectoryMode": "0755"},
	}
	for _, u := range units {
		if len(u.dropIns) > 0 {
			continue
		}
		pu := parseUnit(t, u.file)
		for _, want := range []map[string]string{common, perDaemon[u.daemon]} {
			for k, v := range want {
				if _, set := pu["Service"][k]; !set || pu.last(k) != v {
					t.Errorf("%s: %s=%q, want %q", u.file, k, pu.last(k), v)
				}
			}
		}
		if f := pu["Service"]["SystemCallFilter"]; len(f) != 2 || f[0] != "@system-service" || f[1] != "~@privileged @resources" {
			t.Errorf("%s: SystemCallFilter %q, want @system-service then ~@privileged @resources", u.file, f)
		}
		if u.daemon == "agent" && pu.last("ProtectProc") != "" {
			t.Errorf("%s: ProtectProc=%s hides the workloads the agent attests", u.file, pu.last("ProtectProc"))
		}
	}
	tpm := parseUnit(t, "signet-agent.service", "signet-agent-tpm.conf")
	if tpm.last("PrivateDevices") != "no" || tpm.last("DevicePolicy") != "closed" || !slicesEqual(tpm["Service"]["DeviceAllow"], []string{"/dev/tpmrm0 rw"}) {
		t.Errorf("TPM drop-in: PrivateDevices=%s DevicePolicy=%s DeviceAllow=%q, want no, closed, only /dev/tpmrm0 rw",
			tpm.last("PrivateDevices"), tpm.last("DevicePolicy"), tpm["Service"]["DeviceAllow"])
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

// TestSysusers: systemd-sysusers, run on an empty root with the file
// installed as /usr/lib/sysusers.d/signet.conf, creates the system user
// and group the units run as, with no login shell.
func TestSysusers(t *testing.T) {
	sysusers := lookTool(t, "systemd-sysusers")
	root := t.TempDir()
	conf := filepath.Join(root, "usr", "lib", "sysusers.d", "signet.conf")
	data, err := os.ReadFile("signet-sysusers.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sysusers, "--root="+root).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc", "group"))
	if err != nil {
		t.Fatal(err)
	}
	pw := strings.Split(strings.TrimSpace(string(passwd)), ":")
	if len(pw) != 7 || pw[0] != "signet" || pw[6] != "/usr/sbin/nologin" || pw[2] != pw[3] {
		t.Fatalf("passwd %q, want user signet with its own group and no login shell", passwd)
	}
	if uid, err := strconv.Atoi(pw[2]); err != nil || uid <= 0 || uid >= 1000 {
		t.Errorf("uid %s, want a system uid (1-999)", pw[2])
	}
	if !strings.HasPrefix(string(group), "signet:x:"+pw[3]+":") {
		t.Errorf("group %q, want signet with gid %s", group, pw[3])
	}
	for _, u := range units {
		if pu := parseUnit(t, u.file); pu.last("User") != pw[0] || pu.last("Group") != pw[0] {
			t.Errorf("%s runs as %s:%s, not the sysusers user", u.file, pu.last("User"), pu.last("Group"))
		}
	}
}
