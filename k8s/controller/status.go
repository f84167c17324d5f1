package controller

import (
	"context"
	"reflect"
	"slices"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// writeStatus updates the status subresource of each owner whose status
// changed. A conflict (the object changed meanwhile) wakes another pass.
func (c *Controller) writeStatus(ctx context.Context, owners []*owner) {
	for _, o := range owners {
		var status any
		var gvr schema.GroupVersionResource
		switch {
		case o.stats != nil:
			s := ClusterSPIFFEIDStatus{Stats: *o.stats}
			if _, present := o.obj.Object["status"]; present && reflect.DeepEqual(s, o.old) {
				continue
			}
			status, gvr = s, ClusterSPIFFEIDResource
		default:
			s := *o.static
			if _, present := o.obj.Object["status"]; present && reflect.DeepEqual(s, o.old) {
				continue
			}
			status, gvr = s, ClusterStaticEntryResource
		}
		u, err := statusObject(o.obj, status)
		if err != nil {
			c.log.Error("controller: status", "kind", o.kind, "name", o.obj.GetName(), "error", err)
			continue
		}
		_, err = c.cfg.Dynamic.Resource(gvr).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: FieldManager})
		switch {
		case err == nil:
			c.m.statusWrites.Inc()
			c.log.Debug("controller: updated status", "kind", o.kind, "name", o.obj.GetName())
		case apierrors.IsConflict(err):
			c.trigger()
		case apierrors.IsNotFound(err):
		default:
			c.log.Warn("controller: update status", "kind", o.kind, "name", o.obj.GetName(), "error", err)
		}
	}
}

// FieldManager names the controller's writes in managedFields.
const FieldManager = "signet-k8s-controller"

// serviceNames maps a pod UID to the DNS names of the Services whose
// EndpointSlices list it: name, name.ns, name.ns.svc and
// name.ns.svc.<clusterDomain>.
func serviceNames(list func(labels.Selector) ([]*discoveryv1.EndpointSlice, error), clusterDomain string) map[string][]string {
	out := map[string][]string{}
	slices_, err := list(labels.Everything())
	if err != nil {
		return out
	}
	for _, es := range slices_ {
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		names := []string{svc, svc + "." + es.Namespace, svc + "." + es.Namespace + ".svc"}
		if clusterDomain != "" {
			names = append(names, svc+"."+es.Namespace+".svc."+clusterDomain)
		}
		for _, ep := range es.Endpoints {
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				continue
			}
			uid := string(ep.TargetRef.UID)
			out[uid] = appendNew(out[uid], names...)
		}
	}
	for uid := range out {
		slices.Sort(out[uid])
	}
	return out
}
