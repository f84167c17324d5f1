// Package secretsv1 is the generated Go code of signet.secrets.v1: Vault
// secrets for workloads by SPIFFE ID (see secrets.proto).
package secretsv1
