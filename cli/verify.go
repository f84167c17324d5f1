package cli

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	bundlecodec "github.com/signet-id/signet/bundle"
	pqjwt "github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/verify"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func newVerifyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify SVIDs offline against a bundle, including post-quantum signatures",
	}
	cmd.AddCommand(newVerifyX509Command(), newVerifyJWTCommand())
	return cmd
}

type verifyFlags struct {
	bundle         string
	trustDomain    string
	requirePQ      bool
	allowClassical bool
}

func (f *verifyFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.bundle, "bundle", "", "trust bundle: SPIFFE bundle JSON (with signet_mldsa_keys) or PEM certificates (required)")
	cmd.Flags().StringVar(&f.trustDomain, "trust-domain", "", "trust domain of a JSON bundle (default: taken from the SVID)")
	cmd.Flags().BoolVar(&f.requirePQ, "require-pq", false, "fail unless every signature is also post-quantum (ML-DSA), whatever the bundle")
	cmd.Flags().BoolVar(&f.allowClassical, "allow-classical", false, "accept SVIDs without ML-DSA signatures even when the bundle is hybrid or pq (off: such SVIDs are refused as a downgrade)")
}

// check refuses contradictory policy flags.
func (f *verifyFlags) check() error {
	if f.requirePQ && f.allowClassical {
		return usageError{errors.New("--require-pq and --allow-classical contradict each other; pass one")}
	}
	return nil
}

// loadBundle reads a PEM or SPIFFE JSON bundle for td.
func loadBundle(path string, td spiffeid.TrustDomain) (*bundlecodec.Bundle, error) {
	if path == "" {
		return nil, usageError{errors.New("--bundle is required (get one with `signet bundle show --format spiffe`, or the server's data_dir/bundle.spiffe.json)")}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		b, err := bundlecodec.Parse(td, data)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", path, err)
		}
		return b, nil
	}
	certs, err := readPEMCerts(path)
	if err != nil {
		return nil, err
	}
	sb := spiffebundle.New(td)
	for _, c := range certs {
		sb.AddX509Authority(c)
	}
	return &bundlecodec.Bundle{Bundle: sb}, nil
}

func newVerifyX509Command() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "x509 SVID.pem",
		Short: "Verify an X.509-SVID chain (leaf first) and its ML-DSA signatures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			chain, err := readPEMCerts(args[0])
			if err != nil {
				return usageError{err}
			}
			td, err := chainTrustDomain(chain, f.trustDomain)
			if err != nil {
				return err
			}
			b, err := loadBundle(f.bundle, td)
			if err != nil {
				return err
			}
			res, err := verify.VerifyX509(chain, b.X509Authorities(), verify.Options{RequirePQ: f.requirePQ, AllowClassical: f.allowClassical})
			if err != nil {
				return fmt.Errorf("X.509-SVID rejected: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK %s profile=%s pq_verified=%v chain=%d\n", res.ID, res.Profile, res.PQVerified, len(res.Chain))
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func chainTrustDomain(chain []*x509.Certificate, flag string) (spiffeid.TrustDomain, error) {
	if flag != "" {
		td, err := spiffeid.TrustDomainFromString(flag)
		if err != nil {
			return td, usageError{fmt.Errorf("invalid --trust-domain %q: %w", flag, err)}
		}
		return td, nil
	}
	if len(chain[0].URIs) == 1 {
		if id, err := spiffeid.FromURI(chain[0].URIs[0]); err == nil {
			return id.TrustDomain(), nil
		}
	}
	return spiffeid.TrustDomain{}, usageError{errors.New("cannot tell the trust domain from the SVID; pass --trust-domain")}
}

func newVerifyJWTCommand() *cobra.Command {
	var (
		f        verifyFlags
		audience []string
	)
	cmd := &cobra.Command{
		Use:   "jwt [TOKEN|-]",
		Short: "Verify a JWT-SVID (ES256, hybrid with its ML-DSA claim, or ML-DSA)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok := ""
			if len(args) == 1 && args[0] != "-" {
				tok = args[0]
			} else {
				data, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return err
				}
				tok = string(data)
			}
			if err := f.check(); err != nil {
				return err
			}
			tok = strings.TrimSpace(tok)
			if tok == "" {
				return usageError{errors.New("no token given: pass it as the argument or on stdin")}
			}
			if len(audience) == 0 {
				return usageError{errors.New("--audience is required: a JWT-SVID is only valid for its audience")}
			}
			td, err := jwtTrustDomain(tok, f.trustDomain)
			if err != nil {
				return err
			}
			b, err := loadBundle(f.bundle, td)
			if err != nil {
				return err
			}
			ks := pqjwt.KeySet{Classic: map[string]crypto.PublicKey{}, PQ: b.MLDSAKeys}
			for kid, k := range b.JWTAuthorities() {
				ks.Classic[kid] = k
			}
			t, err := pqjwt.Verify(tok, ks, pqjwt.VerifyOptions{RequirePQ: f.requirePQ, AllowClassical: f.allowClassical, Audience: audience})
			if err != nil {
				return fmt.Errorf("JWT-SVID rejected: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK %s profile=%s alg=%s expires=%s\n", t.Subject, t.Profile, t.Alg, t.Expiry.UTC().Format("2006-01-02T15:04:05Z"))
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringSliceVar(&audience, "audience", nil, "expected audience (repeatable)")
	return cmd
}

func jwtTrustDomain(tok, flag string) (spiffeid.TrustDomain, error) {
	if flag != "" {
		td, err := spiffeid.TrustDomainFromString(flag)
		if err != nil {
			return td, usageError{fmt.Errorf("invalid --trust-domain %q: %w", flag, err)}
		}
		return td, nil
	}
	t, err := pqjwt.Parse(tok)
	if err == nil {
		if id, err := spiffeid.FromString(t.Subject); err == nil {
			return id.TrustDomain(), nil
		}
	}
	return spiffeid.TrustDomain{}, usageError{errors.New("cannot tell the trust domain from the token; pass --trust-domain")}
}
