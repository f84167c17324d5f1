package agent

import (
	"context"
	"fmt"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// NamedAttestor is one configured workload attestor: its type (the
// WorkloadAttestor block's label, e.g. "unix", "k8s") and the attestor.
type NamedAttestor struct {
	Type     string
	Attestor WorkloadAttestor
}

// Attestors runs every configured workload attestor on a caller and
// returns the union of their selectors, as SPIRE's agent does. An attestor
// that fails fails the attestation: a workload is never given an identity
// on the strength of part of its evidence.
type Attestors []NamedAttestor

var _ WorkloadAttestor = Attestors(nil)

// Attest implements WorkloadAttestor.
func (as Attestors) Attest(ctx context.Context, pid int32) ([]*types.Selector, error) {
	var out []*types.Selector
	for _, a := range as {
		sel, err := a.Attestor.Attest(ctx, pid)
		if err != nil {
			return nil, fmt.Errorf("agent: workload attestor %q: %w", a.Type, err)
		}
		out = append(out, sel...)
	}
	return out, nil
}
