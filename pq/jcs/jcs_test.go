package jcs

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"testing"
)

// Vectors of RFC 8785 Appendix B (IEEE 754 bits → canonical number).
func TestNumbersRFC8785(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	for _, tt := range tests {
		got, err := appendNumber(nil, math.Float64frombits(tt.bits))
		if err != nil {
			t.Errorf("%016x: %v", tt.bits, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%016x: got %s, want %s", tt.bits, got, tt.want)
		}
	}
	for _, bits := range []uint64{0x7fffffffffffffff, 0x7ff0000000000000, 0xfff0000000000000} {
		if _, err := appendNumber(nil, math.Float64frombits(bits)); err == nil {
			t.Errorf("%016x accepted", bits)
		}
	}
}

func TestTransformRFC8785(t *testing.T) {
	tests := []struct{ in, want string }{
		// §3.2.2 example.
		{`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		// §3.2.3 sorting by UTF-16 code units.
		{`{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{`[56,{"d":true,"10":null,"1":[]}]`, `[56,{"1":[],"10":null,"d":true}]`},
		{` { } `, `{}`},
		{`[]`, `[]`},
		{`"<>&\u2028"`, "\"<>&\u2028\""},
		{`-0`, `0`},
		{`1.0e2`, `100`},
		{`[1e400000000000000000000000000000000000000000000e-1]`, ``},
	}
	for _, tt := range tests {
		got, err := Transform([]byte(tt.in))
		if tt.want == "" {
			if err == nil {
				t.Errorf("%s: accepted", tt.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.in, got, tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	deep := ""
	for range MaxDepth + 1 {
		deep += "["
	}
	for range MaxDepth + 1 {
		deep += "]"
	}
	for _, in := range []string{
		``, ` `, `{`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{"a":1 "b":2}`, `01`, `1.`, `.5`, `1e`, `+1`, `-`,
		`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"\x"`, "\"a\tb\"", "\"\xff\"", `nul`, `truex`,
		`{"a":1,"a":2}`, `1 2`, `1e999`, `-1e999`, `NaN`, `"\u12"`, deep,
	} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: got %v", in, err)
		}
	}
}

func TestMarshalGoValues(t *testing.T) {
	type s struct {
		B string `json:"b"`
		A int    `json:"a"`
	}
	v := map[string]any{
		"int": 3, "i64": int64(-4), "u64": uint64(5), "num": json.Number("6.50"), "strs": []string{"x", "y"},
		"struct": s{B: "b", A: 1}, "f32": float32(0.5),
	}
	got, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"f32":0.5,"i64":-4,"int":3,"num":6.5,"strs":["x","y"],"struct":{"a":1,"b":"b"},"u64":5}`
	if string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if _, err := Marshal(map[string]any{"x": math.NaN()}); err == nil {
		t.Fatal("NaN accepted")
	}
	if _, err := Marshal("\xff"); err == nil {
		t.Fatal("invalid UTF-8 accepted")
	}
}

func FuzzTransform(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,"x\u0001",true,null,{"b":-0.000001}]}`, `[1e21,1e-7,123456789012345678901234567890]`, `"\ud83d\ude00"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Transform(in)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("output is not JSON: %s", out)
		}
		again, err := Transform(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not idempotent: %s → %s (%v)", out, again, err)
		}
		var a, b any
		if err := json.Unmarshal(in, &a); err != nil {
			t.Fatalf("encoding/json rejects accepted input %q: %v", in, err)
		}
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("value changed: %#v → %#v", a, b)
		}
	})
}

func FuzzNumber(f *testing.F) {
	for _, x := range []float64{0, 1, -1, 1e21, 1e-7, 5e-324, 123.456, 1e300} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x float64) {
		out, err := appendNumber(nil, x)
		if math.IsNaN(x) || math.IsInf(x, 0) {
			if err == nil {
				t.Fatal("accepted non-finite")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		back, err := strconv.ParseFloat(string(out), 64)
		if err != nil || back != x && !(x == 0 && back == 0) {
			t.Fatalf("%v → %s → %v (%v)", x, out, back, err)
		}
		if x == math.Trunc(x) && math.Abs(x) < 1e21 {
			if want := strconv.FormatFloat(x, 'f', -1, 64); want != string(out) && !(x == 0) {
				t.Fatalf("integer %v → %s, want %s", x, out, want)
			}
		}
	})
}
