// Package etcdtest shares one embedded etcd among the tests of a package,
// hands each test its own trust domain (so its own key prefix), and runs
// the uid 65534 attacker of the etcd attack tests against every listener
// a process holds.
package etcdtest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/server/etcdserver"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Main starts an embedded etcd, runs the tests with it, stops it and exits.
// Call it from TestMain; *srv is set before the tests run.
func Main(m *testing.M, srv **etcdserver.Server) {
	dir, err := os.MkdirTemp("", "signet-etcdtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	*srv, err = etcdserver.Start(ctx, etcdserver.Config{Dir: dir})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	(*srv).Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

var nonAlnum = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// TrustDomains hands out distinct trust domains named after tests.
type TrustDomains struct{ n atomic.Int64 }

// Next returns a trust domain unique to this call, named after tb.
func (d *TrustDomains) Next(tb testing.TB) spiffeid.TrustDomain {
	name := strings.Trim(strings.ToLower(nonAlnum.ReplaceAllString(tb.Name(), "-")), "-")
	return spiffeid.RequireTrustDomainFromString(fmt.Sprintf("%s-%d.test", name, d.n.Add(1)))
}

// Context returns a context that ends with the test (or after 2 minutes).
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}
