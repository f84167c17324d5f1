// Package controller is Signet's Kubernetes registration controller: it
// watches pods, nodes, namespaces and spire-controller-manager's custom
// resources (ClusterSPIFFEID, ClusterStaticEntry,
// ClusterFederatedTrustDomain in spire.spiffe.io/v1alpha1) in a cluster's
// API server and keeps the Signet (or SPIRE) server's registration entries
// and federation relationships in step through the server's admin API, as
// spire-controller-manager does, so its manifests work unchanged.
//
// Each reconciliation is level-triggered: any watched change wakes one
// loop that renders every declared entry from the informer caches, lists
// the entries the controller owns (those whose ID starts with the
// configured prefix; entries made by hand are never read as its own) and
// creates, updates and deletes the difference, then writes the objects'
// status as spire-controller-manager reports it. Entry IDs are derived
// from the entry's identity (SPIFFE ID, parent ID, selectors), so a
// restarted or newly elected replica converges without churn.
package controller
