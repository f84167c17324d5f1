package eventlog

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// KeySource supplies the checkpoint signing key and its certificate chain
// (leaf first; the leaf's public key is the signer's). It is asked before
// every checkpoint, so a rotating key (the server's X.509-SVID) is picked
// up as it rotates.
type KeySource interface {
	CheckpointKey() (crypto.Signer, []*x509.Certificate, error)
}

// KeySourceFunc adapts a function to KeySource.
type KeySourceFunc func() (crypto.Signer, []*x509.Certificate, error)

// CheckpointKey calls f.
func (f KeySourceFunc) CheckpointKey() (crypto.Signer, []*x509.Certificate, error) { return f() }

// StaticKey is a KeySource that always returns the same key and chain.
func StaticKey(signer crypto.Signer, chain []*x509.Certificate) KeySource {
	return KeySourceFunc(func() (crypto.Signer, []*x509.Certificate, error) { return signer, chain, nil })
}

// SVIDKey is a KeySource over an X.509-SVID source (the server's own
// SVID, spiffe://<td>/spire/server): the SVID's key and certificates.
func SVIDKey(src x509svid.Source) KeySource {
	return KeySourceFunc(func() (crypto.Signer, []*x509.Certificate, error) {
		s, err := src.GetX509SVID()
		if err != nil {
			return nil, nil, err
		}
		return s.PrivateKey, s.Certificates, nil
	})
}

var _ KeySource = KeySourceFunc(nil)

// checkpointDomain starts every signed checkpoint body.
const checkpointDomain = "signet.audit.v1.checkpoint"

// CheckpointBody is the message a checkpoint signature is over:
//
//	signet.audit.v1.checkpoint\n
//	<subject>\n
//	<tree_size in decimal>\n
//	<head_hash>\n
//	<time, RFC 3339 UTC as in the record>\n
func CheckpointBody(subject string, treeSize uint64, headHash string, t time.Time) []byte {
	var b strings.Builder
	b.WriteString(checkpointDomain + "\n")
	b.WriteString(subject + "\n")
	b.WriteString(strconv.FormatUint(treeSize, 10) + "\n")
	b.WriteString(headHash + "\n")
	b.WriteString(formatTime(t) + "\n")
	return []byte(b.String())
}

// signatureAlgorithm picks the signature algorithm for a public key.
func signatureAlgorithm(pub crypto.PublicKey) (x509.SignatureAlgorithm, crypto.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, crypto.SHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, crypto.SHA384, nil
		case elliptic.P521():
			return x509.ECDSAWithSHA512, crypto.SHA512, nil
		}
	case *rsa.PublicKey:
		return x509.SHA256WithRSA, crypto.SHA256, nil
	case ed25519.PublicKey:
		return x509.PureEd25519, crypto.Hash(0), nil
	}
	return 0, 0, fmt.Errorf("eventlog: unsupported checkpoint key type %T (use ECDSA, RSA or Ed25519)", pub)
}

// sigAlgByName maps Checkpoint.SigAlg to the algorithm.
var sigAlgByName = map[string]x509.SignatureAlgorithm{
	x509.ECDSAWithSHA256.String(): x509.ECDSAWithSHA256,
	x509.ECDSAWithSHA384.String(): x509.ECDSAWithSHA384,
	x509.ECDSAWithSHA512.String(): x509.ECDSAWithSHA512,
	x509.SHA256WithRSA.String():   x509.SHA256WithRSA,
	x509.SHA384WithRSA.String():   x509.SHA384WithRSA,
	x509.SHA512WithRSA.String():   x509.SHA512WithRSA,
	x509.PureEd25519.String():     x509.PureEd25519,
}

// signCheckpoint signs the body with signer, using the algorithm its
// public key calls for.
func signCheckpoint(rnd io.Reader, signer crypto.Signer, body []byte) (string, []byte, error) {
	alg, h, err := signatureAlgorithm(signer.Public())
	if err != nil {
		return "", nil, err
	}
	msg := body
	if h != 0 {
		d := h.New()
		d.Write(body)
		msg = d.Sum(nil)
	}
	sig, err := signer.Sign(rnd, msg, h)
	if err != nil {
		return "", nil, fmt.Errorf("eventlog: sign checkpoint: %w", err)
	}
	return alg.String(), sig, nil
}

