package config_test

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

// TestFederationBlock reads SPIRE's federation block as its documentation
// writes it (with serving_cert_file instead of acme).
func TestFederationBlock(t *testing.T) {
	f, err := config.LoadServer(write(t, `
server {
  trust_domain = "example.org"
  federation {
    bundle_endpoint {
      address = "0.0.0.0"
      port = 8443
      refresh_hint = "10m"
      profile "https_web" {
        serving_cert_file {
          cert_file_path = "/etc/signet/be.crt"
          key_file_path = "/etc/signet/be.key"
          file_sync_interval = "30m"
        }
      }
    }
    federates_with "domain1.test" {
      bundle_endpoint_url = "https://1.2.3.4:8443"
      bundle_endpoint_profile "https_web" {}
    }
    federates_with "domain2.test" {
      bundle_endpoint_url = "https://5.6.7.8:8443"
      bundle_endpoint_profile "https_spiffe" {
        endpoint_spiffe_id = "spiffe://domain2.test/beserver"
      }
    }
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	fed := f.Server.Federation
	if fed == nil || fed.BundleEndpoint == nil || fed.BundleEndpoint.Port != 8443 || fed.BundleEndpoint.Profile.Name != "https_web" ||
		fed.BundleEndpoint.Profile.ServingCertFile.CertFilePath != "/etc/signet/be.crt" {
		t.Fatalf("bundle_endpoint %+v", fed)
	}
	if len(fed.FederatesWith) != 2 || fed.FederatesWith[1].TrustDomain != "domain2.test" ||
		fed.FederatesWith[1].BundleEndpointProfile.EndpointSPIFFEID != "spiffe://domain2.test/beserver" {
		t.Fatalf("federates_with %+v", fed.FederatesWith)
	}
}

// TestFederationRefusals: every malformed federation block is refused
// with what is wrong and what to write instead.
func TestFederationRefusals(t *testing.T) {
	tests := []struct{ body, want string }{
		{`bundle_endpoint {
  profile "https_web" {
    acme {
      domain_name = "example.org"
      email = "a@example.org"
    }
  }
}`, "acme is not supported by Signet"},
		{`bundle_endpoint {
  profile "https_web" {}
}`, `profile "https_web" needs serving_cert_file`},
		{`bundle_endpoint {
  profile "https_mtls" {}
}`, `unknown profile "https_mtls"`},
		{`bundle_endpoint {
  port = 70000
}`, "port 70000 is not a TCP port"},
		{`bundle_endpoint {
  address = "127.0.0.1:8443"
}`, "put the port in port"},
		{`bundle_endpoint {
  refresh_hint = "soon"
}`, "refresh_hint: invalid duration"},
		{`federates_with "Bad Name" {
  bundle_endpoint_url = "https://x"
  bundle_endpoint_profile "https_web" {}
}`, `federates_with "Bad Name": invalid trust domain`},
		{`federates_with "example.org" {
  bundle_endpoint_url = "https://x"
  bundle_endpoint_profile "https_web" {}
}`, "own trust domain"},
		{`federates_with "a.test" {
  bundle_endpoint_url = "http://x"
  bundle_endpoint_profile "https_web" {}
}`, "must be an https URL"},
		{`federates_with "a.test" {
  bundle_endpoint_url = "https://x"
}`, "bundle_endpoint_profile"},
		{`federates_with "a.test" {
  bundle_endpoint_url = "https://x"
  bundle_endpoint_profile "https_spiffe" {}
}`, "https_spiffe needs endpoint_spiffe_id"},
		{`federates_with "a.test" {
  bundle_endpoint_url = "https://x"
  bundle_endpoint_profile "https_web" {
    endpoint_spiffe_id = "spiffe://a.test/x"
  }
}`, "endpoint_spiffe_id belongs to the https_spiffe profile"},
		{`federates_with "a.test" {
  bundle_endpoint_url = "https://x"
  bundle_endpoint_profile "https_web" {}
}
federates_with "a.test" {
  bundle_endpoint_url = "https://y"
  bundle_endpoint_profile "https_web" {}
}`, "appears twice"},
		{`federates_with "a.test" {
  bundle_endpoint_url = "https://x"
  bundle_endpoint_profile "web" {}
}`, `unknown bundle_endpoint_profile "web"`},
	}
	for _, tt := range tests {
		_, err := config.LoadServer(write(t, "server {\ntrust_domain = \"example.org\"\nfederation {\n"+tt.body+"\n}\n}\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s\n=> %v, want %q", tt.body, err, tt.want)
		}
	}
}
