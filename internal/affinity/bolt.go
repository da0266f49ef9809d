package affinity

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"
)

// BoltLockTimeout is how long opening the store waits for another process's
// lock on the file before giving up.
const BoltLockTimeout = time.Second

// ErrLocked is wrapped by the error of opening a store file that another
// process holds.
var ErrLocked = errors.New("locked by another process (is another protobalance running?)")

// bucketAffinity holds one nested bucket per table; each maps the 16-byte
// masked address to 8 bytes of last seen (Unix seconds, big-endian) followed
// by the node name. Other top-level buckets (administrative state) may live
// beside it: see Manager.DB.
var bucketAffinity = []byte("affinity")

// boltStore is the embedded store: one bbolt file, one writer process.
type boltStore struct {
	db   *bolt.DB
	path string
}

func openBolt(path string) (*boltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: BoltLockTimeout})
	if errors.Is(err, bolterr.ErrTimeout) {
		return nil, fmt.Errorf("store %s is %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketAffinity)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	return &boltStore{db: db, path: path}, nil
}

func encodeValue(node string, seen int64) []byte {
	v := make([]byte, 8+len(node))
	binary.BigEndian.PutUint64(v, uint64(seen))
	copy(v[8:], node)
	return v
}

// load calls fn for every record of table, in one read transaction; node
// is only valid during the call.
func (b *boltStore) load(table string, fn func(k key, node []byte, seen int64)) error {
	err := b.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket(bucketAffinity).Bucket([]byte(table))
		if tb == nil {
			return nil
		}
		return tb.ForEach(func(kb, v []byte) error {
			k, ok := keyFromBytes(kb)
			if !ok || len(v) < 8 {
				return nil // not ours: skip rather than refuse to start
			}
			fn(k, v[8:], int64(binary.BigEndian.Uint64(v)))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store %s: table %q: %w", b.path, table, err)
	}
	return nil
}

// tableChanges is one table's batch.
type tableChanges struct {
	table   string
	changes []change
}

// write applies the bbolt part of every batch in one transaction (one
// fsync), keys sorted so bbolt appends pages instead of splitting them.
// It returns how many records it wrote.
func (b *boltStore) write(batches []tableChanges) (int, error) {
	n := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketAffinity)
		for _, tc := range batches {
			cs := slices.DeleteFunc(slices.Clone(tc.changes), func(c change) bool { return !c.bolt })
			if len(cs) == 0 {
				continue
			}
			slices.SortStableFunc(cs, func(a, b change) int {
				return cmp.Or(cmp.Compare(a.k.hi, b.k.hi), cmp.Compare(a.k.lo, b.k.lo))
			})
			tb, err := root.CreateBucketIfNotExists([]byte(tc.table))
			if err != nil {
				return err
			}
			for _, c := range cs {
				kb := c.k.bytes()
				if c.del {
					err = tb.Delete(kb[:])
				} else {
					err = tb.Put(kb[:], encodeValue(c.node, c.seen))
				}
				if err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store %s: %w", b.path, err)
	}
	return n, nil
}

func (b *boltStore) close() error { return b.db.Close() }
