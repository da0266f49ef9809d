package affinity

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openT(t *testing.T, cfg Config) *Manager {
	t.Helper()
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tableT(t *testing.T, m *Manager, name string, o Options) *Table {
	t.Helper()
	tb, err := m.Table(name, o)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// stopFlusher stops the background flusher; crash then closes the file
// without flushing, as a killed process leaves it.
func (m *Manager) stopFlusher() {
	close(m.stop)
	m.wg.Wait()
}

func (m *Manager) crash() {
	m.closed.Do(func() { m.bolt.close() })
}

func boltKeys(t *testing.T, path, table string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketAffinity).Bucket([]byte(table)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

func TestBoltSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pb.db")
	now := time.Now()
	m := openT(t, Config{Path: path})
	web := tableT(t, m, "web", DefaultOptions())
	ftp := tableT(t, m, "ftp", Options{MaskV4: 24, MaskV6: 64})
	for i := range 100 {
		web.Record(ip(fmt.Sprintf("10.0.0.%d", i)), fmt.Sprint("n", i%3), now)
	}
	ftp.Record(ip("2001:db8:1:2::5"), "ftp1", now)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m = openT(t, Config{Path: path})
	defer m.Close()
	web = tableT(t, m, "web", DefaultOptions())
	ftp = tableT(t, m, "ftp", Options{MaskV4: 24, MaskV6: 64})
	if web.Len() != 100 || ftp.Len() != 1 {
		t.Fatalf("restored %d and %d records, want 100 and 1", web.Len(), ftp.Len())
	}
	if node, ok := web.Lookup(ip("10.0.0.7"), now); !ok || node != "n1" {
		t.Fatalf("10.0.0.7: %q %v", node, ok)
	}
	if node, ok := ftp.Lookup(ip("2001:db8:1:2::99"), now); !ok || node != "ftp1" {
		t.Fatalf("ftp: %q %v", node, ok)
	}
}

func TestBoltRestoreDropsExpiredAndExcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pb.db")
	o := Options{MaskV4: 32, MaskV6: 128, TTL: time.Hour, Max: 10}
	now := time.Now()
	m := openT(t, Config{Path: path})
	tb := tableT(t, m, "web", o)
	for i := range 5 {
		tb.Record(ip(fmt.Sprintf("10.0.1.%d", i)), "old", now.Add(-2*time.Hour))
	}
	for i := range 8 {
		tb.Record(ip(fmt.Sprintf("10.0.2.%d", i)), "new", now.Add(time.Duration(i-8)*time.Second))
	}
	m.Close()
	if n := boltKeys(t, path, "web"); n != 10 {
		t.Fatalf("file holds %d records, want 10 (Max)", n)
	}
	o.Max = 6 // a smaller table after a config change
	m = openT(t, Config{Path: path})
	tb = tableT(t, m, "web", o)
	s := tb.Stats()
	if s.Records != 6 || s.Expirations != 2 || s.Evictions != 2 {
		t.Fatalf("restored %+v; want 6 records, 2 expired (of the 5 old, 3 were evicted before), 2 evicted", s)
	}
	if _, ok := tb.Lookup(ip("10.0.2.7"), now); !ok {
		t.Fatal("newest record lost")
	}
	if _, ok := tb.Lookup(ip("10.0.2.1"), now); ok {
		t.Fatal("an evicted record came back")
	}
	m.Close()
	if n := boltKeys(t, path, "web"); n != 6 {
		t.Fatalf("file holds %d records after restore, want 6", n)
	}
}

func TestBoltLockedFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pb.db")
	m := openT(t, Config{Path: path})
	defer m.Close()
	start := time.Now()
	_, err := Open(Config{Path: path})
	took := time.Since(start)
	want := "store " + path + " is locked by another process (is another protobalance running?)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v; want %q", err, want)
	}
	if took > BoltLockTimeout+time.Second {
		t.Fatalf("second Open took %v", took)
	}
}

