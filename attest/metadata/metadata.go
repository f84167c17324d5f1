// Package metadata is the HTTP client of the cloud node attestors: on the
// agent side, of an instance metadata service (AWS IMDS, GCP's metadata
// server, Azure IMDS); on the server side, of a cloud's published signing
// keys. One bounded request with the service's headers, answered 200 or an
// error that says what the service said.
package metadata

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// DefaultTimeout bounds one request when the client has no timeout.
const DefaultTimeout = 10 * time.Second

// StatusError is a response other than 200.
type StatusError struct {
	URL  string
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("metadata: %s: unexpected status code %d: %s", e.URL, e.Code, e.Body)
}

// Client sends requests to a metadata service.
type Client struct {
	// HTTP is the client; nil: one with DefaultTimeout. It must not
	// follow redirects off the service (the default client is used with
	// redirects refused).
	HTTP *http.Client
}

func (c *Client) http() *http.Client {
	if c != nil && c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{
		Timeout: DefaultTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Do sends method url with headers and returns the body of a 200 answer,
// at most limit bytes (a longer one is an error).
func (c *Client) Do(ctx context.Context, method, url string, headers map[string]string, limit int) ([]byte, error) {
	return c.DoHeader(ctx, method, url, headers, limit, nil)
}

// DoHeader is Do that also hands the answer's headers to onHeader (when
// set) before reading the body.
func (c *Client) DoHeader(ctx context.Context, method, url string, headers map[string]string, limit int, onHeader func(http.Header)) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if onHeader != nil {
		onHeader(resp.Header)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("metadata: %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		if len(body) > 256 {
			body = body[:256]
		}
		return nil, &StatusError{URL: url, Code: resp.StatusCode, Body: string(body)}
	}
	if len(body) > limit {
		return nil, fmt.Errorf("metadata: %s: answer longer than %d bytes", url, limit)
	}
	return body, nil
}

// Endpoint returns value (the setting named name), or def when empty,
// without a trailing slash; it must be an http(s) URL.
func Endpoint(name, value, def string) (string, error) {
	ep := strings.TrimSuffix(value, "/")
	if ep == "" {
		ep = strings.TrimSuffix(def, "/")
	}
	if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
		return "", fmt.Errorf("%s %q is not an http(s) URL", name, value)
	}
	return ep, nil
}
