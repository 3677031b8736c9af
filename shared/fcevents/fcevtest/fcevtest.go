// Package fcevtest proves an event type against a JSON fixture the way aws-lambda-go's events/test
// does: decode the fixture into the type, encode it again, and compare the two as JSON. A field the type
// forgot, or one it rewrites, fails; comparing two decodes with DeepEqual could not see either.
package fcevtest

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// RoundTripFile reads a fixture and checks it with RoundTrip.
func RoundTripFile(t testing.TB, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	RoundTrip(t, raw, v)
}

// RoundTrip decodes raw into v (a pointer), encodes v, and fails unless the result equals raw as JSON.
func RoundTrip(t testing.TB, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decoding the fixture into %T: %v", v, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %T: %v", v, err)
	}
	var want, got any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("%T does not give back its fixture:\n fixture: %s\n encoded: %s", v, raw, out)
	}
}
