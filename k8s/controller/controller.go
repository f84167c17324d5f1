package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Defaults of Config.
const (
	DefaultClusterDomain = "cluster.local"
	DefaultResync        = 10 * time.Second
)

// DefaultIgnoreNamespaces are the namespaces whose pods get no entries
// unless Config.IgnoreNamespaces says otherwise (spire-controller-manager's
// defaults, with Signet's own namespace).
var DefaultIgnoreNamespaces = []string{"kube-system", "kube-public", "spire-system", "signet-system"}

// Config configures a Controller.
type Config struct {
	// TrustDomain is the server's trust domain; rendered SPIFFE IDs
	// outside it are refused.
	TrustDomain spiffeid.TrustDomain
	// ClusterName is the cluster's name in the k8s_psat node attestor's
	// configuration (and so in agent IDs).
	ClusterName string
	// ClusterDomain is the cluster's DNS domain (DefaultClusterDomain if
	// empty).
	ClusterDomain string
	// ParentIDTemplate renders a pod entry's parent ID from the node
	// (DefaultParentIDTemplate if empty).
	ParentIDTemplate string
	// EntryIDPrefix marks the entries the controller owns; default
	// "k8s.<ClusterName>.". Entries without it are never changed.
	EntryIDPrefix string
	// IgnoreNamespaces are anchored regular expressions of namespaces
	// whose pods get no entries (DefaultIgnoreNamespaces if nil).
	IgnoreNamespaces []string
	// ClassName and WatchClassless choose the objects acted on: those of
	// this className, and those without one when WatchClassless.
	ClassName      string
	WatchClassless bool
	// Resync is the period of a full reconciliation without events
	// (DefaultResync if zero).
	Resync time.Duration

	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Entries EntryClient
	// TrustDomains, if set, reconciles ClusterFederatedTrustDomains.
	TrustDomains TrustDomainClient

	Clock    clock.Clock
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Controller reconciles one cluster's declared identities into a server.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock
	m       *metrics
	ignore  []*regexp.Regexp
	render  *renderer
	entries EntryClient
	fed     *federation

	kinf informers.SharedInformerFactory
	dinf dynamicinformer.DynamicSharedInformerFactory

	wake chan struct{}
}

// New checks cfg and returns a controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("controller: the trust domain is empty")
	}
	if cfg.ClusterName == "" {
		return nil, errors.New("controller: the cluster name is empty: give the k8s_psat cluster name of this cluster")
	}
	if cfg.Kube == nil || cfg.Dynamic == nil || cfg.Entries == nil {
		return nil, errors.New("controller: Kube, Dynamic and Entries clients are required")
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = DefaultClusterDomain
	}
	if cfg.ParentIDTemplate == "" {
		cfg.ParentIDTemplate = DefaultParentIDTemplate
	}
	if cfg.EntryIDPrefix == "" {
		cfg.EntryIDPrefix = "k8s." + cfg.ClusterName + "."
	}
	for _, r := range cfg.EntryIDPrefix {
		if !(r == '-' || r == '.' || r == '_' || ('0' <= r && r <= '9') || ('A' <= r && r <= 'Z') || ('a' <= r && r <= 'z')) {
			return nil, fmt.Errorf("controller: entry ID prefix %q: only letters, digits, '-', '.' and '_' are allowed (the cluster name is part of the default prefix)", cfg.EntryIDPrefix)
		}
	}
	if len(cfg.EntryIDPrefix) > 200 {
		return nil, fmt.Errorf("controller: entry ID prefix is %d bytes, over the limit of 200", len(cfg.EntryIDPrefix))
	}
	if cfg.IgnoreNamespaces == nil {
		cfg.IgnoreNamespaces = DefaultIgnoreNamespaces
	}
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	parent, err := template.New("parentIDTemplate").Parse(cfg.ParentIDTemplate)
	if err != nil {
		return nil, fmt.Errorf("controller: parent ID template: %w", err)
	}
	c := &Controller{
		cfg:     cfg,
		log:     cfg.Logger,
		clk:     clock.Or(cfg.Clock),
		entries: cfg.Entries,
		render:  &renderer{td: cfg.TrustDomain, clusterName: cfg.ClusterName, clusterDomain: cfg.ClusterDomain, parentID: parent},
		wake:    make(chan struct{}, 1),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "k8s-controller", "cluster", cfg.ClusterName)
	for _, s := range cfg.IgnoreNamespaces {
		re, err := regexp.Compile("^(?:" + s + ")$")
		if err != nil {
			return nil, fmt.Errorf("controller: ignored namespace %q: %w", s, err)
		}
		c.ignore = append(c.ignore, re)
	}
	if c.m, err = newMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	if cfg.TrustDomains != nil {
		c.fed = &federation{c: c, client: cfg.TrustDomains}
	}
	return c, nil
}

