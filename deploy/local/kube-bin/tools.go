//go:build tools

// Package tools pins the three control-plane binaries so `go mod tidy`
// keeps them; deploy/local/cluster builds them from this module.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
