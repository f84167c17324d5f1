package controller

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	apitypes "k8s.io/apimachinery/pkg/types"
)

// EntryClient is the part of the server's entry API the controller uses;
// entryv1.EntryClient satisfies it.
type EntryClient interface {
	ListEntries(ctx context.Context, in *entryv1.ListEntriesRequest, opts ...grpc.CallOption) (*entryv1.ListEntriesResponse, error)
	BatchCreateEntry(ctx context.Context, in *entryv1.BatchCreateEntryRequest, opts ...grpc.CallOption) (*entryv1.BatchCreateEntryResponse, error)
	BatchUpdateEntry(ctx context.Context, in *entryv1.BatchUpdateEntryRequest, opts ...grpc.CallOption) (*entryv1.BatchUpdateEntryResponse, error)
	BatchDeleteEntry(ctx context.Context, in *entryv1.BatchDeleteEntryRequest, opts ...grpc.CallOption) (*entryv1.BatchDeleteEntryResponse, error)
}

var _ EntryClient = entryv1.EntryClient(nil)

// batchSize bounds one batch request (the server's default limit is
// 10000).
const batchSize = 500

// clusterState is what one reconciliation reads from the informers.
type clusterState struct {
	spiffeIDs  []*unstructured.Unstructured
	statics    []*unstructured.Unstructured
	namespaces func(labels.Selector) ([]*corev1.Namespace, error)
	pods       func(ns string, sel labels.Selector) ([]*corev1.Pod, error)
	node       func(name string) (*corev1.Node, error)
	services   func(pod *corev1.Pod) []string
}

// owner is a custom resource that declares entries, with the status the
// reconciliation computes for it.
type owner struct {
	obj     *unstructured.Unstructured
	kind    string
	created metav1.Time
	// Exactly one of the two is set.
	stats  *ClusterSPIFFEIDStats
	static *ClusterStaticEntryStatus
	old    any
}

func (o *owner) before(p *owner) bool {
	if !o.created.Equal(&p.created) {
		return o.created.Before(&p.created)
	}
	od, pd := o.obj.GetDeletionTimestamp() != nil, p.obj.GetDeletionTimestamp() != nil
	if od != pd {
		return pd
	}
	return o.obj.GetName() < p.obj.GetName()
}

type declared struct {
	entry *types.Entry
	by    *owner
}

// result counts one reconciliation's writes.
type result struct {
	created, updated, deleted, failed int
}

// declare renders every entry the objects declare, keyed by entryKey.
func (c *Controller) declare(st *clusterState) (map[string][]declared, []*owner) {
	out := map[string][]declared{}
	var owners []*owner
	add := func(e *types.Entry, o *owner) {
		k := entryKey(e)
		out[k] = append(out[k], declared{entry: e, by: o})
	}
	for _, u := range st.statics {
		cse, err := fromUnstructured[ClusterStaticEntry](u)
		if err != nil {
			c.log.Error("controller: decode ClusterStaticEntry", "name", u.GetName(), "error", err)
			continue
		}
		if !c.ownsClass(cse.Spec.ClassName) {
			continue
		}
		o := &owner{obj: u, kind: "ClusterStaticEntry", created: cse.CreationTimestamp, static: &ClusterStaticEntryStatus{}, old: cse.Status}
		owners = append(owners, o)
		e, err := staticEntry(&cse.Spec)
		if err != nil {
			c.log.Warn("controller: ClusterStaticEntry does not render", "name", u.GetName(), "error", err)
			c.m.renderFailures.Inc()
			continue
		}
		o.static.Rendered = true
		add(e, o)
	}

	type csid struct {
		o    *owner
		spec *ClusterSPIFFEIDSpec
	}
	var csids []csid
	for _, u := range st.spiffeIDs {
		cs, err := fromUnstructured[ClusterSPIFFEID](u)
		if err != nil {
			c.log.Error("controller: decode ClusterSPIFFEID", "name", u.GetName(), "error", err)
			continue
		}
		if !c.ownsClass(cs.Spec.ClassName) {
			continue
		}
		o := &owner{obj: u, kind: "ClusterSPIFFEID", created: cs.CreationTimestamp, stats: &ClusterSPIFFEIDStats{}, old: cs.Status}
		owners = append(owners, o)
		csids = append(csids, csid{o, &cs.Spec})
	}
	// Non-fallback objects first: a fallback applies only to pods none of
	// them selected.
	sort.SliceStable(csids, func(i, j int) bool { return !csids[i].spec.Fallback && csids[j].spec.Fallback })
	applied := map[apitypes.UID]bool{}
	for _, cs := range csids {
		p, err := parseSpec(cs.spec)
		if err != nil {
			c.log.Warn("controller: ClusterSPIFFEID spec is invalid", "name", cs.o.obj.GetName(), "error", err)
			c.m.renderFailures.Inc()
			continue
		}
		nss, err := st.namespaces(p.namespaces)
		if err != nil {
			c.log.Error("controller: list namespaces", "error", err)
			continue
		}
		cs.o.stats.NamespacesSelected += len(nss)
		for _, ns := range nss {
			if c.ignored(ns.Name) {
				cs.o.stats.NamespacesIgnored++
				continue
			}
			pods, err := st.pods(ns.Name, p.pods)
			if err != nil {
				c.log.Error("controller: list pods", "namespace", ns.Name, "error", err)
				continue
			}
			cs.o.stats.PodsSelected += len(pods)
			for _, pod := range pods {
				if cs.spec.Fallback && applied[pod.UID] {
					continue
				}
				e, err := c.podEntry(st, p, pod)
				if err != nil {
					cs.o.stats.PodEntryRenderFailures++
					c.m.renderFailures.Inc()
					c.log.Warn("controller: pod entry does not render", "cluster_spiffeid", cs.o.obj.GetName(),
						"namespace", pod.Namespace, "pod", pod.Name, "error", err)
					continue
				}
				if e == nil {
					continue
				}
				add(e, cs.o)
				if !cs.spec.Fallback {
					applied[pod.UID] = true
				}
			}
		}
	}
	return out, owners
}

