package store

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"unsafe"
)

// special8 answers for eight bytes what strSpecial answers for each.
func TestSpecial8(t *testing.T) {
	want := func(b []byte) bool {
		for _, c := range b {
			if strSpecial[c] {
				return true
			}
		}
		return false
	}
	check := func(b []byte) {
		t.Helper()
		if got := special8(binary.LittleEndian.Uint64(b)); got != want(b) {
			t.Fatalf("special8(%q) = %v", b, got)
		}
	}
	for c := range 256 {
		for pos := range 8 {
			for _, fill := range []byte{'a', 0x7f, 0x80, 0xff, 0x20, 0x21, 0x23, 0x5b, 0x5d} {
				b := []byte{fill, fill, fill, fill, fill, fill, fill, fill}
				b[pos] = byte(c)
				check(b)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 8)
	for range 1 << 20 {
		binary.LittleEndian.PutUint64(b, r.Uint64())
		check(b)
	}
}

// A sealed job's key id is interned, and only 8 lower-case hex digits are
// one.
func TestKeyIDInterning(t *testing.T) {
	a, err := scanJobMeta([]byte(`{"sealed_key":"0123abcd"}`))
	b, err2 := scanJobMeta([]byte(`{"sealed_key":"0123abcd","sealed":"v1:0123abcd:AAAA"}`))
	if err != nil || err2 != nil || a.SealedKey != "0123abcd" || unsafe.StringData(a.SealedKey) != unsafe.StringData(b.SealedKey) {
		t.Fatalf("%+v %v %+v %v", a, err, b, err2)
	}
	for _, bad := range []string{`"0123ABCD"`, `"0123abc"`, `"0123abcde"`, `"\u0030123abcd"`, `5`, `"0123abcg"`} {
		if _, err := scanJobMeta([]byte(`{"sealed_key":` + bad + `}`)); err == nil {
			t.Errorf("sealed_key %s accepted", bad)
		}
	}
	if m, err := scanJobMeta([]byte(`{"sealed_key":null}`)); err != nil || m.SealedKey != "" {
		t.Fatalf("null: %+v %v", m, err)
	}
}

func TestSkipString(t *testing.T) {
	for s, want := range map[string]int{
		`"abc"x`: 5, `""`: 2, `"a\"b"`: 6, `"a\\"b"`: 5, `"a\\\"b"x`: 8, `"\\"`: 4,
	} {
		if got, err := skipString([]byte(s), 0); err != nil || got != want {
			t.Errorf("skipString(%s) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{`"abc`, `"a\"`, `"`, `"\\\"`} {
		if _, err := skipString([]byte(s), 0); err == nil {
			t.Errorf("skipString(%s) found an end", s)
		}
	}
}

// decodeAny decodes what encoding/json decodes into an any, to the same
// values, and refuses what it refuses.
func FuzzDecodeAny(f *testing.F) {
	for _, s := range []string{
		`[{"a":1,"b":[true,false,null],"c":"x\u00e9\n\"\\"},null,-0,1.5e3,"\ud800",[]]`,
		`{"a":{},"a":[]}`, `"\u2028<&>"`, "\"\xff\"", `1e400`, `[1,]`, `{"a" 1}`, ` [ 1 , 2 ] `, `01`, `[`, `"a`,
		`{"x":[[[[[]]]]]}`, `-`, `1.`, `tru`, `nul`, "\"\x01\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeAny(data)
		var want any
		wantErr := json.Unmarshal(data, &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decodeAny error %v, encoding/json error %v, for %q", err, wantErr, data)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeAny read %#v, encoding/json %#v, from %q", got, want, data)
		}
	})
}
