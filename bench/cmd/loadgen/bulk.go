package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/protobalance/protobalance/bench/internal/wire"
)

func runBulk(args []string) (*Result, error) {
	var f common
	fs := newFlags("bulk", &f)
	streams := fs.Int("streams", 4, "total streams")
	c := fs.Int("c", 2, "concurrent streams")
	up := fs.Int64("up", 128<<20, "bytes each stream sends to the node")
	down := fs.Int64("down", 128<<20, "bytes each stream receives from the node")
	sum := fs.String("sum", "crc32c", "checksum: crc32c or sha256")
	if err := f.parse(fs, args); err != nil {
		return nil, err
	}
	if _, err := wire.NewSum(*sum); err != nil {
		return nil, err
	}
	if *streams <= 0 || *c <= 0 || *up < 0 || *down < 0 {
		return nil, errors.New("-streams and -c must be positive, -up and -down not negative")
	}
	var (
		t                      tally
		claimed                atomic.Int64
		bytes, badSums, missed atomic.Int64
	)
	deadline := time.Now().Add(f.max)
	elapsed, timedOut := workers(*c, f.max, func() func() bool {
		return func() bool {
			i := claimed.Add(1)
			if i > int64(*streams) {
				return false
			}
			s := stream{up: *up, down: *down, sum: *sum, seed: i * 7919}
			if err := s.run(&f, deadline.Add(f.timeout)); err != nil {
				t.fail(err)
			} else {
				t.success(0, "")
			}
			bytes.Add(s.moved)
			badSums.Add(s.badSums)
			missed.Add(s.missing)
			return true
		}
	})
	r := t.result(&Result{Mode: "bulk"}, f.target, elapsed)
	r.Rate = 0
	r.Bytes, r.BadSums, r.Short = bytes.Load(), badSums.Load(), missed.Load()
	r.Gbits = round3(float64(r.Bytes) * 8 / elapsed.Seconds() / 1e9)
	r.TimedOut = timedOut && r.OK+r.Errors < int64(*streams)
	return r, nil
}

// stream is one bulk connection; run fills in the outcome fields.
type stream struct {
	up, down int64
	sum      string
	seed     int64

	moved, badSums, missing int64
}

func (s *stream) run(f *common, deadline time.Time) error {
	conn, err := f.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	if _, err := fmt.Fprintf(conn, "B %d %d %s\n", s.up, s.down, s.sum); err != nil {
		return err
	}
	sentSum, _ := wire.NewSum(s.sum)
	werr := make(chan error, 1)
	var wrote int64
	go func() {
		n, err := wire.WritePayload(conn, sentSum, s.up, s.seed, 0)
		wrote = n
		if err == nil {
			err = conn.CloseWrite()
		}
		werr <- err
	}()
	recvSum, _ := wire.NewSum(s.sum)
	got, rerr := io.CopyN(recvSum, conn, s.down)
	s.missing += s.down - got
	if rerr != nil {
		<-werr
		s.missing += s.up - wrote
		return fmt.Errorf("reading payload: %w", rerr)
	}
	br := bufio.NewReader(conn)
	trailer, rerr := br.ReadString('\n')
	if rerr != nil {
		<-werr
		return fmt.Errorf("reading trailer: %w", rerr)
	}
	if err := <-werr; err != nil {
		s.missing += s.up - wrote
		return fmt.Errorf("sending payload: %w", err)
	}
	report, rerr := br.ReadString('\n')
	if rerr != nil {
		return fmt.Errorf("reading node's receive report: %w", rerr)
	}
	var bad []string
	if strings.TrimSpace(trailer) != fmt.Sprintf("%x", recvSum.Sum(nil)) {
		s.badSums++
		bad = append(bad, "download checksum mismatch")
	} else {
		s.moved += got
	}
	fields := strings.Fields(report)
	if len(fields) != 2 {
		return fmt.Errorf("malformed receive report %q", report)
	}
	count, _ := strconv.ParseInt(fields[0], 10, 64)
	if count < s.up {
		s.missing += s.up - count
	}
	if count != s.up || fields[1] != fmt.Sprintf("%x", sentSum.Sum(nil)) {
		s.badSums++
		bad = append(bad, fmt.Sprintf("upload mismatch: node got %d of %d bytes", count, s.up))
	} else {
		s.moved += count
	}
	if n, _ := br.Read(make([]byte, 1)); n != 0 {
		bad = append(bad, "extra bytes after the receive report")
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}