// podEntry renders pod's entry; nil (no error) for a pod not yet
// scheduled, which no agent can attest.
func (c *Controller) podEntry(st *clusterState, p *parsedSpec, pod *corev1.Pod) (*types.Entry, error) {
	if pod.Spec.NodeName == "" {
		return nil, nil
	}
	node, err := st.node(pod.Spec.NodeName)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", pod.Spec.NodeName, err)
	}
	var svcs []string
	if p.spec.AutoPopulateDNSNames && st.services != nil {
		svcs = st.services(pod)
	}
	return c.render.podEntry(p, node, pod, svcs)
}

func (c *Controller) ownsClass(class string) bool {
	return class == c.cfg.ClassName || (class == "" && c.cfg.WatchClassless)
}

func (c *Controller) ignored(ns string) bool {
	return slices.ContainsFunc(c.ignore, func(re *regexp.Regexp) bool { return re.MatchString(ns) })
}

// listOwned returns the server's entries whose ID has the controller's
// prefix, by ID.
func (c *Controller) listOwned(ctx context.Context) (map[string]*types.Entry, error) {
	out := map[string]*types.Entry{}
	token := ""
	for range 100000 {
		resp, err := c.entries.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("controller: list entries: %w", err)
		}
		for _, e := range resp.Entries {
			if strings.HasPrefix(e.Id, c.cfg.EntryIDPrefix) {
				out[e.Id] = e
			}
		}
		if token = resp.NextPageToken; token == "" {
			return out, nil
		}
	}
	return nil, fmt.Errorf("controller: list entries: more than 100000 pages")
}

