package adminstate

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/protobalance/protobalance/internal/config"
)

func testConfig(t *testing.T, nodeState string) *config.Config {
	t.Helper()
	text := `[[listener]]
name = "l"
bind = "127.0.11.1:0"
cluster = "c"
[[cluster]]
name = "c"
[[cluster.node]]
name = "a"
address = "127.0.11.2:1"
state = "` + nodeState + `"
`
	cfg, err := config.Parse("t.toml", []byte(text), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Changes are kept with the file's value; a change back to the file's
// value, or a file that changed the key, drops them; the file disappears
// when nothing is kept.
func TestRecordPruneReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pb.db.admin.json")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	green := testConfig(t, "green")
	if err := s.Record(green, Override{Kind: "state", Cluster: "c", Node: "a", Value: "red"}); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o := s2.Overrides(); len(o) != 1 || o[0].Value != "red" || o[0].File != "green" {
		t.Fatalf("reopened: %+v", o)
	}
	if err := s2.Prune(green); err != nil || len(s2.Overrides()) != 1 {
		t.Fatalf("prune with the same file dropped the change: %v %+v", err, s2.Overrides())
	}
	if err := s2.Prune(testConfig(t, "yellow")); err != nil || len(s2.Overrides()) != 0 {
		t.Fatalf("prune after the file changed the key kept it: %v %+v", err, s2.Overrides())
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("state file left behind with nothing to keep: %v", err)
	}
	s2.Record(green, Override{Kind: "weight", Cluster: "c", Node: "a", Value: "1"})
	if len(s2.Overrides()) != 0 {
		t.Fatal("a change to the file's own value was kept")
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pb.db.admin.json")
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := Open(path, nil); err == nil {
		t.Fatal("a corrupt state file was accepted")
	}
}

func TestNilStateRecordsNothing(t *testing.T) {
	var s *State
	if err := s.Record(nil, Override{}); err != nil || s.Overrides() != nil || s.Prune(nil) != nil || s.Restore(nil) != nil {
		t.Fatal("a nil state must be a no-op")
	}
}
