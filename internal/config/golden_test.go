package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadFiles parses every file in testdata/bad. Each expected problem is
// written as a "# want: MESSAGE" comment on the line it must be reported
// at (several on one line are allowed), so the test checks the exact
// "FILE:LINE: message" of every error, and that there are no others.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".toml"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := wantedErrors(name, string(data))
			if len(want) == 0 {
				t.Fatal("file has no # want: comment")
			}
			c, err := Parse(name, data, "")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if c != nil {
				t.Error("Parse returned a Config with an error")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, not Errors: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("errors differ\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}

// wantedErrors collects "# want: MSG" comments as "FILE:LINE: MSG".
func wantedErrors(file, text string) []string {
	var out []string
	for i, line := range strings.Split(text, "\n") {
		parts := strings.Split(line, "# want: ")
		for _, msg := range parts[1:] {
			out = append(out, fmt.Sprintf("%s:%d: %s", file, i+1, strings.TrimSpace(msg)))
		}
	}
	return out
}
