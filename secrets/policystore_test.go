package secrets_test

import (
	"errors"
	"testing"

	"github.com/signet-id/signet/secrets"
)

func TestPolicyStore(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	ps, err := secrets.NewPolicyStore(testEtcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	events, err := ps.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := secrets.Policy{ID: "db", SPIFFEIDPattern: "spiffe://" + td.Name() + "/web/*", Path: "secret/db", Engine: secrets.EngineKV2, Field: "password"}
	created, err := ps.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if created.Revision == 0 {
		t.Fatal("created policy has no revision")
	}
	if _, err := ps.Create(ctx, p); !errors.Is(err, secrets.ErrPolicyExists) {
		t.Fatalf("second Create = %v, want ErrPolicyExists", err)
	}
	if _, err := ps.Create(ctx, secrets.Policy{ID: "bad"}); !errors.Is(err, secrets.ErrInvalidPolicy) {
		t.Fatalf("invalid Create = %v, want ErrInvalidPolicy", err)
	}
	got, err := ps.Get(ctx, "db")
	if err != nil || got.Path != p.Path || got.Field != p.Field || got.Revision != created.Revision {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := ps.Create(ctx, secrets.Policy{ID: "token", SPIFFEIDPattern: "spiffe://" + td.Name() + "/batch", Path: "auth/token/create",
		Engine: secrets.EngineLeased, Params: map[string]string{"ttl": "1h"}}); err != nil {
		t.Fatal(err)
	}
	list, err := ps.List(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "db" || list[1].ID != "token" || list[1].Params["ttl"] != "1h" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := ps.Delete(ctx, "db", created.Revision-1); !errors.Is(err, secrets.ErrConflict) {
		t.Fatalf("Delete at a stale revision = %v, want ErrConflict", err)
	}
	if err := ps.Delete(ctx, "db", created.Revision); err != nil {
		t.Fatal(err)
	}
	if err := ps.Delete(ctx, "db", 0); !errors.Is(err, secrets.ErrPolicyNotFound) {
		t.Fatalf("second Delete = %v, want ErrPolicyNotFound", err)
	}
	if _, err := ps.Get(ctx, "db"); !errors.Is(err, secrets.ErrPolicyNotFound) {
		t.Fatalf("Get after delete = %v", err)
	}
	want := []secrets.PolicyEvent{{ID: "db"}, {ID: "token"}, {ID: "db", Deleted: true}}
	for i, w := range want {
		ev := <-events
		if ev.ID != w.ID || ev.Deleted != w.Deleted {
			t.Fatalf("event %d = %+v, want %+v", i, ev, w)
		}
	}
}
