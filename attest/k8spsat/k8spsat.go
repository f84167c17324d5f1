// Package k8spsat is Kubernetes projected service account token node
// attestation, both halves, wire-compatible with SPIRE's k8s_psat plugins:
// the agent sends its pod-bound token with its cluster's name (Evidence),
// the server has the cluster's kube-apiserver review the token
// (TokenReview, with the configured audiences), checks the service account
// against the cluster's allow list, reads the pod and its node, and names
// the agent spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node uid> with
// SPIRE's k8s_psat selectors (Attestor).
package k8spsat

import (
	"encoding/json"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Type is the attestation type name (SPIRE's plugin name).
const Type = "k8s_psat"

// MaxPayload bounds the agent's payload, in bytes (docs/limits.md). A
// projected token is 1–2 KiB.
const MaxPayload = 64 << 10

// attestationData is the payload, as SPIRE's agent plugin sends it.
type attestationData struct {
	Cluster string `json:"cluster"`
	Token   string `json:"token"`
}

// The TokenReview user's extra keys that name the pod a token is bound to.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// serviceAccountPrefix starts the username of a service account.
const serviceAccountPrefix = "system:serviceaccount:"

// errorf is a gRPC status with SPIRE's message prefix.
func errorf(code codes.Code, format string, args ...any) error {
	return status.Errorf(code, "nodeattestor(k8s_psat): "+format, args...)
}

// parsePayload decodes the agent's payload; both fields are required.
// Errors are InvalidArgument statuses with SPIRE's messages.
func parsePayload(payload []byte) (attestationData, error) {
	var d attestationData
	if len(payload) == 0 {
		return d, errorf(codes.InvalidArgument, "missing attestation payload")
	}
	if len(payload) > MaxPayload {
		return d, errorf(codes.InvalidArgument, "payload of %d bytes is over the limit of %d", len(payload), MaxPayload)
	}
	if err := json.Unmarshal(payload, &d); err != nil {
		return attestationData{}, errorf(codes.InvalidArgument, "failed to unmarshal data payload: %v", err)
	}
	if d.Cluster == "" {
		return attestationData{}, errorf(codes.InvalidArgument, "missing cluster in attestation data")
	}
	if d.Token == "" {
		return attestationData{}, errorf(codes.InvalidArgument, "missing token in attestation data")
	}
	return d, nil
}

// serviceAccountNames splits a service account's username,
// system:serviceaccount:<namespace>:<name>; ok is false for any other
// user.
func serviceAccountNames(username string) (ns, name string, ok bool) {
	rest, found := strings.CutPrefix(username, serviceAccountPrefix)
	if !found {
		return "", "", false
	}
	ns, name, found = strings.Cut(rest, ":")
	if !found || ns == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return ns, name, true
}

// selectorValue is SPIRE's k8s selector value: kind and values joined by
// ':'.
func selectorValue(kind string, values ...string) string {
	return kind + ":" + strings.Join(values, ":")
}
