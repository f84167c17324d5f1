package eventlog

import (
	"bytes"
	"testing"
	"time"
)

func seedLines() [][]byte {
	var lines [][]byte
	prev := GenesisHash
	for i, k := range []Kind{KindCAPrepared, KindSVIDIssued, KindArchiveAnchor} {
		r := Record{
			V: 1, Seq: uint64(i + 1), Time: time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC),
			Kind: k, Subject: "spiffe://example.org/w", Serial: "0a", PrevHash: prev,
		}
		if k == KindArchiveAnchor {
			r.Details = map[string]string{DetailArchivedSeq: "1", DetailArchivedHash: prev}
		}
		r.Hash = ComputeHash(r)
		prev = r.Hash
		lines = append(lines, r.Line())
	}
	return lines
}

// FuzzVerifyExport feeds arbitrary exports to the parser and verifier:
// they must never panic, and a record that parses must re-encode to a line
// that parses to the same hash.
func FuzzVerifyExport(f *testing.F) {
	lines := seedLines()
	f.Add(bytes.Join(lines, []byte("\n")))
	f.Add(lines[1])
	f.Add([]byte(`{"v":1,"seq":1,"time":"2026-03-01T12:00:00Z","kind":"checkpoint","checkpoint":{"tree_size":0,"head_hash":"","sig_alg":"Ed25519","signature":"AAAA","chain":["AAAA"]},"prev_hash":"","hash":""}`))
	f.Add([]byte(`{"v":1,"details":{"a":"b","a":"c"}}`))
	f.Add([]byte("[[[[{}]]]]\n\n{}"))
	trailer := Trailer{V: TrailerVersion, Time: time.Date(2026, 3, 1, 12, 0, 3, 0, time.UTC), Subject: "spiffe://example.org",
		TreeSize: 3, HeadHash: GenesisHash, LogSize: 3, SigAlg: "ECDSA-SHA256", Signature: []byte{1}, Chain: [][]byte{{2}}}
	f.Add(append(append(bytes.Join(lines, []byte("\n")), '\n'), trailer.Line()...))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Verify(bytes.NewReader(data), nil, VerifyOptions{})
		_, _ = Verify(bytes.NewReader(data), nil, VerifyOptions{Partial: true, AllowUnsignedTail: true})
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			if tr, err := ParseTrailer(line); err == nil && !bytes.Equal(tr.Line(), line) {
				t.Fatalf("trailer does not re-encode to itself:\n%s\n%s", line, tr.Line())
			}
		}
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			r, err := ParseRecord(line)
			if err != nil {
				continue
			}
			h := ComputeHash(r)
			r.line = nil
			back, err := ParseRecord(r.Line())
			if err != nil {
				t.Fatalf("re-encoded record does not parse: %v\n%s", err, r.Line())
			}
			if ComputeHash(back) != h {
				t.Fatalf("hash changed on re-encoding:\n%s\n%s", line, r.Line())
			}
		}
	})
}
