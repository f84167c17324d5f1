// Package cav1 is the generated Go code of signet.ca.v1, Signet's CA
// administration extras beside SPIRE's LocalAuthority API (see ca.proto).
package cav1
