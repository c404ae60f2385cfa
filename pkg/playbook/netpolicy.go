package playbook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The settings a refusal names, so that the operator knows what to change.
const (
	settingAllowedHosts   = "playbook.http.allowed_hosts"
	settingDeniedNetworks = "playbook.http.denied_networks"
)

// DefaultMaxRedirects is how many redirects an http step follows when the
// policy sets no bound.
const DefaultMaxRedirects = 5

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// HTTPPolicyConfig says what http steps may reach and how they follow
// redirects. The zero value is the default policy.
type HTTPPolicyConfig struct {
	// AllowedHosts (playbook.http.allowed_hosts), when not empty, is the
	// only set http steps may reach. An entry is a host name ("intel.example"),
	// a wildcard for its subdomains ("*.example.com"), an address or a CIDR,
	// and a name or address may carry a port ("10.0.0.5:8443"). An address or
	// CIDR entry also re-allows addresses denied by default, such as
	// "169.254.169.254"; the daemon's own API is re-allowed only by an entry
	// naming its address and port. A name entry never re-allows: a name's
	// DNS answer is not the operator's word on the address.
	AllowedHosts []string
	// DeniedNetworks (playbook.http.denied_networks) are CIDRs or addresses
	// added to the deny list. They win over AllowedHosts.
	DeniedNetworks []string
	// SelfAddrs are the daemon's listen addresses as host:port. A host
	// that is empty or unspecified (0.0.0.0, ::) means every local address
	// on that port.
	SelfAddrs []string
	// MaxRedirects bounds the redirects a step follows; zero means
	// DefaultMaxRedirects, and a negative value follows none, so the step
	// sees the 3xx response itself (and fails unless allow_status lists it).
	MaxRedirects int
	// Resolver looks up host names; nil means net.DefaultResolver. The
	// policy checks the addresses it returns and connects to those very
	// addresses, so a second DNS answer cannot slip past the check.
	Resolver Resolver
}

// PolicyConfigError reports an entry of a policy setting that does not parse.
type PolicyConfigError struct {
	Setting string // e.g. "playbook.http.allowed_hosts"
	Index   int    // position of the entry in the setting's list
	Entry   string
	Err     error
}

func (e *PolicyConfigError) Error() string {
	return fmt.Sprintf("%s[%d]: %q: %v", e.Setting, e.Index, e.Entry, e.Err)
}

func (e *PolicyConfigError) Unwrap() error { return e.Err }

// DeniedError is the error of a connection the policy refused. Its message
// names the address and the setting that would allow it.
type DeniedError struct {
	Host    string         // host as the URL gave it
	Addr    netip.AddrPort // the resolved address that was refused
	Reason  string         // e.g. "it is a cloud metadata address"
	Setting string         // the setting to change
	Self    bool           // the address is the daemon's own API
	fix     string         // what the operator can do about it
}

func (e *DeniedError) Error() string {
	where := e.Addr.String()
	if h := strings.Trim(e.Host, "[]"); h != "" && h != e.Addr.Addr().String() {
		where += " (" + h + ")"
	}
	return fmt.Sprintf("http steps may not connect to %s: %s; %s", where, e.Reason, e.fix)
}

type allowEntry struct {
	name   string       // lower case; "*.x" matches subdomains of x
	prefix netip.Prefix // valid when the entry is an address or CIDR
	port   uint16       // zero: any port
}

type selfAddr struct {
	ip   netip.Addr // invalid: every local address
	port uint16
}

