package azuremsi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/attest/metadata"
)

// DefaultOIDCIssuer is the issuer whose discovery document names the
// token signing keys, as SPIRE's.
const DefaultOIDCIssuer = "https://login.microsoftonline.com/common/"

// keySetRefresh is how long a fetched key set is used, as SPIRE's.
const keySetRefresh = time.Hour

// keySet discovers the issuer's jwks_uri and fetches its key set, kept for
// keySetRefresh.
type keySet struct {
	issuer string
	client *metadata.Client
	now    func() time.Time

	mu      sync.Mutex
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

func (k *keySet) get(ctx context.Context) (*jose.JSONWebKeySet, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != nil && k.now().Sub(k.fetched) < keySetRefresh {
		return k.keys, nil
	}
	disc, err := k.client.Do(ctx, http.MethodGet, strings.TrimSuffix(k.issuer, "/")+"/.well-known/openid-configuration", nil, MaxKeysResponse)
	if err != nil {
		return nil, err
	}
	uri, err := ParseDiscovery(disc)
	if err != nil {
		return nil, err
	}
	b, err := k.client.Do(ctx, http.MethodGet, uri, nil, MaxKeysResponse)
	if err != nil {
		return nil, err
	}
	set, err := ParseKeySet(b)
	if err != nil {
		return nil, err
	}
	k.keys, k.fetched = set, k.now()
	return set, nil
}

// ParseDiscovery returns the jwks_uri of an OIDC discovery document.
func ParseDiscovery(b []byte) (string, error) {
	var d struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return "", fmt.Errorf("unable to unmarshal discovery document: %w", err)
	}
	if !strings.HasPrefix(d.JWKSURI, "https://") && !strings.HasPrefix(d.JWKSURI, "http://") {
		return "", errors.New("discovery document has no http(s) jwks_uri")
	}
	return d.JWKSURI, nil
}

// ParseKeySet parses a JWKS document.
func ParseKeySet(b []byte) (*jose.JSONWebKeySet, error) {
	set := new(jose.JSONWebKeySet)
	if err := json.Unmarshal(b, set); err != nil {
		return nil, fmt.Errorf("unable to unmarshal key set: %w", err)
	}
	return set, nil
}
