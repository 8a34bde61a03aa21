package proc

import (
	"bytes"
	"regexp"
	"strings"
)

// cgroup is the process's cgroup path from /proc/PID/cgroup: the unified
// hierarchy's ("0::/..."), else the first controller's.
func (r *procReader) cgroup(pid uint32) string {
	b, _ := r.read(pid, "cgroup")
	first := ""
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		parts := bytes.SplitN(line, []byte(":"), 3)
		if len(parts) != 3 {
			continue
		}
		if string(parts[0]) == "0" && len(parts[1]) == 0 {
			return string(parts[2])
		}
		if first == "" {
			first = string(parts[2])
		}
	}
	return first
}

var (
	// A runtime's scope or directory holding a 64-hex container id:
	// docker (docker-ID.scope, /docker/ID), containerd and Kubernetes
	// (cri-containerd-ID.scope, /kubepods/.../ID), CRI-O (crio-ID.scope),
	// podman (libpod-ID.scope, /libpod_parent/libpod-ID).
	containerScope = regexp.MustCompile(`^(?:docker|cri-containerd|crio|libpod)-([0-9a-f]{64})(?:\.scope)?$`)
	hexID          = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// systemd-nspawn and machinectl: /machine.slice/machine-NAME.scope.
	machineScope = regexp.MustCompile(`^machine-(.+)\.scope$`)
)

// ContainerID is the container a cgroup path belongs to, for the usual
// runtimes' layouts: the 64-hex id of docker, containerd (Kubernetes),
// CRI-O and podman containers, or the machine name of systemd-nspawn;
// "" for none.
func ContainerID(cgroup string) string {
	parts := strings.Split(cgroup, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		if m := containerScope.FindStringSubmatch(p); m != nil {
			return m[1]
		}
		if hexID.MatchString(p) && i > 0 {
			switch prev := parts[i-1]; {
			case prev == "docker", prev == "libpod_parent", strings.HasPrefix(prev, "pod"), strings.HasPrefix(prev, "kubepods"):
				return p
			}
		}
		if m := machineScope.FindStringSubmatch(p); m != nil && i > 0 && parts[i-1] == "machine.slice" {
			return strings.ReplaceAll(m[1], `\x2d`, "-")
		}
	}
	return ""
}
