package fc

import (
	"bytes"
	"testing"
)

func TestNewRequestIDIsAUUIDOfItsRandomBytes(t *testing.T) {
	saved := randReader
	defer func() { randReader = saved }()
	cases := []struct {
		random []byte
		want   string
	}{
		{[]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, "00010203-0405-0607-0809-0a0b0c0d0e0f"},
		{bytes.Repeat([]byte{0xff}, 16), "ffffffff-ffff-ffff-ffff-ffffffffffff"},
		{[]byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0x10, 0x20, 0xa0, 0xb0, 1, 2, 3, 4, 5, 0xf6}, "deadbeef-0000-1020-a0b0-0102030405f6"},
	}
	for _, c := range cases {
		randReader = bytes.NewReader(c.random)
		if got := newRequestID(); got != c.want {
			t.Errorf("newRequestID() with %x = %q, want %q", c.random, got, c.want)
		}
	}
}
