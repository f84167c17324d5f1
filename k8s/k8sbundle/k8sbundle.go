// Package k8sbundle keeps a Kubernetes ConfigMap holding the trust
// domain's X.509 authorities (PEM) in step with the server's bundle, as
// SPIRE's server Notifier "k8sbundle" plugin does: agents in the cluster
// bootstrap from it. It writes only on the replica that leads, creates
// the ConfigMap when it is missing, changes only its one key, and retries
// failures with backoff.
package k8sbundle

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
)

// SPIRE's defaults of the plugin_data settings.
const (
	DefaultNamespace    = "spire"
	DefaultConfigMap    = "spire-bundle"
	DefaultConfigMapKey = "bundle.crt"
)

// Defaults of the loop's timing.
const (
	DefaultInterval   = 10 * time.Second
	DefaultResync     = 5 * time.Minute
	DefaultRetryBase  = time.Second
	DefaultRetryLimit = 2 * time.Minute
)

// Config configures a Notifier.
type Config struct {
	// Client reaches the cluster's API server.
	Client kubernetes.Interface
	// Namespace, ConfigMap and Key name the ConfigMap and its data key
	// (the Default* constants when empty).
	Namespace, ConfigMap, Key string
	// Bundle returns the trust domain's current X.509 authorities.
	Bundle func() []*x509.Certificate
	// Leader reports whether this replica writes (nil: always). With
	// several server replicas only the scheduler leader does.
	Leader func() bool
	// Interval is how often leadership and the bundle are checked
	// without a BundleChanged (DefaultInterval if zero); Resync how often
	// the ConfigMap is read back and repaired when the bundle did not
	// change (DefaultResync if zero).
	Interval, Resync time.Duration
	// RetryBase and RetryLimit bound the backoff after a failed write
	// (doubling from RetryBase up to RetryLimit).
	RetryBase, RetryLimit time.Duration

	Clock    clock.Clock
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Notifier writes the bundle into the ConfigMap; Run drives it.
type Notifier struct {
	cfg     Config
	clk     clock.Clock
	log     *slog.Logger
	kick    chan struct{}
	updates *prometheus.CounterVec
}

// CheckNames refuses a namespace, ConfigMap name or key the API server
// would refuse, naming the plugin_data setting.
func CheckNames(namespace, configMap, key string) error {
	for _, c := range []struct {
		setting, value string
		errs           []string
	}{
		{"namespace", namespace, validation.IsDNS1123Label(namespace)},
		{"config_map", configMap, validation.IsDNS1123Subdomain(configMap)},
		{"config_map_key", key, validation.IsConfigMapKey(key)},
	} {
		if len(c.errs) > 0 {
			return fmt.Errorf("k8sbundle: %s %q: %s", c.setting, c.value, strings.Join(c.errs, "; "))
		}
	}
	return nil
}

// New checks cfg and returns a notifier.
func New(cfg Config) (*Notifier, error) {
	if cfg.Client == nil || cfg.Bundle == nil {
		return nil, errors.New("k8sbundle: a Kubernetes client and a bundle source are required")
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&cfg.Namespace, DefaultNamespace)
	def(&cfg.ConfigMap, DefaultConfigMap)
	def(&cfg.Key, DefaultConfigMapKey)
	if err := CheckNames(cfg.Namespace, cfg.ConfigMap, cfg.Key); err != nil {
		return nil, err
	}
	if cfg.Leader == nil {
		cfg.Leader = func() bool { return true }
	}
	for _, d := range []struct {
		v *time.Duration
		d time.Duration
	}{{&cfg.Interval, DefaultInterval}, {&cfg.Resync, DefaultResync}, {&cfg.RetryBase, DefaultRetryBase}, {&cfg.RetryLimit, DefaultRetryLimit}} {
		if *d.v <= 0 {
			*d.v = d.d
		}
	}
	n := &Notifier{cfg: cfg, clk: clock.Or(cfg.Clock), log: cfg.Logger, kick: make(chan struct{}, 1)}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	n.log = n.log.With("component", "k8sbundle", "namespace", cfg.Namespace, "config_map", cfg.ConfigMap, "config_map_key", cfg.Key)
	n.updates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "signet", Subsystem: "k8sbundle", Name: "updates_total",
		Help: "Writes of the bundle ConfigMap, by result (created, updated, failure).",
	}, []string{"result"})
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(n.updates); err != nil {
			return nil, fmt.Errorf("k8sbundle: register metrics: %w", err)
		}
	}
	return n, nil
}