// Run watches the cluster and reconciles until ctx ends. It returns an
// error only if the caches cannot sync.
func (c *Controller) Run(ctx context.Context) error {
	c.kinf = informers.NewSharedInformerFactory(c.cfg.Kube, 0)
	c.dinf = dynamicinformer.NewDynamicSharedInformerFactory(c.cfg.Dynamic, 0)
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.trigger() },
		UpdateFunc: func(old, cur any) { c.triggerIfChanged(old, cur) },
		DeleteFunc: func(any) { c.trigger() },
	}
	var synced []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{
		c.kinf.Core().V1().Pods().Informer(),
		c.kinf.Core().V1().Nodes().Informer(),
		c.kinf.Core().V1().Namespaces().Informer(),
		c.kinf.Discovery().V1().EndpointSlices().Informer(),
		c.dinf.ForResource(ClusterSPIFFEIDResource).Informer(),
		c.dinf.ForResource(ClusterStaticEntryResource).Informer(),
	} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("controller: watch: %w", err)
		}
		synced = append(synced, inf.HasSynced)
	}
	if c.fed != nil {
		inf := c.dinf.ForResource(ClusterFederatedTrustDomainResource).Informer()
		if _, err := inf.AddEventHandler(c.fed.handler()); err != nil {
			return fmt.Errorf("controller: watch: %w", err)
		}
		synced = append(synced, inf.HasSynced)
	}
	c.kinf.Start(ctx.Done())
	c.dinf.Start(ctx.Done())
	defer c.kinf.Shutdown()
	defer c.dinf.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("controller: the informer caches did not sync")
	}
	c.log.Info("controller: caches synced, reconciling", "entry_id_prefix", c.cfg.EntryIDPrefix, "trust_domain", c.cfg.TrustDomain.Name())
	tick := c.clk.NewTicker(c.cfg.Resync)
	defer tick.Stop()
	c.trigger()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		case <-tick.C():
		}
		c.reconcile(ctx)
	}
}

func (c *Controller) trigger() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// triggerIfChanged ignores the periodic resync of an unchanged object
// and the controller's own status writes.
func (c *Controller) triggerIfChanged(old, cur any) {
	o, ok1 := old.(metav1.Object)
	n, ok2 := cur.(metav1.Object)
	if ok1 && ok2 && o.GetResourceVersion() == n.GetResourceVersion() {
		return
	}
	if ou, ok := old.(*unstructured.Unstructured); ok {
		if nu, ok := cur.(*unstructured.Unstructured); ok && ou.GetGeneration() == nu.GetGeneration() && ou.GetGeneration() != 0 &&
			reflect.DeepEqual(ou.GetLabels(), nu.GetLabels()) {
			return
		}
	}
	c.trigger()
}

// reconcile runs one pass over entries (and federation relationships)
// and writes the objects' status.
func (c *Controller) reconcile(ctx context.Context) {
	start := c.clk.Now()
	st, err := c.state()
	if err == nil {
		var owners []*owner
		var res result
		owners, res, err = c.reconcileEntries(ctx, st)
		c.m.writes(res)
		c.logReconcile(res, clock.Since(c.clk, start))
		c.writeStatus(ctx, owners)
	}
	if c.fed != nil {
		if ferr := c.fed.reconcile(ctx); ferr != nil && err == nil {
			err = ferr
		}
	}
	c.m.observe(start, clock.Since(c.clk, start), err)
	if err != nil {
		c.log.Error("controller: reconcile", "error", err)
	}
}

// state reads the informer caches.
func (c *Controller) state() (*clusterState, error) {
	list := func(r schema.GroupVersionResource) ([]*unstructured.Unstructured, error) {
		objs, err := c.dinf.ForResource(r).Lister().List(labels.Everything())
		if err != nil {
			return nil, fmt.Errorf("controller: list %s: %w", r.Resource, err)
		}
		out := make([]*unstructured.Unstructured, 0, len(objs))
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				out = append(out, u)
			}
		}
		return out, nil
	}
	st := &clusterState{}
	var err error
	if st.spiffeIDs, err = list(ClusterSPIFFEIDResource); err != nil {
		return nil, err
	}
	if st.statics, err = list(ClusterStaticEntryResource); err != nil {
		return nil, err
	}
	nsl := c.kinf.Core().V1().Namespaces().Lister()
	pl := c.kinf.Core().V1().Pods().Lister()
	nl := c.kinf.Core().V1().Nodes().Lister()
	esl := c.kinf.Discovery().V1().EndpointSlices().Lister()
	st.namespaces = nsl.List
	st.pods = func(ns string, sel labels.Selector) ([]*corev1.Pod, error) { return pl.Pods(ns).List(sel) }
	st.node = nl.Get
	var byPod map[string][]string
	st.services = func(pod *corev1.Pod) []string {
		if byPod == nil {
			byPod = serviceNames(esl.List, c.cfg.ClusterDomain)
		}
		return byPod[string(pod.UID)]
	}
	return st, nil
}
