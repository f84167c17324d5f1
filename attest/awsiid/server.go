package awsiid

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/digitorus/pkcs7"
	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/agentpath"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServerPluginData is the server's plugin_data, with SPIRE's names where
// SPIRE has the setting. The settings that make SPIRE call the AWS API
// (credentials, assume_role, verify_organization,
// validate_eks_cluster_membership) are refused: Signet does not call it.
// skip_block_device and disable_instance_profile_selectors are accepted
// and change nothing (Signet behaves as if both were true).
type ServerPluginData struct {
	AgentPathTemplate               string   `hcl:"agent_path_template,optional"`
	Partition                       string   `hcl:"partition,optional"`
	LocalValidAcctIDs               []string `hcl:"account_ids_for_local_validation,optional"`
	SkipBlockDevice                 *bool    `hcl:"skip_block_device,optional"`
	DisableInstanceProfileSelectors *bool    `hcl:"disable_instance_profile_selectors,optional"`
	AccessKeyID                     string   `hcl:"access_key_id,optional"`
	SecretAccessKey                 string   `hcl:"secret_access_key,optional"`
	AssumeRole                      string   `hcl:"assume_role,optional"`

	// Signet's: the accounts whose instances may attest (required: without
	// the AWS API, nothing else ties an instance to the operator).
	AccountIDAllowList []string `hcl:"accountid_allow_list,optional"`
	// Signet's: region → PEM file of the certificates that sign the
	// region's documents, replacing AWS's built-in one for that region
	// (RSA-2048 PKCS #7 and RSA-1024 signatures respectively).
	RSA2048Certificates map[string]string `hcl:"rsa2048_certificates,optional"`
	RSA1024Certificates map[string]string `hcl:"rsa1024_certificates,optional"`
}

// Config configures the server half.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// AccountIDs are the allowed AWS accounts; at least one.
	AccountIDs []string
	// AgentPathTemplate is SPIRE's agent_path_template; empty: the
	// default.
	AgentPathTemplate string
	// RSA2048 and RSA1024 are the signing certificates by region; nil:
	// AWS's built-in ones.
	RSA2048, RSA1024 Certs
}

var partitions = []string{"aws", "aws-cn", "aws-us-gov"}

// ConfigFromPluginData checks d and loads the certificates it names over
// the built-in ones.
func ConfigFromPluginData(td spiffeid.TrustDomain, d ServerPluginData) (Config, error) {
	for _, s := range []struct{ name, v string }{
		{"access_key_id", d.AccessKeyID}, {"secret_access_key", d.SecretAccessKey}, {"assume_role", d.AssumeRole},
	} {
		if s.v != "" {
			return Config{}, fmt.Errorf("awsiid: %s is not supported: Signet does not call the AWS API", s.name)
		}
	}
	if d.Partition != "" && !slices.Contains(partitions, d.Partition) {
		return Config{}, fmt.Errorf("awsiid: invalid partition %q, must be one of: %v", d.Partition, partitions)
	}
	cfg := Config{TrustDomain: td, AccountIDs: d.AccountIDAllowList, AgentPathTemplate: d.AgentPathTemplate,
		RSA2048: BuiltinRSA2048(), RSA1024: BuiltinRSA1024()}
	for _, o := range []struct {
		paths map[string]string
		dst   Certs
	}{{d.RSA2048Certificates, cfg.RSA2048}, {d.RSA1024Certificates, cfg.RSA1024}} {
		extra, err := loadRegional(o.paths)
		if err != nil {
			return Config{}, err
		}
		for r, cs := range extra {
			o.dst[r] = cs
		}
	}
	return cfg, nil
}

// Attestor is the server half. Its errors are gRPC statuses.
type Attestor struct {
	cfg  Config
	tmpl *agentpath.Template
}

// NewAttestor returns the server half.
func NewAttestor(cfg Config) (*Attestor, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("awsiid: trust domain is required")
	}
	if len(cfg.AccountIDs) == 0 {
		return nil, errors.New("awsiid: accountid_allow_list is required (Signet does not call the AWS API, so nothing else limits which AWS accounts may attest)")
	}
	if strings.Contains(cfg.AgentPathTemplate, ".Tags") {
		return nil, errors.New("awsiid: agent_path_template: .Tags needs the AWS API, which Signet does not call")
	}
	tmpl, err := agentpath.Parse(cfg.AgentPathTemplate, DefaultAgentPathTemplate)
	if err != nil {
		return nil, fmt.Errorf("awsiid: %w", err)
	}
	if cfg.RSA2048 == nil {
		cfg.RSA2048 = BuiltinRSA2048()
	}
	if cfg.RSA1024 == nil {
		cfg.RSA1024 = BuiltinRSA1024()
	}
	return &Attestor{cfg: cfg, tmpl: tmpl}, nil
}

