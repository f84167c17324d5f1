package cli

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// etcdFiles writes a valid external-etcd file set into dir: the client
// certificate and its key, the CA bundle and a 32-byte KEK, all 0600.
type etcdFiles struct{ cert, key, otherKey, ca, kek string }

func writeEtcdFiles(t *testing.T, dir string) etcdFiles {
	t.Helper()
	f := newFixture(t)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	files := etcdFiles{
		cert: filepath.Join(dir, "etcd-client.crt"), key: filepath.Join(dir, "etcd-client.key"),
		otherKey: filepath.Join(dir, "other.key"), ca: filepath.Join(dir, "etcd-ca.crt"), kek: filepath.Join(dir, "kek"),
	}
	for p, data := range map[string][]byte{
		files.cert:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.leaf.Raw}),
		files.key:      pkcs8(f.leafKey),
		files.otherKey: pkcs8(f.otherKey),
		files.ca:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.ca.Raw}),
		files.kek:      []byte(strings.Repeat("k", 32)),
	} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// TestValidateReadsServerFiles: `server validate` reads the files `server
// run` reads before it serves (ca_kek_path, and the etcd block's
// cert_file, key_file and ca_file) and refuses each broken one with an
// error that names the setting and the file, without connecting to etcd.
func TestValidateReadsServerFiles(t *testing.T) {
	dir := t.TempDir()
	good := writeEtcdFiles(t, dir)
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing")
	notPEM := write("not-pem", []byte("not a PEM file\n"), 0o600)
	badCert := write("bad-cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")}), 0o600)
	looseKEK := write("kek-0644", []byte(strings.Repeat("k", 32)), 0o644)
	shortKEK := write("kek-short", []byte("0123456789abcdef"), 0o600)

	n := 0
	conf := func(endpoint string, f etcdFiles) string {
		n++
		src := fmt.Sprintf("server {\n trust_domain = \"example.org\"\n data_dir = %q\n", filepath.Join(dir, "data"))
		if f.kek != "" {
			src += fmt.Sprintf(" ca_kek_path = %q\n", f.kek)
		}
		src += "}\n"
		if endpoint != "" {
			src += fmt.Sprintf("etcd {\n endpoints = [%q]\n", endpoint)
			for k, v := range map[string]string{"cert_file": f.cert, "key_file": f.key, "ca_file": f.ca} {
				if v != "" {
					src += fmt.Sprintf(" %s = %q\n", k, v)
				}
			}
			src += "}\n"
		}
		return write(fmt.Sprintf("s%d.conf", n), []byte(src), 0o600)
	}
	with := func(edit func(*etcdFiles)) etcdFiles {
		f := good
		edit(&f)
		return f
	}
	const ep = "https://127.0.0.1:1" // never dialled
	tests := []struct {
		name string
		conf string
		want []string // all in stderr
	}{
		{"kek missing", conf(ep, with(func(f *etcdFiles) { f.kek = missing })),
			[]string{"ca_kek_path (--ca-kek-file) " + missing, "no such file", "head -c32 /dev/urandom"}},
		{"kek readable by others", conf(ep, with(func(f *etcdFiles) { f.kek = looseKEK })),
			[]string{"ca_kek_path (--ca-kek-file) " + looseKEK + " is readable by group or others", "chmod 600"}},
		{"kek not 32 bytes", conf(ep, with(func(f *etcdFiles) { f.kek = shortKEK })),
			[]string{"ca_kek_path (--ca-kek-file) " + shortKEK + " has 16 bytes, want 32"}},
		{"kek unset", conf(ep, with(func(f *etcdFiles) { f.kek = "" })),
			[]string{"set ca_kek_path / --ca-kek-file"}},
		{"cert missing", conf(ep, with(func(f *etcdFiles) { f.cert = missing })),
			[]string{"cert_file (--etcd-cert) " + missing, "no such file"}},
		{"cert not PEM", conf(ep, with(func(f *etcdFiles) { f.cert = notPEM })),
			[]string{"cert_file (--etcd-cert) " + notPEM + " holds no PEM CERTIFICATE block"}},
		{"cert does not parse", conf(ep, with(func(f *etcdFiles) { f.cert = badCert })),
			[]string{"cert_file (--etcd-cert) " + badCert + ": a CERTIFICATE block does not parse"}},
		{"key missing", conf(ep, with(func(f *etcdFiles) { f.key = missing })),
			[]string{"key_file (--etcd-key) " + missing, "no such file"}},
		{"key not PEM", conf(ep, with(func(f *etcdFiles) { f.key = notPEM })),
			[]string{"key_file (--etcd-key) " + notPEM + " holds no PEM PRIVATE KEY block"}},
		{"key of another certificate", conf(ep, with(func(f *etcdFiles) { f.key = good.otherKey })),
			[]string{"cert_file (--etcd-cert) " + good.cert + " and key_file (--etcd-key) " + good.otherKey, "the key must be the certificate's"}},
		{"ca missing", conf(ep, with(func(f *etcdFiles) { f.ca = missing })),
			[]string{"ca_file (--etcd-ca) " + missing, "no such file"}},
		{"ca not PEM", conf(ep, with(func(f *etcdFiles) { f.ca = notPEM })),
			[]string{"ca_file (--etcd-ca) " + notPEM + " holds no PEM CERTIFICATE block"}},
		{"ca does not parse", conf(ep, with(func(f *etcdFiles) { f.ca = badCert })),
			[]string{"ca_file (--etcd-ca) " + badCert + ": a CERTIFICATE block does not parse"}},
		{"no client certificate", conf(ep, with(func(f *etcdFiles) { f.cert, f.key = "", "" })),
			[]string{"no client certificate (--etcd-cert/--etcd-key) is set"}},
		{"plaintext endpoint", conf("http://127.0.0.1:1", good),
			[]string{"endpoint http://127.0.0.1:1 is plaintext"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "server", "validate", "--config", tt.conf)
			if code == 0 || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want a refusal", code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
		})
	}

	// The same files, all good, pass; so do flags naming them.
	if code, out, errOut := run(t, "server", "validate", "--config", conf(ep, good)); code != 0 || out != "configuration is valid\n" || errOut != "" {
		t.Errorf("good files: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut := run(t, "server", "validate", "--trust-domain", "example.org", "--etcd-endpoints", ep,
		"--etcd-cert", good.cert, "--etcd-key", missing, "--etcd-ca", good.ca, "--ca-kek-file", good.kek)
	if code == 0 || out != "" || !strings.Contains(errOut, "key_file (--etcd-key) "+missing) {
		t.Errorf("flags with a missing key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// With the embedded etcd the KEK is not read; validate says so.
	code, out, errOut = run(t, "server", "validate", "--config", conf("", with(func(f *etcdFiles) { f.kek = missing })))
	if code != 0 || out != "configuration is valid\n" || !strings.Contains(errOut, "warning: ca_kek_path is read only with an external etcd") {
		t.Errorf("embedded etcd with ca_kek_path: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
