package cli

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/signet-id/signet/k8s/controller"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func newK8sCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "k8s",
		Short: "Kubernetes integration",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	c.AddCommand(newK8sControllerCommand())
	return c
}

// k8sControllerFlags are the flags of `k8s controller`.
type k8sControllerFlags struct {
	admin          adminFlags
	trustDomain    string
	clusterName    string
	clusterDomain  string
	parentID       string
	entryIDPrefix  string
	ignoreNS       []string
	className      string
	watchClassless bool
	resync         time.Duration
	kubeconfig     string
	federation     bool
	leaderElect    bool
	leaseNamespace string
	leaseName      string
	identity       string
	logLevel       string
	logFormat      string
	metricsAddress string
}

func newK8sControllerCommand() *cobra.Command {
	var f k8sControllerFlags
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Reconcile ClusterSPIFFEID, ClusterStaticEntry and ClusterFederatedTrustDomain objects into the server",
		Long: `Controller watches a Kubernetes cluster's pods, nodes, namespaces and spire-controller-manager's
custom resources (spire.spiffe.io/v1alpha1) and keeps the server's registration entries and federation
relationships in step, through the server's admin socket (run it as a sidecar of the server).
It owns the entries whose ID starts with --entry-id-prefix and never changes others.
Install the CRDs from deploy/kubernetes/crds first.`,
		Example: "  signet k8s controller --socket-path /run/signet/api.sock --trust-domain example.org --cluster-name prod\n" +
			"  signet k8s controller --trust-domain example.org --cluster-name prod --leader-elect --lease-namespace signet-system",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd) },
	}
	fl := cmd.Flags()
	f.admin.register(fl, false)
	fl.StringVar(&f.trustDomain, "trust-domain", "", "the server's trust domain, e.g. example.org (required)")
	fl.StringVar(&f.clusterName, "cluster-name", "", "this cluster's name in the server's k8s_psat NodeAttestor (required)")
	fl.StringVar(&f.clusterDomain, "cluster-domain", controller.DefaultClusterDomain, "the cluster's DNS domain")
	fl.StringVar(&f.parentID, "parent-id-template", controller.DefaultParentIDTemplate, "template of a pod entry's parent ID (the node's agent)")
	fl.StringVar(&f.entryIDPrefix, "entry-id-prefix", "", "ID prefix of the entries the controller owns (default k8s.<cluster-name>.)")
	fl.StringSliceVar(&f.ignoreNS, "ignore-namespace", controller.DefaultIgnoreNamespaces, "regular expressions (anchored) of namespaces whose pods get no entries")
	fl.StringVar(&f.className, "class-name", "", "act on objects with this spec.className")
	fl.BoolVar(&f.watchClassless, "watch-classless", true, "also act on objects without spec.className")
	fl.DurationVar(&f.resync, "resync", controller.DefaultResync, "full reconciliation period without events")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, else $KUBECONFIG)")
	fl.BoolVar(&f.federation, "federation", true, "reconcile ClusterFederatedTrustDomains through the server's TrustDomain API")
	fl.BoolVar(&f.leaderElect, "leader-elect", false, "take turns with other replicas through a coordination.k8s.io Lease")
	fl.StringVar(&f.leaseNamespace, "lease-namespace", "", "namespace of the Lease (default: the pod's namespace)")
	fl.StringVar(&f.leaseName, "lease-name", controller.DefaultLeaseName, "name of the Lease")
	fl.StringVar(&f.identity, "leader-identity", "", "this replica's name in the Lease (default: the host name)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fl.StringVar(&f.logFormat, "log-format", "", "text or json (default text)")
	fl.StringVar(&f.metricsAddress, "metrics-address", "", "serve Prometheus metrics on this host:port")
	return cmd
}

func (f *k8sControllerFlags) run(cmd *cobra.Command) error {
	if f.trustDomain == "" {
		return usageError{errors.New("--trust-domain is required: give the server's trust domain")}
	}
	td, err := spiffeid.TrustDomainFromString(f.trustDomain)
	if err != nil {
		return usageError{fmt.Errorf("--trust-domain %q: %w", f.trustDomain, err)}
	}
	if f.clusterName == "" {
		return usageError{errors.New("--cluster-name is required: give the cluster name of the server's k8s_psat NodeAttestor")}
	}
	rc, err := kubeConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("cli: kubernetes client: %w", err)
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("cli: kubernetes client: %w", err)
	}
	ac, err := dialAdmin(f.admin.socket())
	if err != nil {
		return err
	}
	defer ac.Close()
	log, reg, stop, err := observability(cmd, runSettings{level: f.logLevel, format: f.logFormat, metrics: f.metricsAddress})
	if err != nil {
		return err
	}
	defer stop()
	cfg := controller.Config{
		TrustDomain: td, ClusterName: f.clusterName, ClusterDomain: f.clusterDomain,
		ParentIDTemplate: f.parentID, EntryIDPrefix: f.entryIDPrefix, IgnoreNamespaces: f.ignoreNS,
		ClassName: f.className, WatchClassless: f.watchClassless, Resync: f.resync,
		Kube: kc, Dynamic: dc, Entries: ac.entry,
		Logger: log, Registry: reg,
	}
	if f.federation {
		cfg.TrustDomains = trustdomainv1.NewTrustDomainClient(ac.conn)
	}
	c, err := controller.New(cfg)
	if err != nil {
		return usageError{err}
	}
	if !f.leaderElect {
		return c.Run(cmd.Context())
	}
	le := controller.LeaderElection{Namespace: f.leaseNamespace, Name: f.leaseName, Identity: f.identity}
	if le.Namespace == "" {
		le.Namespace = podNamespace()
	}
	if le.Namespace == "" {
		return usageError{errors.New("--leader-elect needs --lease-namespace (not running in a pod)")}
	}
	if le.Identity == "" {
		if le.Identity, err = os.Hostname(); err != nil {
			return fmt.Errorf("cli: --leader-identity not given and no host name: %w", err)
		}
	}
	return c.RunElected(cmd.Context(), le)
}

// kubeConfig is the given kubeconfig, else the in-cluster configuration,
// else $KUBECONFIG or ~/.kube/config.
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		if rc, err := rest.InClusterConfig(); err == nil {
			return rc, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("cli: kubernetes API configuration: %w (not in a pod: give --kubeconfig or set $KUBECONFIG)", err)
	}
	return rc, nil
}

// podNamespace is the namespace of the pod the process runs in, from its
// service account mount; empty outside a pod.
func podNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return string(b)
}
