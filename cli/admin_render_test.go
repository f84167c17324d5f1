package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

func sampleEntries() []*types.Entry {
	return []*types.Entry{
		{
			Id:       "b-entry",
			SpiffeId: sid("example.org", "/web"),
			ParentId: sid("example.org", "/spire/agent/join_token/abc"),
			Selectors: []*types.Selector{
				{Type: "unix", Value: "uid:1000"},
				{Type: "unix", Value: "gid:1000"},
			},
			X509SvidTtl:    3600,
			FederatesWith:  []string{"other.org"},
			DnsNames:       []string{"web.example.org"},
			Admin:          true,
			Downstream:     true,
			ExpiresAt:      1900000000,
			Hint:           "external",
			RevisionNumber: 3,
			CreatedAt:      1700000000,
		},
		{
			Id:        "a-entry",
			SpiffeId:  sid("example.org", "/db"),
			ParentId:  sid("example.org", "/spire/server"),
			Selectors: []*types.Selector{{Type: "k8s_psat", Value: "cluster:prod"}},
		},
	}
}

func TestRenderEntries(t *testing.T) {
	entries := sampleEntries()
	sortEntries(entries)
	var text, js bytes.Buffer
	printEntries(&text, entries)
	golden(t, "entry_show.txt", text.Bytes())
	if err := writeProtoJSON(&js, &entryv1.ListEntriesResponse{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	golden(t, "entry_show.json", js.Bytes())

	var empty bytes.Buffer
	printEntries(&empty, nil)
	if got := empty.String(); got != "Found 0 entries\n" {
		t.Errorf("empty list: %q", got)
	}
}

func TestRenderEntryResults(t *testing.T) {
	entries := sampleEntries()
	resp := &entryv1.BatchCreateEntryResponse{Results: []*entryv1.BatchCreateEntryResponse_Result{
		{Status: &types.Status{Code: int32(codes.OK), Message: "OK"}, Entry: entries[1]},
		{Status: &types.Status{Code: int32(codes.AlreadyExists), Message: "similar entry already exists"}, Entry: entries[0]},
	}}
	for _, format := range []outputFormat{outputText, outputJSON} {
		var out, errOut bytes.Buffer
		err := printEntryResults(&out, &errOut, format, "create", resp, resp.Results, map[int]string{1: "existing-id"})
		if !errors.Is(err, errBatchFailed) || !strings.Contains(err.Error(), "failed to create 1 of 2 entries") {
			t.Errorf("%s: error %v", format, err)
		}
		golden(t, "entry_create_partial."+string(format)+".stdout", out.Bytes())
		golden(t, "entry_create_partial."+string(format)+".stderr", errOut.Bytes())
	}

	ok := &entryv1.BatchUpdateEntryResponse{Results: []*entryv1.BatchUpdateEntryResponse_Result{
		{Status: &types.Status{Code: int32(codes.OK)}, Entry: entries[1]},
	}}
	var out, errOut bytes.Buffer
	if err := printEntryResults(&out, &errOut, outputText, "update", ok, ok.Results, nil); err != nil {
		t.Fatal(err)
	}
	if errOut.Len() != 0 || !strings.HasPrefix(out.String(), "Entry ID         : a-entry\n") {
		t.Errorf("update output: %q / %q", out.String(), errOut.String())
	}
}

func TestFillFailedEntries(t *testing.T) {
	req := sampleEntries()
	results := []*entryv1.BatchCreateEntryResponse_Result{
		{Status: &types.Status{Code: int32(codes.OK)}, Entry: &types.Entry{Id: "new"}},
		{Status: &types.Status{Code: int32(codes.AlreadyExists), Message: "similar entry already exists"}, Entry: &types.Entry{Id: "old"}},
		{Status: &types.Status{Code: int32(codes.InvalidArgument), Message: "bad"}},
	}
	req = append(req, &types.Entry{Id: "third"})
	existing := fillFailedEntries(req, results)
	if results[0].Entry.Id != "new" || results[1].Entry != req[1] || results[2].Entry != req[2] {
		t.Errorf("entries: %v", results)
	}
	if len(existing) != 1 || existing[1] != "old" {
		t.Errorf("existing: %v", existing)
	}
}

func TestRenderDeleteResults(t *testing.T) {
	resp := &entryv1.BatchDeleteEntryResponse{Results: []*entryv1.BatchDeleteEntryResponse_Result{
		{Status: &types.Status{Code: int32(codes.OK), Message: "OK"}, Id: "e1"},
		{Status: &types.Status{Code: int32(codes.NotFound), Message: "entry not found"}, Id: "e2"},
	}}
	var out, errOut bytes.Buffer
	err := printDeleteResults(&out, &errOut, outputText, resp)
	if !errors.Is(err, errBatchFailed) {
		t.Errorf("error %v", err)
	}
	if got, want := out.String(), "Deleted entry with ID: e1\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got, want := errOut.String(), "Failed to delete entry with ID e2 (NotFound: entry not found)\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}

func TestRenderAgents(t *testing.T) {
	agents := []*types.Agent{
		{
			Id:                   sid("example.org", "/spire/agent/join_token/abc"),
			AttestationType:      "join_token",
			X509SvidSerialNumber: "12345",
			X509SvidExpiresAt:    1900000000,
			Selectors:            []*types.Selector{{Type: "join_token", Value: "abc"}},
		},
		{
			Id:                sid("example.org", "/spire/agent/x509pop/def"),
			AttestationType:   "x509pop",
			X509SvidExpiresAt: 1900000000,
			Banned:            true,
			CanReattest:       true,
		},
	}
	var text, js bytes.Buffer
	printAgentList(&text, agents)
	golden(t, "agent_list.txt", text.Bytes())
	if err := writeProtoJSON(&js, &agentv1.ListAgentsResponse{Agents: agents}); err != nil {
		t.Fatal(err)
	}
	golden(t, "agent_list.json", js.Bytes())

	var empty, emptyJSON bytes.Buffer
	printAgentList(&empty, nil)
	if got := empty.String(); got != "No attested agents found\n" {
		t.Errorf("empty: %q", got)
	}
	if err := writeProtoJSON(&emptyJSON, &agentv1.ListAgentsResponse{}); err != nil {
		t.Fatal(err)
	}
	if got, want := emptyJSON.String(), `{"agents":[],"next_page_token":""}`+"\n"; got != want {
		t.Errorf("empty JSON %q, want %q", got, want)
	}
}

func sampleBundle(t *testing.T, f *fixture) *types.Bundle {
	return &types.Bundle{
		TrustDomain:     "example.org",
		X509Authorities: []*types.X509Certificate{{Asn1: f.ca.Raw}},
		JwtAuthorities: []*types.JWTKey{
			{KeyId: "kid-b", PublicKey: f.jwtPublicDER(t), ExpiresAt: 1900000000},
			{KeyId: "kid-a", PublicKey: f.jwtPublicDER(t), ExpiresAt: 1900000000},
			{KeyId: "mldsa", PublicKey: []byte("not a key Go can parse"), ExpiresAt: 1900000000},
		},
		RefreshHint:    300,
		SequenceNumber: 7,
	}
}

func TestRenderBundle(t *testing.T) {
	f := newFixture(t)
	b := sampleBundle(t, f)

	var pemOut bytes.Buffer
	if err := printBundle(&pemOut, nil, b, formatPEM); err != nil {
		t.Fatal(err)
	}
	golden(t, "bundle_show.pem", pemOut.Bytes())

	var doc, warn bytes.Buffer
	if err := printBundle(&doc, &warn, b, formatSPIFFE); err != nil {
		t.Fatal(err)
	}
	golden(t, "bundle_show.spiffe.json", doc.Bytes())
	if !strings.Contains(warn.String(), `leaving JWT authority "mldsa" out`) {
		t.Errorf("no warning for the unparsable JWT key: %q", warn.String())
	}

	// The document is a valid SPIFFE bundle with what was put in.
	sb, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), doc.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if seq, ok := sb.SequenceNumber(); !ok || seq != 7 {
		t.Errorf("sequence %d %t", seq, ok)
	}
	if h, ok := sb.RefreshHint(); !ok || h.Seconds() != 300 {
		t.Errorf("refresh hint %v %t", h, ok)
	}
	if len(sb.X509Authorities()) != 1 || !sb.X509Authorities()[0].Equal(f.ca) || len(sb.JWTAuthorities()) != 2 {
		t.Errorf("bundle content: %d X.509, %d JWT", len(sb.X509Authorities()), len(sb.JWTAuthorities()))
	}

	var js bytes.Buffer
	if err := writeProtoJSON(&js, b); err != nil {
		t.Fatal(err)
	}
	golden(t, "bundle_show.json", js.Bytes())
}

func TestBundleFromData(t *testing.T) {
	f := newFixture(t)
	td := spiffeid.RequireTrustDomainFromString("other.org")
	var pemData bytes.Buffer
	b := sampleBundle(t, f)
	b.JwtAuthorities = b.JwtAuthorities[:2]
	if err := printBundle(&pemData, nil, b, formatPEM); err != nil {
		t.Fatal(err)
	}
	got, err := bundleFromData(td, pemData.Bytes(), formatPEM)
	if err != nil {
		t.Fatal(err)
	}
	assertProto(t, got, &types.Bundle{TrustDomain: "other.org", X509Authorities: b.X509Authorities})

	var doc bytes.Buffer
	if err := printBundle(&doc, nil, b, formatSPIFFE); err != nil {
		t.Fatal(err)
	}
	got, err = bundleFromData(td, doc.Bytes(), formatSPIFFE)
	if err != nil {
		t.Fatal(err)
	}
	want := &types.Bundle{
		TrustDomain:     "other.org",
		X509Authorities: b.X509Authorities,
		JwtAuthorities: []*types.JWTKey{
			{KeyId: "kid-a", PublicKey: f.jwtPublicDER(t)},
			{KeyId: "kid-b", PublicKey: f.jwtPublicDER(t)},
		},
		RefreshHint:    300,
		SequenceNumber: 7,
	}
	assertProto(t, got, want)

	bad := []struct {
		data   string
		format bundleFormat
		want   string
	}{
		{"", formatPEM, "no certificates"},
		{"hello", formatPEM, "not PEM"},
		{"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", formatPEM, `"PRIVATE KEY" PEM block`},
		{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", formatPEM, "certificate #1"},
		{pemData.String(), formatSPIFFE, "use --format pem"},
		{doc.String(), formatPEM, "not PEM"},
	}
	for _, tt := range bad {
		if _, err := bundleFromData(td, []byte(tt.data), tt.format); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("bundleFromData(%.20q, %s): %v, want error containing %q", tt.data, tt.format, err, tt.want)
		}
	}
}

func TestRPCErrorText(t *testing.T) {
	c := &adminClient{socket: "/run/x.sock"}
	tests := []struct {
		err  error
		want string
	}{
		{statusErr(codes.NotFound, "entry not found"), `fetching entry "e": NotFound: entry not found`},
		{statusErr(codes.InvalidArgument, "invalid spiffe_id: bad"), `fetching entry "e": InvalidArgument: invalid spiffe_id: bad (fix the value named above and retry)`},
		{statusErr(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial unix /run/x.sock: connect: connection refused"`),
			"cannot reach the Signet server admin socket at /run/x.sock: connection refused (is `signet server run` running? use --socket-path)"},
		{statusErr(codes.PermissionDenied, "authorization denied"), "PermissionDenied: authorization denied (the admin socket serves only local admins"},
	}
	for _, tt := range tests {
		got := c.rpcErr(`fetching entry "e"`, tt.err).Error()
		if !strings.Contains(got, tt.want) {
			t.Errorf("got %q, want it to contain %q", got, tt.want)
		}
	}
}