// Checkpointer appends signed checkpoint records.
type Checkpointer struct {
	log      *Log
	keys     KeySource
	interval time.Duration
	subject  string
	rand     io.Reader
	logger   *slog.Logger
}

// CheckpointerOption configures a Checkpointer.
type CheckpointerOption func(*Checkpointer)

// WithInterval sets how often Run checkpoints (default 5 minutes).
func WithInterval(d time.Duration) CheckpointerOption {
	return func(c *Checkpointer) {
		if d > 0 {
			c.interval = d
		}
	}
}

// WithSubject sets the subject of checkpoint records, the log's origin
// (default: the trust domain of the signing certificate's SPIFFE ID, as
// "spiffe://<td>").
func WithSubject(s string) CheckpointerOption { return func(c *Checkpointer) { c.subject = s } }

// WithRand sets the randomness for signing (default crypto/rand.Reader).
func WithRand(r io.Reader) CheckpointerOption { return func(c *Checkpointer) { c.rand = r } }

// WithCheckpointerLogger sets the logger (default: the Log's).
func WithCheckpointerLogger(l *slog.Logger) CheckpointerOption {
	return func(c *Checkpointer) { c.logger = l }
}

// NewCheckpointer returns a Checkpointer for l signing with keys.
func NewCheckpointer(l *Log, keys KeySource, opts ...CheckpointerOption) *Checkpointer {
	c := &Checkpointer{log: l, keys: keys, interval: 5 * time.Minute, rand: rand.Reader, logger: l.log}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Run checkpoints every interval until ctx is done, and returns nil then.
// Failures are logged and retried at the next tick.
func (c *Checkpointer) Run(ctx context.Context) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, _, err := c.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				c.logger.Warn("eventlog: checkpoint failed", "error", err)
			}
		}
	}
}

// Checkpoint appends a checkpoint record over the current head, unless the
// log is empty or its last record is already a checkpoint (then nothing is
// appended and ok is false). Several replicas may call it concurrently:
// a checkpoint always commits to exactly the records before it.
func (c *Checkpointer) Checkpoint(ctx context.Context) (rec Record, ok bool, err error) {
	signer, chain, err := c.keys.CheckpointKey()
	if err != nil {
		return Record{}, false, fmt.Errorf("eventlog: checkpoint key: %w", err)
	}
	if signer == nil || len(chain) == 0 {
		return Record{}, false, errors.New("eventlog: checkpoint key: no signer or certificate chain")
	}
	subject, actor := c.subject, ""
	if len(chain[0].URIs) == 1 && chain[0].URIs[0].Scheme == "spiffe" {
		actor = chain[0].URIs[0].String()
		if subject == "" {
			subject = "spiffe://" + chain[0].URIs[0].Host
		}
	}
	if subject == "" || strings.ContainsAny(subject, "\n\r") {
		return Record{}, false, fmt.Errorf("eventlog: checkpoint subject %q: set one with WithSubject", subject)
	}
	der := make([][]byte, len(chain))
	for i, cert := range chain {
		der[i] = cert.Raw
	}
	recs, err := c.log.commit(ctx, func(s State, t time.Time) (plan, error) {
		if s.Seq == 0 || s.Kind == KindCheckpoint {
			return plan{}, nil
		}
		alg, sig, err := signCheckpoint(c.rand, signer, CheckpointBody(subject, s.Seq, s.Hash, t))
		if err != nil {
			return plan{}, err
		}
		return plan{recs: []Record{{
			Kind:    KindCheckpoint,
			Subject: subject,
			Actor:   actor,
			Serial:  chain[0].SerialNumber.Text(16),
			KeyID:   hex.EncodeToString(chain[0].SubjectKeyId),
			Checkpoint: &Checkpoint{
				TreeSize: s.Seq, HeadHash: s.Hash, SigAlg: alg, Signature: sig, Chain: der,
			},
		}}}, nil
	})
	if err != nil || len(recs) == 0 {
		return Record{}, false, err
	}
	return recs[0], true, nil
}
