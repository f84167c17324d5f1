package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/signet-id/signet/conformance/podmantest"
	"github.com/signet-id/signet/internal/container/containertest"
)

// TestPodmanContainer attests a process in a real container through
// podman's Docker-compatible Engine API, negotiated and pinned versions.
func TestPodmanContainer(t *testing.T) {
	p := podmantest.Start(t)
	const image = "localhost/signet-sleeper:test"
	p.Import(image, p.BuildSleeper())
	id, pid := p.RunContainer(image, "--label", "app=web", "--label", "tier=front", "--env", "FOO=bar=baz")
	for _, version := range []string{"", "1.40"} {
		t.Run("version "+version, func(t *testing.T) {
			a, err := New(Config{SocketPath: p.Socket, Version: version})
			if err != nil {
				t.Fatal(err)
			}
			sel, err := a.Attest(context.Background(), pid)
			if err != nil {
				t.Fatal(err)
			}
			got := containertest.Values(t, SelectorType, sel)
			for _, want := range []string{"label:app:web", "label:tier:front", "env:FOO=bar=baz", "env:HOSTNAME=" + id[:12], "image_id:" + image} {
				if !slices.Contains(got, want) {
					t.Errorf("selectors %q lack %q", got, want)
				}
			}
			for _, v := range got {
				if !strings.HasPrefix(v, "label:") && !strings.HasPrefix(v, "env:") && !strings.HasPrefix(v, "image_id:") {
					t.Errorf("unexpected selector %q", v)
				}
			}
		})
	}
	t.Run("not in a container", func(t *testing.T) {
		a, err := New(Config{SocketPath: p.Socket})
		if err != nil {
			t.Fatal(err)
		}
		sel, err := a.Attest(context.Background(), int32(os.Getpid()))
		if err != nil || sel != nil {
			t.Fatalf("Attest(self) = %v, %v; want no selectors", sel, err)
		}
	})
	t.Run("container unknown to the engine", func(t *testing.T) {
		other := strings.Repeat("ab", 32)
		a, err := New(Config{SocketPath: p.Socket, ProcRoot: containertest.ProcRoot(t, 77, "0::/system.slice/docker-"+other+".scope\n")})
		if err != nil {
			t.Fatal(err)
		}
		sel, err := a.Attest(context.Background(), 77)
		if !errors.Is(err, ErrNoSuchContainer) || sel != nil {
			t.Fatalf("Attest = %v, %v; want ErrNoSuchContainer", sel, err)
		}
	})
}

func TestNoEngine(t *testing.T) {
	a, err := New(Config{
		SocketPath: "unix://" + filepath.Join(t.TempDir(), "docker.sock"),
		ProcRoot:   containertest.ProcRoot(t, 77, "1:name=systemd:/docker/"+strings.Repeat("cd", 32)+"\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if sel, err := a.Attest(context.Background(), 77); !errors.Is(err, ErrEngine) || sel != nil {
		t.Fatalf("Attest = %v, %v; want ErrEngine", sel, err)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []Config{
		{SocketPath: "tcp://127.0.0.1:2375"},
		{SocketPath: "/var/run/docker.sock"},
		{Version: "latest"},
		{Version: "2.0"},
	} {
		if _, err := New(tc); err == nil {
			t.Errorf("New(%+v) accepted", tc)
		}
	}
}
