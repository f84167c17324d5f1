// Package kubeapiserver pins kube-apiserver v1.37.2 (from k8s.io/kubernetes)
// as a Go tool dependency for Signet's tests against a real Kubernetes API
// server. It holds no code; scripts/install-kube-apiserver.sh builds the
// tool into a per-version cache.
package kubeapiserver