// HTTPPolicy enforces an HTTPPolicyConfig on the connections and redirects
// of http steps. It is safe for concurrent use.
type HTTPPolicy struct {
	allow        []allowEntry
	deny         []netip.Prefix
	self         []selfAddr
	maxRedirects int
	resolver     Resolver
	client       *http.Client
	// dial connects to a checked address; a test replaces it to reach a
	// server standing in for an address it cannot bind.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewHTTPPolicy checks c and builds the policy. A host name in SelfAddrs is
// resolved once, here.
func NewHTTPPolicy(c HTTPPolicyConfig) (*HTTPPolicy, error) {
	p := &HTTPPolicy{maxRedirects: c.MaxRedirects, resolver: c.Resolver}
	if p.maxRedirects == 0 {
		p.maxRedirects = DefaultMaxRedirects
	}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	for i, s := range c.AllowedHosts {
		e, err := parseAllowEntry(s)
		if err != nil {
			return nil, &PolicyConfigError{settingAllowedHosts, i, s, err}
		}
		p.allow = append(p.allow, e)
	}
	for i, s := range c.DeniedNetworks {
		pr, err := parsePrefix(s)
		if err != nil {
			return nil, &PolicyConfigError{settingDeniedNetworks, i, s, err}
		}
		p.deny = append(p.deny, pr)
	}
	for _, s := range c.SelfAddrs {
		addrs, err := p.parseSelf(s)
		if err != nil {
			return nil, fmt.Errorf("daemon address %q: %w", s, err)
		}
		p.self = append(p.self, addrs...)
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	p.dial = d.DialContext
	t := http.DefaultTransport.(*http.Transport).Clone()
	// A proxy would connect on the step's behalf to an address this policy
	// never sees, so $HTTP_PROXY and $HTTPS_PROXY do not apply to http steps.
	t.Proxy = nil
	t.DialContext = p.dialContext
	p.client = &http.Client{Transport: t, CheckRedirect: p.checkRedirect}
	return p, nil
}

// Client returns the client http steps should use: every connection it
// makes, redirects included, is checked against the policy. Set it as the
// Runner's Client.
func (p *HTTPPolicy) Client() *http.Client { return p.client }

func parseAllowEntry(s string) (allowEntry, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		pr, err := parsePrefix(s)
		return allowEntry{prefix: pr}, err
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return allowEntry{prefix: single(ip)}, nil
	}
	var e allowEntry
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return e, fmt.Errorf("port %q is not a port number", port)
		}
		host, e.port = h, uint16(n)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		e.prefix = single(ip)
		return e, nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if !validHostPattern(name) {
		return e, errors.New("is not a host name, address or CIDR")
	}
	e.name = name
	return e, nil
}

func validHostPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// parsePrefix accepts a CIDR or a lone address. IPv4-mapped forms are
// turned into IPv4, since addresses are compared in that form.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return netip.Prefix{}, errors.New("is not an address or CIDR")
		}
		return single(ip), nil
	}
	pr, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("is not a CIDR")
	}
	if pr.Addr().Is4In6() && pr.Bits() >= 96 {
		pr = netip.PrefixFrom(pr.Addr().Unmap(), pr.Bits()-96)
	}
	return pr.Masked(), nil
}

func single(ip netip.Addr) netip.Prefix {
	ip = ip.WithZone("").Unmap()
	return netip.PrefixFrom(ip, ip.BitLen())
}

func (p *HTTPPolicy) parseSelf(s string) ([]selfAddr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q is not a port number", port)
	}
	if host == "" {
		return []selfAddr{{port: uint16(n)}}, nil
	}
	ips, err := p.lookup(context.Background(), "ip", host)
	if err != nil {
		return nil, err
	}
	var out []selfAddr
	for _, ip := range ips {
		ip = ip.WithZone("").Unmap()
		if ip.IsUnspecified() {
			ip = netip.Addr{}
		}
		out = append(out, selfAddr{ip, uint16(n)})
	}
	return out, nil
}

func (p *HTTPPolicy) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return p.resolver.LookupNetIP(ctx, network, host)
}

// dialContext resolves the host itself and connects only to addresses the
// policy allows, so the check applies to the address really connected to.
func (p *HTTPPolicy) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q is not a port number", port)
	}
	family := "ip"
	switch network {
	case "tcp4":
		family = "ip4"
	case "tcp6":
		family = "ip6"
	}
	ips, err := p.lookup(ctx, family, host)
	if err != nil {
		return nil, err
	}
	var denied, dialErr error
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip, uint16(n))
		if err := p.check(host, ap); err != nil {
			if denied == nil {
				denied = err
			}
			continue
		}
		conn, err := p.dial(ctx, network, ap.String())
		if err == nil {
			return conn, nil
		}
		dialErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if dialErr != nil {
		return nil, dialErr
	}
	if denied != nil {
		return nil, denied
	}
	return nil, fmt.Errorf("lookup %s: no addresses", host)
}

