// A CoreDNS for the local node with only the plugins cluster DNS needs:
// kubernetes (Service and pod records), cache, health and errors. Nothing
// forwards outside the cluster: pods here must not reach the outside.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"

	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/core/dnsserver"
)

func main() { coremain.Run() }
