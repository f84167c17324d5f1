package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/awsiid/awsiidtest"
	"github.com/signet-id/signet/attest/azuremsi/azuremsitest"
	"github.com/signet-id/signet/attest/gcpiit/gcpiittest"
	"github.com/signet-id/signet/server"
)

// TestAgentCloudAttestation runs a real `signet agent run` process with
// each cloud NodeAttestor plugin block against a server built from a
// config file with the matching block, the agent's metadata service and
// the server's trust anchor being loopback stand-ins: the agent attests
// under SPIRE's agent ID for the method.
func TestAgentCloudAttestation(t *testing.T) {
	s2048, s1024 := awsiidtest.NewSigner(t, 2048), awsiidtest.NewSigner(t, 1024)
	imds := awsiidtest.NewIMDS(t, awsiidtest.MarshalDocument(t, awsiidtest.Document("123456789012", "us-test-1", "i-0cli")), s2048, s1024)
	g := gcpiittest.NewGoogle(t, "k1")
	gmd := gcpiittest.NewMetadata(t, g, gcpiittest.Instance("signet-test", "europe-west1-b", "node-1", "4242"), time.Now)
	is := azuremsitest.NewIssuer(t, "k1")
	amd := azuremsitest.NewIMDS(t, is, azuremsitest.Identity{TenantID: "t1", PrincipalID: "p1"}, time.Now)
	tests := []struct {
		typ, serverData, agentData, agentID string
	}{
		{"aws_iid", `accountid_allow_list = ["123456789012"]
  rsa2048_certificates = { "us-test-1" = "` + s2048.Path + `" }`, `ec2_metadata_endpoint = "` + imds.URL + `"`,
			"spiffe://example.org/spire/agent/aws_iid/123456789012/us-test-1/i-0cli"},
		{"gcp_iit", `projectid_allow_list = ["signet-test"]
  google_certs_url = "` + g.CertsURL + `"`, `identity_token_host = "` + gmd + `"`,
			"spiffe://example.org/spire/agent/gcp_iit/signet-test/4242"},
		{"azure_msi", `tenants = { "t1" = {} }
  oidc_issuer = "` + is.URL + `"`, `metadata_endpoint = "` + amd + `"`,
			"spiffe://example.org/spire/agent/azure_msi/t1/p1"},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "sgcl") // short: Unix socket paths are limited
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			sp := filepath.Join(dir, "server.hcl")
			writeFile(t, sp, "server { trust_domain = \"example.org\" }\nplugins {\nNodeAttestor \""+tt.typ+"\" {\nplugin_data {\n  "+tt.serverData+"\n}\n}\n}\n")
			f := serverFlags{configPath: sp, dataDir: t.TempDir()}
			built, _, err := f.build(nil)
			if err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "api.sock")
			srv, err := server.New(server.Config{TrustDomain: built.TrustDomain, DataDir: filepath.Join(dir, "srv"), BindAddress: "127.0.0.1:0",
				AdminSocket: sock, NodeAttestors: built.NodeAttestors})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			defer func() { cancel(); <-done }()
			select {
			case <-srv.Ready():
			case err := <-done:
				t.Fatalf("server did not start: %v", err)
			}
			bundle, _ := cli(t, sock, 0, "bundle", "show")
			bundlePath := filepath.Join(dir, "bundle.pem")
			writeFile(t, bundlePath, bundle)
			ap := filepath.Join(dir, "agent.hcl")
			writeFile(t, ap, "agent {\n  trust_domain = \"example.org\"\n}\nplugins {\nNodeAttestor \""+tt.typ+"\" {\nplugin_data {\n  "+tt.agentData+"\n}\n}\n}\n")
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAgentMain$", "--", "agent", "run", "--config", ap,
				"--trust-domain", "example.org", "--server-address", srv.AgentAddr().String(),
				"--trust-bundle", bundlePath, "--data-dir", filepath.Join(dir, "data"), "--socket-path", filepath.Join(dir, "wl.sock"))
			cmd.Env = append(os.Environ(), "SIGNET_TEST_AGENT_MAIN=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{}) // closed when the process has exited
			var exitErr error
			go func() { exitErr = cmd.Wait(); close(exited) }()
			defer func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			}()
			deadline := time.Now().Add(30 * time.Second)
			for {
				out, _ := cli(t, sock, 0, "agent", "list")
				if strings.Contains(out, tt.agentID) {
					if !strings.Contains(out, tt.typ) {
						t.Fatalf("agent list does not show the attestation type %s:\n%s", tt.typ, out)
					}
					return
				}
				select {
				case <-exited:
					t.Fatalf("agent exited before attesting: %v\nstderr: %s", exitErr, stderr.String())
				case <-time.After(100 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("agent did not attest within 30s\nstderr: %s", stderr.String())
				}
			}
		})
	}
}