// check decides whether a step may connect to ap, which host resolved to.
func (p *HTTPPolicy) check(host string, ap netip.AddrPort) error {
	ip, port := ap.Addr().WithZone("").Unmap(), ap.Port()
	deny := func(reason, setting string, self bool) *DeniedError {
		e := &DeniedError{Host: host, Addr: netip.AddrPortFrom(ip, port), Reason: reason, Setting: setting, Self: self}
		switch {
		case setting == settingDeniedNetworks:
			e.fix = "remove it from " + setting + " to allow it"
		case self:
			e.fix = "list " + e.Addr.String() + " in " + setting + " to allow it"
		default:
			e.fix = "list the address in " + setting + " to allow it"
		}
		return e
	}
	forms := embeddedForms(ip)
	for _, n := range p.deny {
		for _, f := range forms {
			if n.Contains(f) {
				return deny("it is in "+n.String()+", listed in "+settingDeniedNetworks, settingDeniedNetworks, false)
			}
		}
	}
	if p.isSelf(ip, port) && !p.allowsIP(ip, port, true) {
		return deny("it is the daemon's own API", settingAllowedHosts, true)
	}
	allowed := p.allowsIP(ip, port, false)
	if !allowed {
		for _, f := range forms {
			if r := defaultDenial(f); r != "" {
				return deny(r, settingAllowedHosts, false)
			}
		}
	}
	if len(p.allow) > 0 && !allowed && !p.allowsName(host, port) {
		e := deny("it is not in "+settingAllowedHosts, settingAllowedHosts, false)
		e.fix = "add the host or address there to allow it"
		return e
	}
	return nil
}

// allowsIP reports whether an address entry covers ip:port; withPort asks
// for an entry that names the port.
func (p *HTTPPolicy) allowsIP(ip netip.Addr, port uint16, withPort bool) bool {
	for _, e := range p.allow {
		if e.prefix.IsValid() && e.prefix.Contains(ip) && (e.port == port || e.port == 0 && !withPort) {
			return true
		}
	}
	return false
}

func (p *HTTPPolicy) allowsName(host string, port uint16) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, e := range p.allow {
		if e.name == "" || e.port != 0 && e.port != port {
			continue
		}
		if sub, ok := strings.CutPrefix(e.name, "*."); ok {
			if strings.HasSuffix(host, "."+sub) {
				return true
			}
		} else if host == e.name {
			return true
		}
	}
	return false
}

func (p *HTTPPolicy) isSelf(ip netip.Addr, port uint16) bool {
	for _, s := range p.self {
		if s.port != port {
			continue
		}
		if s.ip.IsValid() {
			if s.ip == ip {
				return true
			}
		} else if ip.IsLoopback() || isLocal(ip) {
			return true
		}
	}
	return false
}

// isLocal asks the system each time: interface addresses change under a
// running daemon (DHCP, VPNs).
func isLocal(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // unknown: deny rather than risk reaching the daemon
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if la, ok := netip.AddrFromSlice(n.IP); ok && la.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// embeddedForms gives ip and the IPv4 address it carries, if any: a NAT64
// or 6to4 address reaches its IPv4 address through a gateway. IPv4-mapped
// addresses were already unmapped by the caller.
func embeddedForms(ip netip.Addr) []netip.Addr {
	b := ip.As16()
	switch {
	case ip.Is6() && nat64.Contains(ip):
		return []netip.Addr{ip, netip.AddrFrom4([4]byte(b[12:16]))}
	case ip.Is6() && sixTo4.Contains(ip):
		return []netip.Addr{ip, netip.AddrFrom4([4]byte(b[2:6]))}
	}
	return []netip.Addr{ip}
}

// metadataAddrs are the instance metadata and host services of the common
// clouds: they hand out credentials to whoever asks from the instance.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true, // AWS, GCP, Azure, OCI, OpenStack, DigitalOcean
	netip.MustParseAddr("169.254.170.2"):   true, // AWS ECS task credentials
	netip.MustParseAddr("fd00:ec2::254"):   true, // AWS IMDS over IPv6
	netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud
	netip.MustParseAddr("168.63.129.16"):   true, // Azure WireServer
}

var thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

// defaultDenial says why ip is denied by default, or "" when it is not.
// Loopback and private networks stay reachable: the tools a SOC automates
// live there.
func defaultDenial(ip netip.Addr) string {
	switch {
	case metadataAddrs[ip]:
		return "it is a cloud metadata address"
	case ip.IsUnspecified() || thisNetwork.Contains(ip):
		// Connecting to 0.0.0.0 reaches the local host on most systems.
		return "it is an unspecified address"
	case ip.IsLinkLocalUnicast():
		return "it is a link-local address"
	case ip.IsMulticast():
		return "it is a multicast address"
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "it is the broadcast address"
	}
	return ""
}
