package tpmdevid_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/tpmdevid"
	"github.com/signet-id/signet/attest/tpmdevid/tpmdevidtest"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
	"google.golang.org/grpc/codes"
)

// mutate decodes a payload, applies f and encodes it again.
func mutate(t *testing.T, p []byte, f func(*tpmdevid.AttestationRequest)) []byte {
	t.Helper()
	r, err := tpmdevid.ParsePayload(p)
	if err != nil {
		t.Fatal(err)
	}
	f(r)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamper answers with ev and then applies f to the response.
func tamper(t *testing.T, ev *tpmdevid.Evidence, f func(*tpmdevid.ChallengeResponse)) attest.Challenger {
	return func(ctx context.Context, ch []byte) ([]byte, error) {
		b, err := ev.Respond(ctx, ch)
		if err != nil {
			return nil, err
		}
		r, err := tpmdevid.ParseResponse(b)
		if err != nil {
			t.Fatal(err)
		}
		f(r)
		return json.Marshal(r)
	}
}

func flip(b []byte) []byte {
	b = append([]byte(nil), b...)
	b[len(b)-1] ^= 1
	return b
}

// TestAttestRefusesForgedEvidence performs each attack against real
// swtpms: A and B are two genuine, trusted devices; C has an EK
// certificate from an untrusted manufacturer. Every attempt is refused
// with PermissionDenied and the check that caught it.
func TestAttestRefusesForgedEvidence(t *testing.T) {
	p := newPKI(t)
	devA := tpmdevidtest.Provision(t, p.options("node-a"))
	devB := tpmdevidtest.Provision(t, p.options("node-b"))

	otherCA := x509poptest.NewCA(t, "rogue-devid", nil, p.now.Add(-time.Hour))
	oUntrusted := p.options("node-a-rogue")
	oUntrusted.DevIDCA, oUntrusted.Intermediates = otherCA, nil
	devUntrusted := tpmdevidtest.ProvisionDevID(t, devA.Address, oUntrusted)

	oC := p.options("node-c")
	oC.EKCA = x509poptest.NewCA(t, "rogue-manufacturer", nil, p.now.Add(-time.Hour))
	devC := tpmdevidtest.Provision(t, oC)

	evA := evidence(t, devA)
	payloadA := payload(t, evA)
	evA.Close() // swtpm has three transient object slots
	reqA, err := tpmdevid.ParsePayload(payloadA)
	if err != nil {
		t.Fatal(err)
	}

	// A genuine attestation of B, its response recorded for the replay.
	evB := evidence(t, devB)
	var recorded []byte
	if _, err := p.attestor(t, p.now).Attest(context.Background(), attest.NodeRequest{Payload: payload(t, evB), Challenge: respond(evB, &recorded)}); err != nil {
		t.Fatal(err)
	}

	type attempt struct {
		payload   []byte
		challenge attest.Challenger
	}
	cases := []struct {
		name string
		now  time.Time
		run  func(t *testing.T) attempt
		msg  string
	}{
		{"DevID certificate from an untrusted CA", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devUntrusted)
			return attempt{payload(t, ev), respond(ev, nil)}
		}, "unable to verify DevID signature"},
		{"expired DevID certificate", p.now.Add(2 * time.Hour), func(t *testing.T) attempt {
			ev := evidence(t, devA)
			return attempt{payload(t, ev), respond(ev, nil)}
		}, "expired"},
		{"DevID certificate of another TPM's key", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devB)
			return attempt{mutate(t, payload(t, ev), func(r *tpmdevid.AttestationRequest) { r.DevIDCert = reqA.DevIDCert }), respond(ev, nil)}
		}, "DevID key public blob is not the DevID certificate's key"},
		{"DevID key of another TPM", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devB)
			return attempt{mutate(t, payload(t, ev), func(r *tpmdevid.AttestationRequest) {
				r.DevIDCert, r.DevIDPub = reqA.DevIDCert, reqA.DevIDPub
			}), respond(ev, nil)}
		}, "cannot verify that DevID is in the same TPM than AK: certify failed"},
		{"EK certificate from an untrusted manufacturer", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devC)
			return attempt{payload(t, ev), respond(ev, nil)}
		}, "cannot verify EK signature"},
		{"EK certificate of another TPM", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devB)
			return attempt{mutate(t, payload(t, ev), func(r *tpmdevid.AttestationRequest) { r.EKCert = reqA.EKCert }), respond(ev, nil)}
		}, "public key in EK certificate differs"},
		{"AK that is not a restricted TPM key", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devB)
			return attempt{mutate(t, payload(t, ev), func(r *tpmdevid.AttestationRequest) { r.AKPub = r.DevIDPub }), respond(ev, nil)}
		}, "attestation key is not a restricted signing key"},
		{"garbled certification signature", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devB)
			return attempt{mutate(t, payload(t, ev), func(r *tpmdevid.AttestationRequest) {
				r.CertificationSignature = flip(r.CertificationSignature)
			}), respond(ev, nil)}
		}, "cannot verify that DevID is in the same TPM than AK: crypto/rsa: verification error"},
		{"replayed response of an earlier attestation", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devB)
			return attempt{payload(t, ev), func(context.Context, []byte) ([]byte, error) { return recorded, nil }}
		}, "devID challenge verification failed"},
		{"garbled DevID signature", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devB)
			return attempt{payload(t, ev), tamper(t, ev, func(r *tpmdevid.ChallengeResponse) { r.DevID = flip(r.DevID) })}
		}, "devID challenge verification failed"},
		{"wrong activated credential", p.now, func(t *testing.T) attempt {
			ev := evidence(t, devB)
			return attempt{payload(t, ev), tamper(t, ev, func(r *tpmdevid.ChallengeResponse) { r.CredActivation = flip(r.CredActivation) })}
		}, "credential activation failed: nonces are different"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at := c.run(t)
			res, err := p.attestor(t, c.now).Attest(context.Background(), attest.NodeRequest{Payload: at.payload, Challenge: at.challenge})
			if err == nil {
				t.Fatalf("attested as %v", res.AgentID)
			}
			wantCode(t, err, codes.PermissionDenied, c.msg)
		})
	}

	// The EK of another (trusted) TPM: the server makes the credential for
	// A's EK, which B cannot activate, so B has no answer.
	t.Run("EK of another TPM", func(t *testing.T) {
		ev := evidence(t, devB)
		pl := mutate(t, payload(t, ev), func(r *tpmdevid.AttestationRequest) { r.EKCert, r.EKPub = reqA.EKCert, reqA.EKPub })
		_, err := p.attestor(t, p.now).Attest(context.Background(), attest.NodeRequest{Payload: pl, Challenge: respond(ev, nil)})
		if err == nil || !strings.Contains(err.Error(), "unable to solve proof of residency challenge") {
			t.Fatalf("error %v, want the agent unable to activate the credential", err)
		}
	})
	// A's DevID files on B: B's SRK cannot load A's key.
	t.Run("DevID files of another TPM", func(t *testing.T) {
		d := *devA
		d.Address = devB.Address
		ev := evidence(t, &d)
		if _, err := ev.Payload(context.Background()); err == nil || !strings.Contains(err.Error(), "load DevID key") {
			t.Fatalf("Payload: %v, want a DevID load failure", err)
		}
	})
}

