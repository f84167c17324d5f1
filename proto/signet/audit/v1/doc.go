// Package auditv1 is the generated Go code of signet.audit.v1, the admin
// service that tails, exports and archives the rotation event log (see
// audit.proto).
package auditv1
