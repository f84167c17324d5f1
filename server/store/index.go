package store

import (
	"maps"
	"slices"
	"strings"

	"github.com/google/btree"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

type selKey struct{ Type, Value string }

func selKeys(sels []*types.Selector) []selKey {
	out := make([]selKey, 0, len(sels))
	for _, s := range sels {
		k := selKey{s.GetType(), s.GetValue()}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// entryRec is an indexed entry. e is never modified once indexed.
type entryRec struct {
	e        *types.Entry
	modRev   int64
	id       string
	spiffeID string
	parentID string
	sels     []selKey
	feds     []string
}

type agentRec struct {
	a      *types.Agent
	modRev int64
	id     string
	sels   []selKey
}

type bundleRec struct {
	b      *types.Bundle
	modRev int64
}

// index is the in-memory view of the watched prefixes at revision rev.
type index struct {
	rev int64

	entries    map[string]*entryRec
	entryIDs   *btree.BTreeG[string]
	byParent   map[string]map[string]*entryRec
	bySpiffe   map[string]map[string]*entryRec
	bySelector map[selKey]map[string]*entryRec
	// aliasesBySelector indexes node-alias entries (parent = server ID).
	aliasesBySelector map[selKey]map[string]*entryRec

	agents           map[string]*agentRec
	agentIDs         *btree.BTreeG[string]
	agentsBySelector map[selKey]map[string]*agentRec

	bundles   map[string]*bundleRec
	bundleTDs *btree.BTreeG[string]
}

func newIndex() *index {
	less := func(a, b string) bool { return a < b }
	return &index{
		entries:           make(map[string]*entryRec),
		entryIDs:          btree.NewG(32, less),
		byParent:          make(map[string]map[string]*entryRec),
		bySpiffe:          make(map[string]map[string]*entryRec),
		bySelector:        make(map[selKey]map[string]*entryRec),
		aliasesBySelector: make(map[selKey]map[string]*entryRec),
		agents:            make(map[string]*agentRec),
		agentIDs:          btree.NewG(32, less),
		agentsBySelector:  make(map[selKey]map[string]*agentRec),
		bundles:           make(map[string]*bundleRec),
		bundleTDs:         btree.NewG(32, less),
	}
}

func addTo[K comparable, V any](m map[K]map[string]V, k K, id string, v V) {
	set := m[k]
	if set == nil {
		set = make(map[string]V)
		m[k] = set
	}
	set[id] = v
}

func removeFrom[K comparable, V any](m map[K]map[string]V, k K, id string) {
	if set := m[k]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

func (x *index) putEntry(r *entryRec, serverID string) {
	x.removeEntry(r.id, serverID)
	x.entries[r.id] = r
	x.entryIDs.ReplaceOrInsert(r.id)
	addTo(x.byParent, r.parentID, r.id, r)
	addTo(x.bySpiffe, r.spiffeID, r.id, r)
	for _, k := range r.sels {
		addTo(x.bySelector, k, r.id, r)
		if r.parentID == serverID {
			addTo(x.aliasesBySelector, k, r.id, r)
		}
	}
}

func (x *index) removeEntry(id, serverID string) {
	r, ok := x.entries[id]
	if !ok {
		return
	}
	delete(x.entries, id)
	x.entryIDs.Delete(id)
	removeFrom(x.byParent, r.parentID, id)
	removeFrom(x.bySpiffe, r.spiffeID, id)
	for _, k := range r.sels {
		removeFrom(x.bySelector, k, id)
		if r.parentID == serverID {
			removeFrom(x.aliasesBySelector, k, id)
		}
	}
}

func (x *index) putAgent(r *agentRec) {
	x.removeAgent(r.id)
	x.agents[r.id] = r
	x.agentIDs.ReplaceOrInsert(r.id)
	for _, k := range r.sels {
		addTo(x.agentsBySelector, k, r.id, r)
	}
}

func (x *index) removeAgent(id string) {
	r, ok := x.agents[id]
	if !ok {
		return
	}
	delete(x.agents, id)
	x.agentIDs.Delete(id)
	for _, k := range r.sels {
		removeFrom(x.agentsBySelector, k, id)
	}
}

func (x *index) putBundle(td string, r *bundleRec) {
	x.bundles[td] = r
	x.bundleTDs.ReplaceOrInsert(td)
}

func (x *index) removeBundle(td string) {
	delete(x.bundles, td)
	x.bundleTDs.Delete(td)
}

// keyKind splits a key below the store prefix into its directory and name.
func (s *Store) keyKind(key string) (dir, name string) {
	rest, ok := strings.CutPrefix(key, s.prefix)
	if !ok {
		return "", ""
	}
	for _, d := range []string{entriesDir, agentsDir, bundlesDir} {
		if name, ok := strings.CutPrefix(rest, d); ok {
			return d, name
		}
	}
	return "", ""
}

func (s *Store) applyPut(x *index, kv *mvccpb.KeyValue) {
	dir, name := s.keyKind(string(kv.Key))
	switch dir {
	case entriesDir:
		e := new(types.Entry)
		if err := decode(kv.Value, e); err != nil {
			s.log.Error("store: skipping undecodable entry", "key", string(kv.Key), "error", err)
			return
		}
		x.putEntry(newEntryRec(e, kv.ModRevision), s.serverID)
	case agentsDir:
		a := new(types.Agent)
		if err := decode(kv.Value, a); err != nil {
			s.log.Error("store: skipping undecodable agent", "key", string(kv.Key), "error", err)
			return
		}
		x.putAgent(&agentRec{a: a, modRev: kv.ModRevision, id: name, sels: selKeys(a.Selectors)})
	case bundlesDir:
		b := new(types.Bundle)
		if err := decode(kv.Value, b); err != nil {
			s.log.Error("store: skipping undecodable bundle", "key", string(kv.Key), "error", err)
			return
		}
		x.putBundle(name, &bundleRec{b: b, modRev: kv.ModRevision})
	}
}

func (s *Store) applyDelete(x *index, key string) {
	dir, name := s.keyKind(key)
	switch dir {
	case entriesDir:
		x.removeEntry(name, s.serverID)
	case agentsDir:
		x.removeAgent(name)
	case bundlesDir:
		x.removeBundle(name)
	}
}

func newEntryRec(e *types.Entry, modRev int64) *entryRec {
	return &entryRec{
		e:        e,
		modRev:   modRev,
		id:       e.Id,
		spiffeID: protoIDString(e.SpiffeId),
		parentID: protoIDString(e.ParentId),
		sels:     selKeys(e.Selectors),
		feds:     dedupe(e.FederatesWith),
	}
}

func protoIDString(id *types.SPIFFEID) string {
	if id == nil {
		return ""
	}
	return "spiffe://" + id.TrustDomain + id.Path
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// changeRecorder collects what one batch of watch events changed.
type changeRecorder struct {
	s       *Store
	entries map[string][2]*entryRec // id -> {before, after}
	agents  map[string]struct{}
	bundles map[string]struct{}
}

func newChangeRecorder(s *Store) *changeRecorder {
	return &changeRecorder{
		s:       s,
		entries: make(map[string][2]*entryRec),
		agents:  make(map[string]struct{}),
		bundles: make(map[string]struct{}),
	}
}

func (c *changeRecorder) before(x *index, key string) {
	dir, name := c.s.keyKind(key)
	switch dir {
	case entriesDir:
		if _, seen := c.entries[name]; !seen {
			c.entries[name] = [2]*entryRec{x.entries[name], nil}
		}
	case agentsDir:
		c.agents[name] = struct{}{}
	case bundlesDir:
		c.bundles[name] = struct{}{}
	}
}

func (c *changeRecorder) after(x *index, key string) {
	if dir, name := c.s.keyKind(key); dir == entriesDir {
		pair := c.entries[name]
		pair[1] = x.entries[name]
		c.entries[name] = pair
	}
}

// event turns the recorded changes into an Event against index x (which
// already reflects them). changed is false when nothing relevant changed.
func (c *changeRecorder) event(x *index) (ev Event, changed bool) {
	ev.Revision = x.rev
	parents := make(map[string]struct{})
	affected := make(map[string]struct{})
	seen := make(map[string]struct{})
	for _, pair := range c.entries {
		for _, r := range pair {
			if r == nil {
				continue
			}
			parents[r.parentID] = struct{}{}
			if r.parentID == c.s.serverID {
				c.s.agentsMatching(x, r.sels, affected)
			} else {
				c.s.ancestorAgents(x, r.parentID, seen, affected)
			}
		}
	}
	for id := range c.agents {
		affected[id] = struct{}{}
	}
	ev.EntryParentIDs = slices.Sorted(maps.Keys(parents))
	ev.AffectedAgents = slices.Sorted(maps.Keys(affected))
	ev.Agents = slices.Sorted(maps.Keys(c.agents))
	ev.Bundles = slices.Sorted(maps.Keys(c.bundles))
	changed = len(c.entries) > 0 || len(c.agents) > 0 || len(c.bundles) > 0
	return ev, changed
}

// diffIndexes describes the differences between two indexes as an Event
// against the new one.
func diffIndexes(old, fresh *index, s *Store) Event {
	c := newChangeRecorder(s)
	for id, r := range old.entries {
		if n := fresh.entries[id]; n == nil || n.modRev != r.modRev {
			c.entries[id] = [2]*entryRec{r, n}
		}
	}
	for id, n := range fresh.entries {
		if old.entries[id] == nil {
			c.entries[id] = [2]*entryRec{nil, n}
		}
	}
	for id, r := range old.agents {
		if n := fresh.agents[id]; n == nil || n.modRev != r.modRev {
			c.agents[id] = struct{}{}
		}
	}
	for id := range fresh.agents {
		if old.agents[id] == nil {
			c.agents[id] = struct{}{}
		}
	}
	for td, r := range old.bundles {
		if n := fresh.bundles[td]; n == nil || n.modRev != r.modRev {
			c.bundles[td] = struct{}{}
		}
	}
	for td := range fresh.bundles {
		if old.bundles[td] == nil {
			c.bundles[td] = struct{}{}
		}
	}
	ev, _ := c.event(fresh)
	return ev
}
