package k8s

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
)

// The kubelet's /pods answer is a v1.PodList; these are the fields the
// selectors read, with the Kubernetes API's JSON names.
type podList struct {
	Items []pod `json:"items"`
}

type pod struct {
	Metadata struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		UID             string            `json:"uid"`
		Labels          map[string]string `json:"labels"`
		OwnerReferences []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		ServiceAccountName string `json:"serviceAccountName"`
		NodeName           string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		ContainerStatuses     []containerStatus `json:"containerStatuses"`
		InitContainerStatuses []containerStatus `json:"initContainerStatuses"`
	} `json:"status"`
}

type containerStatus struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	// ImageID is the image's digest reference as the runtime reports it.
	ImageID string `json:"imageID"`
	// ContainerID is "<runtime>://<id>", empty while the container has
	// not started.
	ContainerID string `json:"containerID"`
}

// parsePodList decodes a /pods body.
func parsePodList(b []byte) (podList, error) {
	var pl podList
	if err := json.Unmarshal(b, &pl); err != nil {
		return podList{}, fmt.Errorf("k8s: kubelet pod list: %w", err)
	}
	return pl, nil
}

// container returns the status of the (init) container with this runtime
// ID, if the pod has it.
func (p *pod) container(id string) (containerStatus, bool) {
	for _, list := range [][]containerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for _, cs := range list {
			if cs.ContainerID == "" {
				continue // not started yet
			}
			if u, err := url.Parse(cs.ContainerID); err == nil && u.Host == id {
				return cs, true
			}
		}
	}
	return containerStatus{}, false
}

// podSelectors are the selector values (after "k8s:") describing the
// pod, as SPIRE's: sa, ns, node-name, pod-uid, pod-name, the image
// counts, every container's and init container's image and image ID,
// the labels and the owners.
func (p *pod) podSelectors() []string {
	v := []string{
		"sa:" + p.Spec.ServiceAccountName,
		"ns:" + p.Metadata.Namespace,
		"node-name:" + p.Spec.NodeName,
		"pod-uid:" + p.Metadata.UID,
		"pod-name:" + p.Metadata.Name,
		"pod-image-count:" + strconv.Itoa(len(p.Status.ContainerStatuses)),
		"pod-init-image-count:" + strconv.Itoa(len(p.Status.InitContainerStatuses)),
	}
	for _, img := range images(p.Status.ContainerStatuses...) {
		v = append(v, "pod-image:"+img)
	}
	for _, img := range images(p.Status.InitContainerStatuses...) {
		v = append(v, "pod-init-image:"+img)
	}
	keys := make([]string, 0, len(p.Metadata.Labels))
	for k := range p.Metadata.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v = append(v, "pod-label:"+k+":"+p.Metadata.Labels[k])
	}
	for _, o := range p.Metadata.OwnerReferences {
		v = append(v, "pod-owner:"+o.Kind+":"+o.Name, "pod-owner-uid:"+o.Kind+":"+o.UID)
	}
	return v
}

// containerSelectors describe the workload's own container.
func containerSelectors(cs containerStatus) []string {
	v := []string{"container-name:" + cs.Name}
	for _, img := range images(cs) {
		v = append(v, "container-image:"+img)
	}
	return v
}

// images returns the distinct images and image IDs of the containers,
// sorted: SPIRE lists both so that an entry may name the tag (known
// before the image is pulled) or the digest.
func images(css ...containerStatus) []string {
	var out []string
	for _, cs := range css {
		out = append(out, cs.ImageID, cs.Image)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
