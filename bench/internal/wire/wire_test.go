package wire

import (
	"bytes"
	"strings"
	"testing"
)

func TestRequestResponseSizes(t *testing.T) {
	for _, size := range []int{1, 8, 100, 4000} {
		req := Request(size, 1024)
		if len(req) < size || (size >= 8 && len(req) != size) {
			t.Errorf("Request(%d) has %d bytes", size, len(req))
		}
		if !strings.HasPrefix(string(req), "R 1024 ") || req[len(req)-1] != '\n' {
			t.Errorf("Request(%d) = %.20q...", size, req)
		}
	}
	resp := Response("n2", 1024)
	if len(resp) != 1024 || !bytes.HasPrefix(resp, []byte("n2 ")) || resp[1023] != '\n' {
		t.Errorf("Response: %d bytes, %.10q", len(resp), resp)
	}
}

// TestPayloadIsDeterministic checks that the same count and seed give the
// same bytes and checksum whatever the chunk size, across the block's wrap.
func TestPayloadIsDeterministic(t *testing.T) {
	const n = payloadSize + 12345
	var a, b bytes.Buffer
	sa, _ := NewSum("crc32c")
	sb, _ := NewSum("crc32c")
	if got, err := WritePayload(&a, sa, n, 99, 0); err != nil || got != n {
		t.Fatalf("WritePayload = %d, %v", got, err)
	}
	if _, err := WritePayload(&b, sb, n, 99, 4093); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) || !bytes.Equal(sa.Sum(nil), sb.Sum(nil)) {
		t.Fatal("payload or checksum depends on the chunk size")
	}
	var c bytes.Buffer
	WritePayload(&c, nil, n, 100, 0)
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Fatal("different seeds gave the same payload")
	}
}

func TestNewSum(t *testing.T) {
	for _, name := range []string{"crc32c", "sha256"} {
		if _, err := NewSum(name); err != nil {
			t.Errorf("NewSum(%q): %v", name, err)
		}
	}
	if _, err := NewSum("md5"); err == nil {
		t.Error("NewSum(md5) succeeded")
	}
}
