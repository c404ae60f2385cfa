package server

import (
	"fmt"
	"net"

	"github.com/secauto/secauto/pkg/playbook"
)

// stepRunner is the Runner jobs run with once the API listens on ln: its
// http steps go through the policy of o.HTTPPolicy, which also keeps them
// from calling the daemon's own API at its actual address (known only now,
// with port 0). A Runner with a Client of its own is kept as it is.
func stepRunner(o Options, ln net.Listener) (*playbook.Runner, error) {
	if o.Runner != nil && o.Runner.Client != nil {
		return o.Runner, nil
	}
	var pc playbook.HTTPPolicyConfig
	if o.HTTPPolicy != nil {
		pc = *o.HTTPPolicy
	}
	pc.SelfAddrs = append(append([]string(nil), pc.SelfAddrs...), ln.Addr().String())
	p, err := playbook.NewHTTPPolicy(pc)
	if err != nil {
		return nil, fmt.Errorf("http step policy: %w", err)
	}
	r := playbook.Runner{}
	if o.Runner != nil {
		r = *o.Runner
	}
	r.Client = p.Client()
	return &r, nil
}