func TestBoltBatchesBursts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pb.db")
	m := openT(t, Config{Path: path})
	tb := tableT(t, m, "web", DefaultOptions())
	now := time.Now()
	start := time.Now()
	for i := range 10000 {
		tb.Record(ip(fmt.Sprintf("10.1.%d.%d", i/256, i%256)), "n1", now)
	}
	burst := time.Since(start)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	s := m.Stats()
	t.Logf("10,000 Records in %v; %d transactions, %d records written", burst, s.Flushes, s.Written)
	if s.Written != 10000 || s.Flushes > 5 {
		t.Fatalf("stats %+v; want 10000 written in at most 5 transactions", s)
	}
	if n := boltKeys(t, path, "web"); n != 10000 {
		t.Fatalf("file holds %d", n)
	}
}

// TestBoltCrashLoss: what the flusher wrote survives a crash; what was
// recorded after the last flush is the loss, bounded by FlushInterval.
func TestBoltCrashLoss(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pb.db")
	m := openT(t, Config{Path: path})
	tb := tableT(t, m, "web", DefaultOptions())
	now := time.Now()
	start := time.Now()
	tb.Record(ip("10.0.0.1"), "n1", now)
	for m.Stats().Written == 0 {
		if time.Since(start) > 2*time.Second {
			t.Fatal("the flusher did not write within 2 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("flushed %v after Record (FlushInterval %v)", time.Since(start), FlushInterval)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("first flush after %v", took)
	}
	m.stopFlusher()
	tb.Record(ip("10.0.0.2"), "n2", now) // learnt in "the last interval"
	m.crash()

	m = openT(t, Config{Path: path})
	defer m.Close()
	tb = tableT(t, m, "web", DefaultOptions())
	if _, ok := tb.Lookup(ip("10.0.0.1"), now); !ok {
		t.Fatal("a flushed record was lost in the crash")
	}
	if _, ok := tb.Lookup(ip("10.0.0.2"), now); ok {
		t.Fatal("an unflushed record survived: the test did not simulate a crash")
	}
}

func TestBoltAdminBucketBeside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pb.db")
	m := openT(t, Config{Path: path})
	tableT(t, m, "web", DefaultOptions()).Record(ip("10.0.0.1"), "n1", time.Now())
	err := m.DB().Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("admin"))
		if err != nil {
			return err
		}
		return b.Put([]byte("web/n1/state"), []byte("yellow"))
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	m = openT(t, Config{Path: path})
	defer m.Close()
	var v []byte
	m.DB().View(func(tx *bolt.Tx) error {
		v = append(v, tx.Bucket([]byte("admin")).Get([]byte("web/n1/state"))...)
		return nil
	})
	if string(v) != "yellow" || tableT(t, m, "web", DefaultOptions()).Len() != 1 {
		t.Fatalf("admin %q", v)
	}
}

func TestMemoryOnlyManager(t *testing.T) {
	m := openT(t, Config{})
	defer m.Close()
	tb := tableT(t, m, "web", DefaultOptions())
	tb.Record(ip("10.0.0.1"), "n1", time.Now())
	if tb.persist || m.DB() != nil {
		t.Fatal("memory-only manager persists")
	}
	if _, err := m.Table("bad", Options{MaskV4: 40}); err == nil {
		t.Fatal("mask 40 accepted")
	}
}

// After Close (a binary upgrade hands the file to the new process) the
// tables keep serving from memory, queue nothing, and a new Manager can
// open the file with what was flushed at Close.
func TestTablesUsableAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pb.db")
	m := openT(t, Config{Path: path})
	tb := tableT(t, m, "web", DefaultOptions())
	now := time.Now()
	a := netip.MustParseAddr("192.0.2.1")
	tb.Record(a, "n1", now)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	next := openT(t, Config{Path: path}) // the lock is free at once
	defer next.Close()
	for i := range 5000 {
		tb.Record(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "n2", now)
	}
	tb.Forget(a)
	if n, ok := tb.Lookup(netip.MustParseAddr("10.0.0.7"), now); !ok || n != "n2" {
		t.Fatalf("lookup after Close = %q, %v; want n2", n, ok)
	}
	for i := range tb.shards {
		if len(tb.shards[i].ops) != 0 {
			t.Fatalf("shard %d queued %d ops after Close", i, len(tb.shards[i].ops))
		}
	}
	if got := tableT(t, next, "web", DefaultOptions()); got.Len() != 1 {
		t.Fatalf("new manager restored %d records, want the 1 flushed at Close", got.Len())
	}
}
