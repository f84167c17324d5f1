package k8s

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// parsePodList decodes a /pods body, a v1.PodList.
func parsePodList(b []byte) (*corev1.PodList, error) {
	var pl corev1.PodList
	if err := json.Unmarshal(b, &pl); err != nil {
		return nil, fmt.Errorf("k8s: kubelet pod list: %w", err)
	}
	return &pl, nil
}

// containerStatus returns the status of the (init) container with this runtime
// ID, if the pod has it.
func containerStatus(p *corev1.Pod, id string) (corev1.ContainerStatus, bool) {
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for _, cs := range list {
			if cs.ContainerID == "" {
				continue // not started yet
			}
			if u, err := url.Parse(cs.ContainerID); err == nil && u.Host == id {
				return cs, true
			}
		}
	}
	return corev1.ContainerStatus{}, false
}

// podSelectors are the selector values (after "k8s:") describing the
// pod, as SPIRE's: sa, ns, node-name, pod-uid, pod-name, the image
// counts, every container's and init container's image and image ID,
// the labels and the owners.
func podSelectors(p *corev1.Pod) []string {
	v := []string{
		"sa:" + p.Spec.ServiceAccountName,
		"ns:" + p.Namespace,
		"node-name:" + p.Spec.NodeName,
		"pod-uid:" + string(p.UID),
		"pod-name:" + p.Name,
		"pod-image-count:" + strconv.Itoa(len(p.Status.ContainerStatuses)),
		"pod-init-image-count:" + strconv.Itoa(len(p.Status.InitContainerStatuses)),
	}
	for _, img := range images(p.Status.ContainerStatuses...) {
		v = append(v, "pod-image:"+img)
	}
	for _, img := range images(p.Status.InitContainerStatuses...) {
		v = append(v, "pod-init-image:"+img)
	}
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v = append(v, "pod-label:"+k+":"+p.Labels[k])
	}
	for _, o := range p.OwnerReferences {
		v = append(v, "pod-owner:"+o.Kind+":"+o.Name, "pod-owner-uid:"+o.Kind+":"+string(o.UID))
	}
	return v
}

// containerSelectors describe the workload's own container.
func containerSelectors(cs corev1.ContainerStatus) []string {
	v := []string{"container-name:" + cs.Name}
	for _, img := range images(cs) {
		v = append(v, "container-image:"+img)
	}
	return v
}

// images returns the distinct images and image IDs of the containers,
// sorted: SPIRE lists both so that an entry may name the tag (known
// before the image is pulled) or the digest.
func images(css ...corev1.ContainerStatus) []string {
	var out []string
	for _, cs := range css {
		out = append(out, cs.ImageID, cs.Image)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
