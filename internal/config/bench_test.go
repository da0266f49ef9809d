package config

import (
	"os"
	"testing"
)

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile("../../examples/protobalance.toml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("protobalance.toml", data, ""); err != nil {
			b.Fatal(err)
		}
	}
}
