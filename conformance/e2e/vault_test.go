package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/cli"
	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/signet-id/signet/secrets/vaulttest"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestVaultSecretsThroughServerAndAgent runs the whole secrets path with a
// real Vault dev server: a policy created with the CLI, a workload fetching
// a KV v2 secret through its agent's socket with `signet fetch secret`, a
// denied name, and no secret value in any log.
func TestVaultSecretsThroughServerAndAgent(t *testing.T) {
	vs := vaulttest.Start(t)
	dir := shortDir(t)
	tokenFile := filepath.Join(dir, "vault-token")
	if err := os.WriteFile(tokenFile, []byte(vaulttest.RootToken), 0o600); err != nil {
		t.Fatal(err)
	}
	const value = "s3cr3t-value-9f81"
	vs.PutKV(t, "secret", "app/db", map[string]any{"password": value})

	var logs syncWriter
	srv := startServerWith(t, dir, func(o *serverOptions) {
		o.vault = &server.VaultConfig{Address: vs.Addr, Auth: "token", TokenFile: tokenFile}
		o.logTo = &logs
	})
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/app")
	srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(t, srv, dir, token)
	waitFor(t, 30*time.Second, "agent attested", func() bool { return !ag.AgentID().IsZero() })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := cli.Main(ctx, args, &out, &errb)
		return out.String(), errb.String(), code
	}
	if out, errs, code := run("secret", "policy", "create", "--socket-path", srv.AdminSocket(),
		"--id", "db", "--spiffe-id", me.String(), "--path", "secret/app/db", "--field", "password"); code != 0 {
		t.Fatalf("policy create: %s %s", out, errs)
	}
	var got string
	waitFor(t, 30*time.Second, "the secret through the agent", func() bool {
		out, _, code := run("fetch", "secret", "db", "--socket-path", ag.socket, "--timeout", "5s")
		got = out
		return code == 0
	})
	if !strings.Contains(got, value) {
		t.Fatalf("fetched %q, want the Vault value", got)
	}
	// A name no policy grants: refused, and nothing leaks.
	out, errs, code := run("fetch", "secret", "other", "--socket-path", ag.socket, "--timeout", "5s")
	if code == 0 || !strings.Contains(errs, "PermissionDenied") || strings.Contains(out+errs, value) {
		t.Fatalf("ungranted secret: exit %d, %q %q", code, out, errs)
	}
	if strings.Contains(logs.String(), value) {
		t.Fatal("a secret value appears in the server log")
	}
}

// TestVaultPKIUpstreamAuthority has Vault PKI sign the trust domain's
// intermediate CA: the bundle carries Vault's root, SVIDs carry the
// intermediate, and unmodified go-spiffe verifies the chain.
func TestVaultPKIUpstreamAuthority(t *testing.T) {
	vs := vaulttest.Start(t)
	vc := vs.Client(t)
	if err := vc.Sys().Mount("pki", &vault.MountInput{Type: "pki", Config: vault.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
		t.Fatal(err)
	}
	root := vs.Write(t, "pki/root/generate/internal", map[string]any{"common_name": "Vault Root", "ttl": "87600h", "key_type": "ec", "key_bits": 256})
	rootPEM, _ := root.Data["certificate"].(string)
	dir := shortDir(t)
	tokenFile := filepath.Join(dir, "vault-token")
	if err := os.WriteFile(tokenFile, []byte(vaulttest.RootToken), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServerWith(t, dir, func(o *serverOptions) {
		o.vault = &server.VaultConfig{Address: vs.Addr, Auth: "token", TokenFile: tokenFile, UpstreamPKIMount: "pki"}
	})
	blk, _ := pem.Decode([]byte(rootPEM))
	if blk == nil {
		t.Fatal("Vault returned no root certificate")
	}
	vaultRoot, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := srv.CA().Bundle().X509Authorities()
	if len(roots) != 1 || !roots[0].Equal(vaultRoot) {
		t.Fatalf("bundle holds %d authorities; want exactly Vault's root", len(roots))
	}
	// Under Vault PKI, as under SPIRE's UpstreamAuthority, the local X.509
	// authority is not tainted itself, and Vault's root signs the active
	// one, so it cannot be tainted either.
	if !srv.CA().IsUpstreamAuthority() {
		t.Fatal("the CA does not report Vault PKI as its upstream authority")
	}
	if _, err := srv.CA().TaintX509Upstream(ca.X509AuthorityID(vaultRoot)); !errors.Is(err, ca.ErrSignsActive) {
		t.Fatalf("tainting the upstream authority of the active CA: %v, want ErrSignsActive", err)
	}
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/upstream")
	srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(t, srv, dir, token)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+ag.socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if len(svid.Certificates) != 2 {
		t.Fatalf("chain has %d certificates, want leaf + Signet's Vault-signed intermediate", len(svid.Certificates))
	}
	if err := svidspec.CheckX509SVID(svid.Certificates); err != nil {
		t.Fatal(err)
	}
	b, _ := src.GetX509BundleForTrustDomain(td)
	if _, _, err := x509svid.Verify(svid.Certificates, b); err != nil {
		t.Fatalf("go-spiffe: %v", err)
	}
	if err := svid.Certificates[1].CheckSignatureFrom(roots[0]); err != nil {
		t.Fatalf("intermediate not signed by Vault's root: %v", err)
	}
}