// BundleChanged makes Run publish the bundle now; it never blocks.
func (n *Notifier) BundleChanged() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// Run keeps the ConfigMap current until ctx ends: at once, on every
// BundleChanged, when this replica becomes the leader, and every Resync;
// a failure is logged, counted and retried with backoff.
func (n *Notifier) Run(ctx context.Context) {
	timer := n.clk.NewTimer(0)
	defer timer.Stop()
	var (
		written  string    // the PEM last written or found, while leading
		lastSync time.Time // when written was last confirmed
		failures int
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
			lastSync = time.Time{}
		case <-timer.C():
		}
		if !n.cfg.Leader() {
			written, failures = "", 0
			timer.Reset(n.cfg.Interval)
			continue
		}
		want := PEM(n.cfg.Bundle())
		now := n.clk.Now()
		if want == written && !lastSync.IsZero() && now.Sub(lastSync) < n.cfg.Resync {
			timer.Reset(n.cfg.Interval)
			continue
		}
		result, err := n.Sync(ctx, want)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait := backoff(failures, n.cfg.RetryBase, n.cfg.RetryLimit)
			n.updates.WithLabelValues("failure").Inc()
			n.log.Error("failed to write the bundle ConfigMap; retrying", "error", err, "attempt", failures, "retry_in", wait)
			written = ""
			timer.Reset(wait)
			continue
		}
		if result != "" {
			n.updates.WithLabelValues(result).Inc()
			n.log.Info("bundle ConfigMap written", "result", result, "x509_authorities", len(n.cfg.Bundle()))
		}
		written, lastSync, failures = want, now, 0
		timer.Reset(n.cfg.Interval)
	}
}

// Sync makes the ConfigMap's key hold bundle now: it creates the
// ConfigMap when missing, else patches that key alone (the other keys
// and metadata stay), guarded by the resourceVersion read. result is
// "created", "updated", or "" when the key already held it.
func (n *Notifier) Sync(ctx context.Context, bundle string) (result string, err error) {
	cms := n.cfg.Client.CoreV1().ConfigMaps(n.cfg.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		result = ""
		cm, err := cms.Get(ctx, n.cfg.ConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: n.cfg.ConfigMap, Namespace: n.cfg.Namespace},
				Data:       map[string]string{n.cfg.Key: bundle},
			}, metav1.CreateOptions{FieldManager: "signet-k8sbundle"})
			if apierrors.IsAlreadyExists(err) {
				// Created meanwhile: read it again.
				return apierrors.NewConflict(corev1.Resource("configmaps"), n.cfg.ConfigMap, err)
			}
			if err != nil {
				return fmt.Errorf("k8sbundle: create ConfigMap %s/%s: %w", n.cfg.Namespace, n.cfg.ConfigMap, err)
			}
			result = "created"
			return nil
		}
		if err != nil {
			return fmt.Errorf("k8sbundle: get ConfigMap %s/%s: %w", n.cfg.Namespace, n.cfg.ConfigMap, err)
		}
		if v, ok := cm.Data[n.cfg.Key]; ok && v == bundle {
			return nil
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[n.cfg.Key] = bundle
		// Update carries the resourceVersion read: a concurrent writer
		// makes it fail with a conflict, and the loop reads again.
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "signet-k8sbundle"}); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return fmt.Errorf("k8sbundle: update ConfigMap %s/%s: %w", n.cfg.Namespace, n.cfg.ConfigMap, err)
		}
		result = "updated"
		return nil
	})
	return result, err
}

// PEM is the ConfigMap value of a bundle: its X.509 authorities as PEM
// CERTIFICATE blocks, in order (SPIRE's bundleData).
func PEM(certs []*x509.Certificate) string {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}

// RESTConfig is the API server configuration of kube_config_file_path:
// that kubeconfig file, or the in-cluster configuration (the pod's
// service account) when path is empty, as SPIRE's plugin.
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("k8sbundle: in-cluster configuration (kube_config_file_path is empty): %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("k8sbundle: kube_config_file_path %q: %w", path, err)
	}
	return rc, nil
}

// backoff is the wait before retry number attempt: base doubled per
// further attempt, at most limit.
func backoff(attempt int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
