package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

type attestorFunc func(ctx context.Context, pid int32) ([]*types.Selector, error)

func (f attestorFunc) Attest(ctx context.Context, pid int32) ([]*types.Selector, error) {
	return f(ctx, pid)
}

func TestAttestorsUnionAndFailure(t *testing.T) {
	sel := func(typ, v string) attestorFunc {
		return func(context.Context, int32) ([]*types.Selector, error) {
			return []*types.Selector{{Type: typ, Value: v}}, nil
		}
	}
	boom := errors.New("kubelet unreachable")
	fail := attestorFunc(func(context.Context, int32) ([]*types.Selector, error) { return nil, boom })

	got, err := Attestors{{"unix", sel("unix", "uid:0")}, {"k8s", sel("k8s", "ns:default")}}.Attest(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GetValue() != "uid:0" || got[1].GetValue() != "ns:default" {
		t.Fatalf("selectors = %v, want the union of both attestors", got)
	}

	got, err = Attestors{{"unix", sel("unix", "uid:0")}, {"k8s", fail}}.Attest(context.Background(), 1)
	if !errors.Is(err, boom) || got != nil {
		t.Fatalf("Attest = %v, %v; want no selectors and the k8s attestor's error", got, err)
	}
	if want := `agent: workload attestor "k8s": kubelet unreachable`; err.Error() != want {
		t.Fatalf("error = %q, want %q", err, want)
	}
}
