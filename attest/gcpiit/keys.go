package gcpiit

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/attest/metadata"
)

// DefaultCertsURL is where SPIRE fetches Google's token signing
// certificates.
const DefaultCertsURL = "https://www.googleapis.com/oauth2/v1/certs"

// keySet fetches Google's certificates (a JSON object of key ID → PEM
// certificate) and keeps them until the response's Expires time; without
// one it fetches again on the next attestation, as SPIRE does.
type keySet struct {
	url    string
	client *metadata.Client
	now    func() time.Time

	mu     sync.Mutex
	keys   *jose.JSONWebKeySet
	expiry time.Time
}

func (k *keySet) get(ctx context.Context) (*jose.JSONWebKeySet, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != nil && k.now().Before(k.expiry) {
		return k.keys, nil
	}
	keys, expiry, err := k.fetch(ctx)
	if err != nil {
		return nil, err
	}
	k.keys, k.expiry = keys, expiry
	return keys, nil
}

func (k *keySet) fetch(ctx context.Context) (*jose.JSONWebKeySet, time.Time, error) {
	var expires string
	body, err := k.client.DoHeader(ctx, http.MethodGet, k.url, nil, MaxCertsResponse, func(h http.Header) { expires = h.Get("Expires") })
	if err != nil {
		return nil, time.Time{}, err
	}
	keys, err := ParseCerts(body)
	if err != nil {
		return nil, time.Time{}, err
	}
	var expiry time.Time
	if t, err := http.ParseTime(expires); err == nil {
		expiry = t
	}
	return keys, expiry, nil
}

// ParseCerts parses Google's certificate document: a JSON object of key
// ID → PEM certificate.
func ParseCerts(b []byte) (*jose.JSONWebKeySet, error) {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("unable to unmarshal certificate response: %w", err)
	}
	set := &jose.JSONWebKeySet{}
	for kid, p := range m {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil {
			return nil, errors.New("unable to unmarshal certificate response: malformed PEM block")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("unable to unmarshal certificate response: %w", err)
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{KeyID: kid, Key: c.PublicKey, Certificates: []*x509.Certificate{c}})
	}
	return set, nil
}
