//go:build tools

// Package tools pins the Kubernetes binaries so `go mod tidy` keeps them;
// deploy/local/build-kube builds the control plane (etcd, kube-apiserver,
// kube-controller-manager) and the node (kubelet, kube-proxy,
// kube-scheduler) from this module.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