// TestAttestRefusesMalformed: malformed payloads and responses are
// InvalidArgument, before any challenge for a payload.
func TestAttestRefusesMalformed(t *testing.T) {
	p := newPKI(t)
	dev := tpmdevidtest.Provision(t, p.options("node-1"))
	ev := evidence(t, dev)
	good := payload(t, ev)
	ev.Close()
	noChallenge := func(context.Context, []byte) ([]byte, error) {
		t.Error("challenged a malformed payload")
		return nil, nil
	}
	drop := func(f func(*tpmdevid.AttestationRequest)) []byte { return mutate(t, good, f) }
	cases := []struct {
		name    string
		payload []byte
		msg     string
	}{
		{"empty", nil, "missing attestation payload"},
		{"not JSON", []byte("nope"), "unable to unmarshall attestation data"},
		{"too large", make([]byte, tpmdevid.MaxPayload+1), "longer than the limit"},
		{"no DevID certificate", []byte(`{}`), "no DevID certificate to attest"},
		{"garbled DevID certificate", []byte(`{"DevIDCert":["AAAA"]}`), "unable to parse DevID certificate"},
		{"garbled intermediate", drop(func(r *tpmdevid.AttestationRequest) { r.DevIDCert[1] = []byte{1} }), "unable to parse DevID intermediate certificate 0"},
		{"missing AK", drop(func(r *tpmdevid.AttestationRequest) { r.AKPub = nil }), "missing attestation key public blob"},
		{"missing DevID public", drop(func(r *tpmdevid.AttestationRequest) { r.DevIDPub = nil }), "missing DevID key public blob"},
		{"missing EK certificate", drop(func(r *tpmdevid.AttestationRequest) { r.EKCert = nil }), "missing endorsement certificate"},
		{"missing EK public", drop(func(r *tpmdevid.AttestationRequest) { r.EKPub = nil }), "missing endorsement key public blob"},
		{"garbled EK certificate", drop(func(r *tpmdevid.AttestationRequest) { r.EKCert = []byte{1, 2} }), "cannot parse endorsement certificate"},
		{"garbled AK public", drop(func(r *tpmdevid.AttestationRequest) { r.AKPub = []byte{0, 1} }), "cannot decode attestation key public blob"},
		{"garbled DevID public", drop(func(r *tpmdevid.AttestationRequest) { r.DevIDPub = []byte{0, 1} }), "cannot decode DevID key public blob"},
		{"garbled EK public", drop(func(r *tpmdevid.AttestationRequest) { r.EKPub = []byte{0, 1} }), "cannot decode endorsement key public blob"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := p.attestor(t, p.now).Attest(context.Background(), attest.NodeRequest{Payload: c.payload, Challenge: noChallenge})
			wantCode(t, err, codes.InvalidArgument, c.msg)
		})
	}
	t.Run("response not JSON", func(t *testing.T) {
		ev := evidence(t, dev)
		_, err := p.attestor(t, p.now).Attest(context.Background(), attest.NodeRequest{Payload: payload(t, ev), Challenge: func(context.Context, []byte) ([]byte, error) { return []byte("nope"), nil }})
		wantCode(t, err, codes.InvalidArgument, "unable to unmarshall challenges response")
	})
	// The agent half refuses challenges it cannot use, and each payload
	// answers one challenge only.
	for _, c := range []struct{ name, challenge, msg string }{
		{"not JSON", "nope", "tpmdevid: challenge"},
		{"no credential", `{"DevID":"AAAA"}`, "empty credential activation challenge"},
		{"garbled credential", `{"DevID":"AAAA","CredActivation":{"Credential":"AAAA","Secret":"AAAA"}}`, "unable to solve proof of residency challenge"},
	} {
		t.Run("agent challenge "+c.name, func(t *testing.T) {
			ev := evidence(t, dev)
			payload(t, ev)
			if _, err := ev.Respond(context.Background(), []byte(c.challenge)); err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Respond: %v, want %q", err, c.msg)
			}
			if _, err := ev.Respond(context.Background(), []byte(c.challenge)); err == nil || !strings.Contains(err.Error(), "challenge before payload") {
				t.Fatalf("second Respond: %v", err)
			}
		})
	}
	t.Run("response too large", func(t *testing.T) {
		ev := evidence(t, dev)
		_, err := p.attestor(t, p.now).Attest(context.Background(), attest.NodeRequest{Payload: payload(t, ev), Challenge: func(context.Context, []byte) ([]byte, error) { return make([]byte, tpmdevid.MaxResponse+1), nil }})
		wantCode(t, err, codes.InvalidArgument, "longer than the limit")
	})
}
