package proc

import (
	"os"
	"path/filepath"
	"testing"
)

func TestContainerID(t *testing.T) {
	id := "3f4e1a9c0b2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f"
	for cg, want := range map[string]string{
		"/system.slice/docker-" + id + ".scope": id, // docker, systemd driver
		"/docker/" + id:                         id, // docker, cgroupfs driver
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podabc.slice/cri-containerd-" + id + ".scope": id,
		"/kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/" + id:                                       id,
		"/kubepods.slice/kubepods-pod1.slice/crio-" + id + ".scope":                                                id,
		"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope":                         id, // rootless podman
		"/machine.slice/libpod-" + id + ".scope/container":                                                         id,
		"/machine.slice/machine-web\\x2d1.scope/payload":                                                           "web-1", // systemd-nspawn
		"/user.slice/user-1000.slice/session-3.scope":                                                              "",
		"/":                        "",
		"/system.slice/" + id[:63]: "",
	} {
		if got := ContainerID(cg); got != want {
			t.Errorf("ContainerID(%q) = %q, want %q", cg, got, want)
		}
	}
}

// A process's cgroup is read with its names and inherited at fork.
func TestTableCgroup(t *testing.T) {
	f := newFakeProc(t)
	id := "3f4e1a9c0b2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f"
	f.add(100, 1, "app", 50, "/app")
	os.WriteFile(filepath.Join(f.root, "100", "cgroup"), []byte("1:cpu:/\n0::/system.slice/docker-"+id+".scope\n"), 0o644)
	tab := NewTable(withRoot(f.root))
	tab.Seed()
	fork := &Fork{Header: Header{What: WhatFork, TimestampNS: 1}, ParentPID: 100, ParentTGID: 100, ChildPID: 101, ChildTGID: 101}
	tab.Update(fork)
	if p := fork.Process; p.Cgroup != "/system.slice/docker-"+id+".scope" || p.Container != id {
		t.Fatalf("forked child: cgroup %q container %q", p.Cgroup, p.Container)
	}
}
