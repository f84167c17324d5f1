// Package kubetest runs a real kube-apiserver for tests: the binary that
// scripts/install-kube-apiserver.sh builds (conformance/tools/kubeapiserver),
// against an embedded etcd member (server/etcdserver), on free loopback
// ports, with a CA, serving and admin certificates and a service-account
// signing key generated in Go. Start returns the running cluster with an
// admin client; objects.go creates namespaces, service accounts, nodes,
// pods and pod-bound projected tokens in it.
//
// The binary is $SIGNET_KUBE_APISERVER_BIN if set, else the cached build
// that `scripts/install-kube-apiserver.sh --cached` reports. Without one,
// the test fails when CI=true and builds it otherwise (a few minutes).
package kubetest

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/tooltest"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/signet-id/signet/server/etcdserver"
)

// Defaults of the cluster's service-account tokens.
const (
	// DefaultIssuer is --service-account-issuer (and the iss claim).
	DefaultIssuer = "https://kubernetes.default.svc.cluster.local"
	// APIAudience is --api-audiences: the audience of tokens that
	// authenticate to the API server itself.
	APIAudience = DefaultIssuer
)

// Cluster is a running kube-apiserver with its etcd.
type Cluster struct {
	// URL is the API server's https://127.0.0.1:PORT.
	URL string
	// CAPEM is the CA of its serving (and client) certificates, and
	// CAFile the same in a file.
	CAPEM  []byte
	CAFile string
	// Config and Client authenticate as an admin (system:masters).
	Config *rest.Config
	Client *kubernetes.Clientset
	// KubeconfigFile is an admin kubeconfig for the cluster.
	KubeconfigFile string
	// Issuer is the iss of its service-account tokens.
	Issuer string

	saKey *rsa.PrivateKey
	out   *tooltest.Buffer
	cmd   *exec.Cmd
	exit  chan struct{}
}

// Options adjusts Start.
type Options struct {
	// Issuer is --service-account-issuer; default DefaultIssuer.
	Issuer string
}

// Start runs a kube-apiserver and its etcd for the test and stops both
// when it ends.
func Start(t testing.TB) *Cluster { return StartWith(t, Options{}) }

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin := Binary(t)
	if o.Issuer == "" {
		o.Issuer = DefaultIssuer
	}
	dir := shortTempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	members, err := etcdserver.StartCluster(ctx, filepath.Join(dir, "etcd"), 1)
	if err != nil {
		t.Fatalf("kubetest: start etcd: %v", err)
	}
	etcd := members[0]
	t.Cleanup(func() { _ = etcd.Close() })

	p, err := newPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{CAPEM: p.caPEM, CAFile: p.caFile, Issuer: o.Issuer, saKey: p.saKey}
	t.Cleanup(c.stop)
	// The port is picked free and then released; another process may
	// take it before kube-apiserver binds it, so a bind failure retries.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		c.URL = "https://127.0.0.1:" + strconv.Itoa(port)
		args := apiserverArgs(dir, port, p, o.Issuer, etcd)
		err = c.start(bin, args)
		if err == nil {
			break
		}
		if attempt < 2 && strings.Contains(c.out.String(), "address already in use") {
			continue
		}
		t.Fatal(err)
	}

	c.Config = &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   p.caPEM,
			CertData: p.adminCert,
			KeyData:  p.adminKey,
		},
		QPS:   -1, // no client-side rate limit
		Burst: -1,
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatalf("kubetest: client: %v", err)
	}
	c.KubeconfigFile = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.KubeconfigFile, c.URL, p.caPEM, p.adminCert, p.adminKey, ""); err != nil {
		t.Fatal(err)
	}
	return c
}

// apiserverArgs are the flags of a loopback-only kube-apiserver without
// controllers: the endpoint reconciler is off (it refuses a loopback
// advertise address), there is no scheduler or kubelet.
func apiserverArgs(dir string, port int, p *pki, issuer string, etcd *etcdserver.Server) []string {
	et := etcd.TLS()
	return []string{
		"--etcd-servers=" + strings.Join(etcd.Endpoints(), ","),
		"--etcd-cafile=" + et.CAFile,
		"--etcd-certfile=" + et.CertFile,
		"--etcd-keyfile=" + et.KeyFile,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + p.serverCert,
		"--tls-private-key-file=" + p.serverKey,
		"--client-ca-file=" + p.caFile,
		"--service-account-issuer=" + issuer,
		"--service-account-key-file=" + p.saPubFile,
		"--service-account-signing-key-file=" + p.saKeyFile,
		"--api-audiences=" + APIAudience,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	}
}

// start runs the binary and waits until /readyz answers 200.
func (c *Cluster) start(bin string, args []string) error {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	c.out = &tooltest.Buffer{}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kubetest: start %s: %w", bin, err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exit) }()
	c.cmd, c.exit = cmd, exit

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAPEM)
	hc := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	defer hc.CloseIdleConnections()
	for range 900 { // up to ~3 minutes on a loaded machine
		select {
		case <-exit:
			c.cmd = nil
			return fmt.Errorf("kubetest: kube-apiserver exited during startup:\n%s", tail(c.out.String()))
		default:
		}
		resp, err := hc.Get(c.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.stop()
	return fmt.Errorf("kubetest: kube-apiserver not ready on %s:\n%s", c.URL, tail(c.out.String()))
}

// stop ends kube-apiserver (SIGTERM, then SIGKILL to its group).
func (c *Cluster) stop() {
	cmd, exit := c.cmd, c.exit
	c.cmd = nil
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exit:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exit
	}
}

// Log returns kube-apiserver's output so far.
func (c *Cluster) Log() string {
	if c.out == nil {
		return ""
	}
	return c.out.String()
}

// Binary returns the kube-apiserver binary: $SIGNET_KUBE_APISERVER_BIN,
// else scripts/install-kube-apiserver.sh --cached; when neither has one it
// fails t under CI=true and builds it otherwise.
func Binary(t testing.TB) string {
	t.Helper()
	return tooltest.Tool{Name: "kube-apiserver", Env: "SIGNET_KUBE_APISERVER_BIN", Script: "install-kube-apiserver.sh", Build: true}.Path(t)
}

// shortTempDir is a private temporary directory with a short path (the
// etcd member's files live in it).
func shortTempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("kubetest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail is the end of a long log, for error messages.
func tail(s string) string {
	const max = 8 << 10
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}
