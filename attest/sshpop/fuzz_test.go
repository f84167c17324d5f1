package sshpop

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// FuzzParseCertificate: any payload is refused with a status or yields a
// host certificate with a principal; nothing panics.
func FuzzParseCertificate(f *testing.F) {
	ca := newSigner(f)
	host := newHost(f, ca, certOpts{})
	p, err := host.Payload(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p)
	f.Add([]byte(`{"Certificate":"AAAA"}`))
	f.Add([]byte(`{"Certificate":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		cert, err := parseCertificate(payload)
		if err != nil {
			return
		}
		if len(cert.ValidPrincipals) == 0 {
			t.Fatal("a certificate without principals was accepted")
		}
	})
}

// FuzzVerifyResponse: no response but the host's own signature over this
// challenge verifies; nothing panics.
func FuzzVerifyResponse(f *testing.F) {
	host := newHost(f, newSigner(f), certOpts{})
	nonce := bytes.Repeat([]byte{7}, NonceSize)
	challenge, err := json.Marshal(challengeRequest{Nonce: nonce})
	if err != nil {
		f.Fatal(err)
	}
	good, err := host.Respond(context.Background(), challenge)
	if err != nil {
		f.Fatal(err)
	}
	if err := verifyResponse(host.cert, nonce, good); err != nil {
		f.Fatalf("the host's own response: %v", err)
	}
	f.Add(good)
	f.Add([]byte(`{"Nonce":null,"Signature":{}}`))
	f.Add([]byte(`{"Signature":{"Format":"ssh-rsa","Blob":"AAAA","Rest":"AAAA"}}`))
	f.Fuzz(func(t *testing.T, resp []byte) {
		if err := verifyResponse(host.cert, nonce, resp); err == nil && !bytes.Equal(resp, good) {
			// Another encoding of the same signature is fine; a
			// different signature verifying is not (ed25519 is strict).
			var a, b challengeResponse
			_ = json.Unmarshal(resp, &a)
			_ = json.Unmarshal(good, &b)
			if !bytes.Equal(a.Signature.Blob, b.Signature.Blob) || !bytes.Equal(a.Nonce, b.Nonce) {
				t.Fatalf("a forged response verified: %s", resp)
			}
		}
	})
}

// FuzzRespond: the agent half answers only a challenge with a 32-byte
// nonce, and its answer verifies against that nonce; nothing panics.
func FuzzRespond(f *testing.F) {
	host := newHost(f, newSigner(f), certOpts{})
	f.Add([]byte(`{"Nonce":"` + base64.StdEncoding.EncodeToString(make([]byte, NonceSize)) + `"}`))
	f.Add([]byte(`{"Nonce":"AAAA"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, challenge []byte) {
		resp, err := host.Respond(context.Background(), challenge)
		if err != nil {
			return
		}
		var req challengeRequest
		if err := json.Unmarshal(challenge, &req); err != nil {
			t.Fatalf("answered a challenge that does not parse: %v", err)
		}
		if err := verifyResponse(host.cert, req.Nonce, resp); err != nil {
			t.Fatalf("the answer does not verify: %v", err)
		}
	})
}
