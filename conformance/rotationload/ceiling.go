package rotationload

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"sync"
	"time"
)

// maxCeilingPerWorker bounds the signing loop of one ceiling worker.
const maxCeilingPerWorker = 10_000_000

// Ceiling is a measured raw X.509 signing rate.
type Ceiling struct {
	Workers      int
	Certificates int
	Elapsed      time.Duration
	// CPU is the CPU time this process used meanwhile (0 if unknown).
	CPU time.Duration
}

// CPUPerCertificate returns the CPU time one certificate cost.
func (c Ceiling) CPUPerCertificate() time.Duration {
	if c.Certificates == 0 {
		return 0
	}
	return c.CPU / time.Duration(c.Certificates)
}

// PerSecond returns the certificates signed per second.
func (c Ceiling) PerSecond() float64 {
	if c.Elapsed <= 0 {
		return 0
	}
	return float64(c.Certificates) / c.Elapsed.Seconds()
}

// CeilingConfig configures SigningCeiling.
type CeilingConfig struct {
	// Workers is how many goroutines sign at once.
	Workers int
	// Duration is how long they sign.
	Duration time.Duration
	// Rand is the signing randomness (default crypto/rand).
	Rand io.Reader
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// SigningCeiling measures how fast this machine signs certificates shaped
// like X.509-SVIDs (ECDSA P-256 issuer and subject keys, a SPIFFE ID URI
// SAN, random 128-bit serial) with x509.CreateCertificate in a loop, on
// cfg.Workers goroutines for about cfg.Duration.
func SigningCeiling(ctx context.Context, cfg CeilingConfig) (Ceiling, error) {
	if cfg.Workers < 1 || cfg.Duration <= 0 {
		return Ceiling{}, errors.New("rotationload: ceiling needs workers and a duration")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rnd, workers := cfg.Rand, cfg.Workers
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return Ceiling{}, fmt.Errorf("rotationload: ceiling CA key: %w", err)
	}
	now := cfg.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"ceiling"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
	}
	der, err := x509.CreateCertificate(rnd, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return Ceiling{}, fmt.Errorf("rotationload: ceiling CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return Ceiling{}, err
	}
	subject, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return Ceiling{}, err
	}

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		first error
	)
	cpu0 := cpuTime()
	start := cfg.Now()
	deadline := start.Add(cfg.Duration)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			var err error
			for ; n < maxCeilingPerWorker && ctx.Err() == nil && cfg.Now().Before(deadline); n++ {
				var serial *big.Int
				if serial, err = randomSerial(rnd); err != nil {
					break
				}
				tmpl := &x509.Certificate{
					SerialNumber:          serial,
					Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"Signet"}},
					NotBefore:             now.Add(-10 * time.Second),
					NotAfter:              now.Add(time.Hour),
					URIs:                  []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: fmt.Sprintf("/ceiling/%d/%d", w, n)}},
					KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
					ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
					BasicConstraintsValid: true,
				}
				if _, err = x509.CreateCertificate(rnd, tmpl, caCert, subject.Public(), caKey); err != nil {
					break
				}
			}
			mu.Lock()
			total += n
			if err != nil && first == nil {
				first = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	c := Ceiling{Workers: workers, Certificates: total, Elapsed: cfg.Now().Sub(start), CPU: cpuTime() - cpu0}
	if first != nil {
		return c, fmt.Errorf("rotationload: ceiling: %w", first)
	}
	return c, ctx.Err()
}

// randomSerial returns a random positive serial number of at most 128 bits.
func randomSerial(rnd io.Reader) (*big.Int, error) {
	var b [16]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	return new(big.Int).Add(new(big.Int).SetBytes(b[:]), big.NewInt(1)), nil
}