// Type returns "aws_iid".
func (a *Attestor) Type() string { return Type }

// CheckPayload refuses a payload over MaxPayload before anything else.
func (a *Attestor) CheckPayload(payload []byte) error {
	if len(payload) > MaxPayload {
		return attest.CheckPayload("awsiid", payload, MaxPayload)
	}
	return nil
}

// Attest verifies the document's signature, the account, that the
// instance has not attested before (SPIRE's trust on first use), and
// returns SPIRE's agent ID and document selectors. An aws_iid agent may
// not attest again (CanReattest false), as in SPIRE.
func (a *Attestor) Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error) {
	if err := attest.CheckPayload("awsiid", req.Payload, MaxPayload); err != nil {
		return attest.NodeResult{}, err
	}
	data, doc, err := ParsePayload(req.Payload)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.InvalidArgument, "awsiid: %v", err)
	}
	if err := a.verify(data, doc.Region); err != nil {
		return attest.NodeResult{}, err
	}
	if !slices.Contains(a.cfg.AccountIDs, doc.AccountID) {
		return attest.NodeResult{}, status.Errorf(codes.PermissionDenied, "awsiid: account %q is not in the allow list", doc.AccountID)
	}
	id, err := a.tmpl.AgentID(a.cfg.TrustDomain, TemplateData{
		InstanceID: doc.InstanceID, AccountID: doc.AccountID, Region: doc.Region, PluginName: Type,
	})
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.Internal, "failed to create spiffe ID: %v", err)
	}
	if err := attest.AssessTOFU(ctx, req, id); err != nil {
		return attest.NodeResult{}, err
	}
	return attest.NodeResult{AgentID: id, Selectors: Selectors(doc)}, nil
}

// verify checks the RSA-2048 PKCS #7 signature if present, else the
// RSA-1024 one, as SPIRE prefers, with the region's certificates.
func (a *Attestor) verify(data *AttestationData, region string) error {
	if data.SignatureRSA2048 != "" {
		certs := a.cfg.RSA2048.lookup(region, false)
		if len(certs) == 0 {
			return status.Errorf(codes.PermissionDenied, "failed to load the AWS CA certificate for region %q: unsupported region %q", region, region)
		}
		return verifyPKCS7(data.Document, data.SignatureRSA2048, certs)
	}
	if data.Signature == "" {
		return status.Error(codes.InvalidArgument, "instance identity cryptographic signature is required")
	}
	certs := a.cfg.RSA1024.lookup(region, true)
	if len(certs) == 0 {
		return status.Errorf(codes.PermissionDenied, "failed to load the AWS CA certificate for region %q", region)
	}
	sig, err := base64.StdEncoding.DecodeString(data.Signature)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "failed to decode the IID signature: %v", err)
	}
	digest := sha256.Sum256([]byte(data.Document))
	for _, c := range certs {
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil {
			return nil
		}
	}
	return status.Error(codes.PermissionDenied, "failed to verify the cryptographic signature: not signed by a trusted certificate of the region")
}

// verifyPKCS7 checks that sig (base64 DER, no PEM armour, as the metadata
// service serves it) is a PKCS #7 signature by one of certs over exactly
// doc. SPIRE does not compare the signed content with the document;
// Signet does, so a genuine signature of one document cannot vouch for
// another.
func verifyPKCS7(doc, sig string, certs []*x509.Certificate) error {
	blk, _ := pem.Decode([]byte("-----BEGIN PKCS7-----\n" + sig + "\n-----END PKCS7-----\n"))
	if blk == nil {
		return status.Error(codes.InvalidArgument, "failed to decode the instance identity cryptographic signature")
	}
	var lastErr error
	for _, c := range certs {
		p7, err := pkcs7.Parse(blk.Bytes)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "failed to parse the instance identity cryptographic signature: %v", err)
		}
		if !bytes.Equal(p7.Content, []byte(doc)) {
			return status.Error(codes.PermissionDenied, "failed verification of instance identity cryptographic signature: the signed content is not the document")
		}
		p7.Certificates = []*x509.Certificate{c}
		if lastErr = p7.Verify(); lastErr == nil {
			return nil
		}
	}
	return status.Errorf(codes.PermissionDenied, "failed verification of instance identity cryptographic signature: %v", lastErr)
}
