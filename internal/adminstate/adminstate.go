// Package adminstate persists the run-time changes an operator makes (node
// states and weights, listener switches) so that a restart does not undo
// them: a node taken red for maintenance does not come back green (F8).
//
// Each change is kept with the file's value of the same key at the time of
// the change. The precedence rule — a run-time change holds until the file
// changes that same key — then survives restarts: on Restore a change is
// applied only while the file still says what it said when the change was
// made, and Prune drops the changes whose key a reload changed.
//
// The state is a small JSON file written atomically (temporary file, fsync,
// rename) beside the affinity store; changes are rare, so one write per
// change costs nothing that matters. Nodes added or removed at run time are
// not kept: the node set comes from the file.
package adminstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/protobalance/protobalance/internal/cluster"
	"github.com/protobalance/protobalance/internal/config"
	"github.com/protobalance/protobalance/internal/proxy"
)

// Override is one run-time change.
type Override struct {
	Kind    string `json:"kind"` // "state", "weight" or "listener"
	Cluster string `json:"cluster,omitempty"`
	Node    string `json:"node,omitempty"`
	// Listener names the listener of a "listener" change.
	Listener string `json:"listener,omitempty"`
	// Value is the run-time value; File the file's value when it was set.
	Value string `json:"value"`
	File  string `json:"file"`
}

func (o Override) key() string { return o.Kind + "/" + o.Cluster + "/" + o.Node + "/" + o.Listener }

// State is the persisted set of overrides. The zero value is not usable;
// a nil *State records nothing (persistence off). Safe for concurrent use.
type State struct {
	path string
	log  *slog.Logger

	mu        sync.Mutex
	overrides map[string]Override
	shared    *sharer // nil unless Share connected it to Redis
}

// Open reads the state file at path; a missing file is an empty state.
func Open(path string, log *slog.Logger) (*State, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &State{path: path, log: log, overrides: map[string]Override{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("administrative state: %w", err)
	}
	var list []Override
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("administrative state %s: %w (move it away to start from the configuration alone)", path, err)
	}
	for _, o := range list {
		s.overrides[o.key()] = o
	}
	return s, nil
}

// fileValue is what cfg says for the key of o ("" when the key's object is
// gone from the file).
func fileValue(cfg *config.Config, o Override) (string, bool) {
	if o.Kind == "listener" {
		if l := cfg.Listener(o.Listener); l != nil {
			return l.Cluster, true
		}
		return "", false
	}
	c := cfg.Cluster(o.Cluster)
	if c == nil {
		return "", false
	}
	for _, n := range c.Nodes {
		if n.Name == o.Node {
			if o.Kind == "state" {
				return n.State, true
			}
			return strconv.Itoa(n.Weight), true
		}
	}
	return "", false
}

// Restore applies the overrides the file has not changed since to srv,
// which must not have started yet (so no connection sees the file's value
// first), and forgets the others.
func (s *State) Restore(srv *proxy.Server) error {
	if s == nil {
		return nil
	}
	cfg := srv.Config()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, o := range s.overrides {
		if fv, ok := fileValue(cfg, o); !ok || fv != o.File {
			s.log.Info("administrative change dropped: the file changed that key", "kind", o.Kind,
				"cluster", o.Cluster, "node", o.Node, "listener", o.Listener, "was", o.Value)
			delete(s.overrides, k)
			continue
		}
		if err := apply(srv, o); err != nil {
			s.log.Warn("administrative change not restored", "kind", o.Kind, "cluster", o.Cluster,
				"node", o.Node, "listener", o.Listener, "err", err)
			delete(s.overrides, k)
			continue
		}
		s.log.Info("administrative change restored", "kind", o.Kind, "cluster", o.Cluster,
			"node", o.Node, "listener", o.Listener, "value", o.Value)
	}
	return s.saveLocked()
}

func apply(srv *proxy.Server, o Override) error {
	if o.Kind == "listener" {
		return srv.SwitchListener(o.Listener, o.Value)
	}
	c := srv.Cluster(o.Cluster)
	if c == nil {
		return fmt.Errorf("no cluster %q", o.Cluster)
	}
	n, _ := c.Node(o.Node)
	if n == nil {
		return fmt.Errorf("cluster %q has no node %q", o.Cluster, o.Node)
	}
	switch o.Kind {
	case "state":
		st, err := cluster.ParseState(o.Value)
		if err != nil {
			return err
		}
		n.SetState(st)
	case "weight":
		w, err := strconv.Atoi(o.Value)
		if err != nil || w < 0 {
			return fmt.Errorf("bad weight %q", o.Value)
		}
		n.SetWeight(w)
	default:
		return fmt.Errorf("unknown kind %q", o.Kind)
	}
	return nil
}

// Record keeps a change just made at run time, with the value cfg (the
// running file configuration) has for the same key, and saves the state.
func (s *State) Record(cfg *config.Config, o Override) error {
	if s == nil {
		return nil
	}
	fv, _ := fileValue(cfg, o)
	o.File = fv
	s.mu.Lock()
	s.keepLocked(o)
	err := s.saveLocked()
	sh := s.shared
	s.mu.Unlock()
	if sh != nil {
		sh.publish(o, s.log.Warn)
	}
	return err
}

// keepLocked keeps o, or forgets its key when o sets the file's value.
func (s *State) keepLocked(o Override) {
	if o.Value == o.File {
		delete(s.overrides, o.key()) // back to what the file says
	} else {
		s.overrides[o.key()] = o
	}
}

// Prune forgets the changes whose key the new file configuration changed
// (a reload gave the file the last word) and saves the state.
func (s *State) Prune(cfg *config.Config) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, o := range s.overrides {
		if fv, ok := fileValue(cfg, o); !ok || fv != o.File {
			delete(s.overrides, k)
		}
	}
	return s.saveLocked()
}

// Overrides lists the kept changes, sorted.
func (s *State) Overrides() []Override {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked()
}

func (s *State) sortedLocked() []Override {
	out := make([]Override, 0, len(s.overrides))
	for _, o := range s.overrides {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

// saveLocked writes the state atomically; with no override left it
// removes the file.
func (s *State) saveLocked() error {
	if len(s.overrides) == 0 {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.MarshalIndent(s.sortedLocked(), "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("administrative state: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		return fmt.Errorf("administrative state: %w", err)
	}
	return nil
}

// PathFor is where the state of a store path is kept: beside it.
func PathFor(storePath string) string { return storePath + ".admin.json" }
