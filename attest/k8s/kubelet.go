package k8s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxPodListSize bounds the kubelet's answer (a node's pods).
const maxPodListSize = 64 << 20

// requestTimeout bounds one /pods request, as SPIRE's.
const requestTimeout = 10 * time.Second

// ErrKubelet is wrapped by the errors of a failed /pods request (the
// kubelet is unreachable, refused the credentials, or answered garbage).
var ErrKubelet = errors.New("k8s: kubelet")

// kubelet is a client of one kubelet's /pods endpoint with the
// credentials loaded at one time.
type kubelet struct {
	url    string
	client *http.Client
	token  string
	loaded time.Time
}

// newKubelet loads the CA, the client credentials and the token named by
// cfg and returns a client. Over the secure port it verifies the
// kubelet's certificate against the CA, for the host name NodeName, or,
// when NodeName is empty (the agent reaches its kubelet at 127.0.0.1,
// whose serving certificate rarely names that address), the chain only,
// as SPIRE does.
func newKubelet(cfg *Config, now time.Time) (*kubelet, error) {
	if cfg.ReadOnlyPort > 0 {
		return &kubelet{
			url:    "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.ReadOnlyPort)) + "/pods",
			client: &http.Client{Timeout: requestTimeout},
			loaded: now,
		}, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case cfg.SkipKubeletVerification:
		tc.InsecureSkipVerify = true //nolint:gosec // skip_kubelet_verification, as SPIRE's
	default:
		roots, err := loadCA(cfg.KubeletCAPath)
		if err != nil {
			return nil, err
		}
		if cfg.NodeName != "" {
			tc.RootCAs = roots
			break
		}
		tc.InsecureSkipVerify = true //nolint:gosec // the chain is verified below, the host name is not
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, roots)
		}
	}
	var token string
	switch {
	case cfg.UseAnonymousAuthentication:
	case cfg.CertificatePath != "" || cfg.PrivateKeyPath != "":
		if cfg.CertificatePath == "" || cfg.PrivateKeyPath == "" {
			return nil, errors.New("k8s: certificate_path and private_key_path go together")
		}
		kp, err := tls.LoadX509KeyPair(cfg.CertificatePath, cfg.PrivateKeyPath)
		if err != nil {
			return nil, fmt.Errorf("k8s: kubelet client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{kp}
	default:
		b, err := os.ReadFile(cfg.TokenPath)
		if err != nil {
			return nil, fmt.Errorf("k8s: kubelet token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	host := cfg.NodeName
	if host == "" {
		host = "127.0.0.1"
	}
	return &kubelet{
		url: "https://" + net.JoinHostPort(host, strconv.Itoa(cfg.SecurePort)) + "/pods",
		client: &http.Client{
			Timeout:   requestTimeout,
			Transport: &http.Transport{TLSClientConfig: tc, Proxy: nil},
		},
		token:  token,
		loaded: now,
	}, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("k8s: kubelet CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("k8s: kubelet CA %s: no PEM certificates", path)
	}
	return pool, nil
}

// verifyChain verifies the kubelet's chain against roots without a host
// name.
func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("k8s: the kubelet presented no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("k8s: kubelet certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// pods fetches the kubelet's pod list.
func (k *kubelet) pods(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKubelet, err)
	}
	if k.token != "" {
		req.Header.Set("Authorization", "Bearer "+k.token)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: GET /pods: %w", ErrKubelet, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%w: GET /pods: %s: %q", ErrKubelet, resp.Status, strings.TrimSpace(string(msg)))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPodListSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: GET /pods: %w", ErrKubelet, err)
	}
	if len(b) > maxPodListSize {
		return nil, fmt.Errorf("%w: GET /pods: answer over %d bytes", ErrKubelet, maxPodListSize)
	}
	return b, nil
}
