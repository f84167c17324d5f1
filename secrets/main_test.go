package secrets_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/server/etcdserver"
)

// testEtcd is one embedded etcd shared by the package's tests; each test
// uses its own trust domain, hence its own key prefix.
var testEtcd *etcdserver.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "signet-secrets-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	testEtcd, err = etcdserver.Start(ctx, etcdserver.Config{Dir: dir})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testEtcd.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

var tdCounter atomic.Int64

func testTD(tb testing.TB) spiffeid.TrustDomain {
	name := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(tb.Name(), "-"))
	return spiffeid.RequireTrustDomainFromString(fmt.Sprintf("%s-%d.test", strings.Trim(name, "-"), tdCounter.Add(1)))
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}
