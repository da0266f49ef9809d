package adminstate

// Sharing run-time changes between twin balancers through Redis (F9).
//
// Every change made through one balancer's API is written to a Redis hash
// (the current set, read by a balancer when it starts) and published on a
// channel (applied by the running twins at once). The last change wins. A
// change whose key the receiving twin's file has changed since is not
// applied there (the same precedence rule as on one balancer). While Redis
// is unreachable, changes stay local: sharing is best effort, logged once
// per outage, and never delays the API call by more than sharedTimeout.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/protobalance/protobalance/internal/proxy"
)

const (
	sharedHash    = "protobalance:admin"
	sharedChannel = "protobalance:admin:changes"
	sharedTimeout = 200 * time.Millisecond
)

// message is one published change.
type message struct {
	Origin string   `json:"origin"`
	Change Override `json:"change"`
}

// sharer is the Redis side of a State.
type sharer struct {
	rdb    *redis.Client
	origin string // this process, so that it ignores its own messages
	srv    *proxy.Server
	sub    *redis.PubSub
	wg     sync.WaitGroup
	down   atomic.Bool // an outage is logged once
}

// Share connects the state to Redis at url: the changes the twins made are
// applied to srv now (those the file has not changed since), later ones as
// they are published, and this balancer's changes are published. Call it
// before srv starts; Close stops it.
func (s *State) Share(url string, srv *proxy.Server) error {
	if s == nil || url == "" {
		return nil
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return fmt.Errorf("[store] redis: %w", err)
	}
	host, _ := os.Hostname()
	sh := &sharer{rdb: redis.NewClient(opt), origin: fmt.Sprintf("%s/%d", host, os.Getpid()), srv: srv}
	ctx, cancel := context.WithTimeout(context.Background(), 2*sharedTimeout)
	all, err := sh.rdb.HGetAll(ctx, sharedHash).Result()
	cancel()
	if err != nil {
		s.log.Warn("administrative changes of twins unavailable (Redis); sharing resumes when it answers", "err", err)
		sh.down.Store(true)
	}
	for _, v := range all {
		var o Override
		if json.Unmarshal([]byte(v), &o) == nil {
			s.applyShared(srv, o)
		}
	}
	sh.sub = sh.rdb.Subscribe(context.Background(), sharedChannel)
	s.mu.Lock()
	s.shared = sh
	s.mu.Unlock()
	sh.wg.Add(1)
	go s.receive(sh)
	return nil
}

// receive applies the twins' changes as they are published.
func (s *State) receive(sh *sharer) {
	defer sh.wg.Done()
	for msg := range sh.sub.Channel() {
		var m message
		if json.Unmarshal([]byte(msg.Payload), &m) != nil || m.Origin == sh.origin {
			continue
		}
		s.applyShared(sh.srv, m.Change)
	}
}

// applyShared applies a twin's change here and keeps it like a local one,
// unless this balancer's file says otherwise for that key than the twin's
// file did (then this file has the last word here).
func (s *State) applyShared(srv *proxy.Server, o Override) {
	if fv, ok := fileValue(srv.Config(), o); !ok || fv != o.File {
		return
	}
	if err := apply(srv, o); err != nil {
		s.log.Warn("administrative change from a twin not applied", "kind", o.Kind, "cluster", o.Cluster,
			"node", o.Node, "listener", o.Listener, "err", err)
		return
	}
	s.log.Info("administrative change from a twin applied", "kind", o.Kind, "cluster", o.Cluster,
		"node", o.Node, "listener", o.Listener, "value", o.Value)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keepLocked(o)
	if err := s.saveLocked(); err != nil {
		s.log.Error("saving the administrative state", "err", err)
	}
}

// publish sends a local change to the twins (best effort).
func (sh *sharer) publish(o Override, log func(msg string, args ...any)) {
	data, err := json.Marshal(message{Origin: sh.origin, Change: o})
	if err != nil {
		return
	}
	change, _ := json.Marshal(o)
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	_, err = sh.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, sharedHash, o.key(), change)
		p.Publish(ctx, sharedChannel, data)
		return nil
	})
	if err != nil {
		if !sh.down.Swap(true) {
			log("administrative change not shared with twins (Redis); it holds here", "err", err)
		}
		return
	}
	sh.down.Store(false)
}

// Close stops sharing; safe on a State that never shared.
func (s *State) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	sh := s.shared
	s.shared = nil
	s.mu.Unlock()
	if sh == nil {
		return nil
	}
	sh.sub.Close()
	sh.wg.Wait()
	return sh.rdb.Close()
}
