package tlspolicy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-id/signet/clock"
)

// CertFile is a serving certificate read from PEM files and re-read every
// SyncInterval (SPIRE's serving_cert_file and its file_sync_interval), for
// endpoints that present an operator's Web PKI certificate.
type CertFile struct {
	CertPath, KeyPath string
	SyncInterval      time.Duration
	Clock             clock.Clock
	Logger            *slog.Logger

	mu     sync.Mutex
	cert   *tls.Certificate
	loaded time.Time
}

// Load reads the files now; it fails when they are missing or do not form
// a key pair.
func (c *CertFile) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loadLocked()
}

func (c *CertFile) loadLocked() error {
	pair, err := tls.LoadX509KeyPair(c.CertPath, c.KeyPath)
	if err != nil {
		return fmt.Errorf("tlspolicy: serving certificate %s / key %s: %w", c.CertPath, c.KeyPath, err)
	}
	c.cert, c.loaded = &pair, clock.Or(c.Clock).Now()
	return nil
}

// GetCertificate returns the certificate, re-reading the files when the
// sync interval elapsed (a failed re-read keeps the previous pair).
func (c *CertFile) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil || (c.SyncInterval > 0 && clock.Since(clock.Or(c.Clock), c.loaded) >= c.SyncInterval) {
		if err := c.loadLocked(); err != nil && c.cert == nil {
			return nil, err
		} else if err != nil && c.Logger != nil {
			c.Logger.Warn("serving certificate not reloaded; serving the previous one", "cert_file", c.CertPath, "error", err)
		}
	}
	return c.cert, nil
}
