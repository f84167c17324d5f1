package secrets_test

import (
	"context"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/etcdserver/etcdtest"
)

// testEtcd is one embedded etcd shared by the package's tests; each test
// uses its own trust domain, hence its own key prefix.
var testEtcd *etcdserver.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &testEtcd) }

var tds etcdtest.TrustDomains

func testTD(tb testing.TB) spiffeid.TrustDomain { return tds.Next(tb) }

func testCtx(tb testing.TB) context.Context { return etcdtest.Context(tb) }