// reconcileEntries makes the owned entries those declared and returns
// the owners with their new status.
func (c *Controller) reconcileEntries(ctx context.Context, st *clusterState) ([]*owner, result, error) {
	var res result
	current, err := c.listOwned(ctx)
	if err != nil {
		return nil, res, err
	}
	decls, owners := c.declare(st)
	var toCreate, toUpdate []declared
	for key, ds := range decls {
		sort.SliceStable(ds, func(i, j int) bool { return ds[i].by.before(ds[j].by) })
		win := ds[0]
		for _, d := range ds[1:] {
			if d.by == win.by {
				continue
			}
			if d.by.stats != nil {
				d.by.stats.EntriesMasked++
			} else {
				d.by.static.Masked = true
			}
		}
		if win.by.stats != nil {
			win.by.stats.EntriesToSet++
		} else {
			win.by.static.Set = true
		}
		win.entry.Id = entryID(c.cfg.EntryIDPrefix, key)
		cur, ok := current[win.entry.Id]
		delete(current, win.entry.Id)
		switch {
		case !ok:
			toCreate = append(toCreate, win)
		case outdated(win.entry, cur):
			toUpdate = append(toUpdate, win)
		}
	}
	failed := func(d declared, op string, st *types.Status) {
		res.failed++
		if d.by.stats != nil {
			d.by.stats.EntryFailures++
		} else {
			d.by.static.Set = false
		}
		c.log.Warn("controller: entry write refused", "op", op, "entry_id", d.entry.Id, "spiffe_id", idString(d.entry.SpiffeId),
			"owner_kind", d.by.kind, "owner", d.by.obj.GetName(), "code", codes.Code(st.GetCode()).String(), "message", st.GetMessage())
	}
	var ids []string
	for id := range current {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for chunk := range slices.Chunk(ids, batchSize) {
		resp, err := c.entries.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: chunk})
		if err != nil {
			return owners, res, fmt.Errorf("controller: delete entries: %w", err)
		}
		for _, r := range resp.Results {
			if code := codes.Code(r.GetStatus().GetCode()); code == codes.OK || code == codes.NotFound {
				res.deleted++
				c.log.Info("controller: deleted entry", "entry_id", r.Id, "spiffe_id", idString(current[r.Id].GetSpiffeId()))
			} else {
				res.failed++
				c.log.Warn("controller: entry delete refused", "entry_id", r.Id, "code", code.String(), "message", r.GetStatus().GetMessage())
			}
		}
	}
	sort.Slice(toCreate, func(i, j int) bool { return toCreate[i].entry.Id < toCreate[j].entry.Id })
	for chunk := range slices.Chunk(toCreate, batchSize) {
		es := make([]*types.Entry, len(chunk))
		for i, d := range chunk {
			es[i] = d.entry
		}
		resp, err := c.entries.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: es, OutputMask: &types.EntryMask{}})
		if err != nil {
			for _, d := range chunk {
				failed(d, "create", &types.Status{Code: int32(codes.Unavailable), Message: err.Error()})
			}
			continue
		}
		for i, r := range resp.Results {
			if i >= len(chunk) {
				break
			}
			if codes.Code(r.GetStatus().GetCode()) == codes.OK {
				res.created++
				c.log.Info("controller: created entry", "entry_id", chunk[i].entry.Id, "spiffe_id", idString(chunk[i].entry.SpiffeId),
					"parent_id", idString(chunk[i].entry.ParentId), "owner_kind", chunk[i].by.kind, "owner", chunk[i].by.obj.GetName())
				continue
			}
			failed(chunk[i], "create", r.GetStatus())
		}
	}
	sort.Slice(toUpdate, func(i, j int) bool { return toUpdate[i].entry.Id < toUpdate[j].entry.Id })
	for chunk := range slices.Chunk(toUpdate, batchSize) {
		es := make([]*types.Entry, len(chunk))
		for i, d := range chunk {
			es[i] = d.entry
		}
		resp, err := c.entries.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{Entries: es, InputMask: updateMask, OutputMask: &types.EntryMask{}})
		if err != nil {
			for _, d := range chunk {
				failed(d, "update", &types.Status{Code: int32(codes.Unavailable), Message: err.Error()})
			}
			continue
		}
		for i, r := range resp.Results {
			if i >= len(chunk) {
				break
			}
			if codes.Code(r.GetStatus().GetCode()) == codes.OK {
				res.updated++
				c.log.Info("controller: updated entry", "entry_id", chunk[i].entry.Id, "spiffe_id", idString(chunk[i].entry.SpiffeId))
				continue
			}
			failed(chunk[i], "update", r.GetStatus())
		}
	}
	return owners, res, nil
}

// updateMask names the fields an update sets: those outside the entry's
// identity (the identity is in its ID).
var updateMask = &types.EntryMask{
	X509SvidTtl: true, JwtSvidTtl: true, FederatesWith: true, DnsNames: true,
	Admin: true, Downstream: true, Hint: true, StoreSvid: true,
}

// outdated reports whether the server's entry cur differs from want in a
// field of updateMask.
func outdated(want, cur *types.Entry) bool {
	return want.X509SvidTtl != cur.X509SvidTtl || want.JwtSvidTtl != cur.JwtSvidTtl ||
		!sameSet(want.FederatesWith, cur.FederatesWith) || !sameSet(want.DnsNames, cur.DnsNames) ||
		want.Admin != cur.Admin || want.Downstream != cur.Downstream || want.Hint != cur.Hint ||
		want.StoreSvid != cur.StoreSvid
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// logReconcile logs a reconciliation that wrote something.
func (c *Controller) logReconcile(res result, took time.Duration) {
	if res == (result{}) {
		return
	}
	c.log.Info("controller: reconciled entries", slog.Int("created", res.created), slog.Int("updated", res.updated),
		slog.Int("deleted", res.deleted), slog.Int("failed", res.failed), slog.Duration("took", took))
}
