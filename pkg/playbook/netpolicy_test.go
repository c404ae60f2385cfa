package playbook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/secauto/secauto/pkg/job"
)

// fakeResolver answers for the names a test gives it and knows no others,
// so no test depends on real DNS. Like DNS, it ignores case.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	list, ok := f[strings.ToLower(host)]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range list {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func newPolicy(t *testing.T, c HTTPPolicyConfig) *HTTPPolicy {
	t.Helper()
	if c.Resolver == nil {
		c.Resolver = fakeResolver{}
	}
	p, err := NewHTTPPolicy(c)
	if err != nil {
		t.Fatalf("NewHTTPPolicy: %v", err)
	}
	return p
}

// callURL runs one GET step against url through the policy's client and
// returns the step's error ("" on success).
func callURL(t *testing.T, p *HTTPPolicy, url string) string {
	t.Helper()
	steps := []job.Step{{Name: "call", Action: "http", Params: map[string]any{"url": url}}}
	rc, err := runSteps(t, context.Background(), &Runner{Client: p.Client()}, steps, nil, &recorder{t: t})
	if err == nil {
		return ""
	}
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("Run = %v, want a step failure", err)
	}
	return rc.results[0].Error
}

func okServer(t *testing.T) (*httptest.Server, netip.AddrPort) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, netip.MustParseAddrPort(srv.Listener.Addr().String())
}

func wantDenied(t *testing.T, got string, parts ...string) {
	t.Helper()
	if !strings.Contains(got, "http steps may not connect to") {
		t.Fatalf("error = %q, want a policy refusal", got)
	}
	for _, s := range parts {
		if !strings.Contains(got, s) {
			t.Errorf("error = %q, want it to contain %q", got, s)
		}
	}
}

// TestAddressClassification covers the literal forms an address can take:
// the check is on the parsed address, so every spelling of a denied address
// must be denied.
func TestAddressClassification(t *testing.T) {
	p := newPolicy(t, HTTPPolicyConfig{})
	tests := []struct {
		addr string
		want string // substring of the refusal; "" means allowed
	}{
		{"169.254.169.254", "cloud metadata"},
		{"::ffff:169.254.169.254", "cloud metadata"},
		{"::ffff:a9fe:a9fe", "cloud metadata"},
		{"64:ff9b::a9fe:a9fe", "cloud metadata"},
		{"2002:a9fe:a9fe::1", "cloud metadata"},
		{"fd00:ec2::254", "cloud metadata"},
		{"100.100.100.200", "cloud metadata"},
		{"::ffff:100.100.100.200", "cloud metadata"},
		{"168.63.129.16", "cloud metadata"},
		{"169.254.170.2", "cloud metadata"},
		{"169.254.0.23", "link-local"},
		{"169.254.1.1", "link-local"},
		{"::ffff:169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"febf::1", "link-local"},
		{"0.0.0.0", "unspecified"},
		{"::ffff:0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"127.0.0.1", ""},
		{"127.1.2.3", ""},
		{"::1", ""},
		{"::ffff:127.0.0.1", ""},
		{"10.0.0.1", ""},
		{"172.16.5.4", ""},
		{"192.168.1.1", ""},
		{"100.64.0.1", ""},
		{"fd12:3456::1", ""},
		{"8.8.8.8", ""},
		{"2001:4860:4860::8888", ""},
		{"fec0::1", ""},
		{"64:ff9b::808:808", ""},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.addr)
		err := p.check(tt.addr, netip.AddrPortFrom(ip, 80))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: denied: %v", tt.addr, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want %q", tt.addr, err, tt.want)
		}
	}
}

// FuzzMappedForms: an IPv4 address and its IPv4-mapped and NAT64 forms
// must get the same verdict.
func FuzzMappedForms(f *testing.F) {
	for _, s := range []string{"169.254.169.254", "127.0.0.1", "0.0.0.0", "224.1.2.3", "10.1.2.3", "100.100.100.200", "255.255.255.255"} {
		f.Add(netip.MustParseAddr(s).AsSlice())
	}
	p, err := NewHTTPPolicy(HTTPPolicyConfig{DeniedNetworks: []string{"10.0.0.0/8"}, Resolver: fakeResolver{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 4 {
			return
		}
		v4 := netip.AddrFrom4([4]byte(b))
		v6 := v4.As16()
		mapped := netip.AddrFrom16(v6)
		nat := netip.AddrFrom16([16]byte{0, 0x64, 0xff, 0x9b, 10: 0, 11: 0, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
		base := p.check("", netip.AddrPortFrom(v4, 80)) == nil
		if got := p.check("", netip.AddrPortFrom(mapped, 80)) == nil; got != base {
			t.Errorf("%s allowed=%v but %s allowed=%v", v4, base, mapped, got)
		}
		if got := p.check("", netip.AddrPortFrom(nat, 80)) == nil; !base && got {
			t.Errorf("%s denied but its NAT64 form %s allowed", v4, nat)
		}
	})
}

// TestNameResolvingToMetadata: the check is on the resolved address, so a
// name gives no way around it.
func TestNameResolvingToMetadata(t *testing.T) {
	for _, addr := range []string{"169.254.169.254", "::ffff:169.254.169.254"} {
		p := newPolicy(t, HTTPPolicyConfig{Resolver: fakeResolver{"metadata.test": {addr}}})
		dialed := false
		p.dial = func(context.Context, string, string) (net.Conn, error) {
			dialed = true
			return nil, errors.New("dialed")
		}
		got := callURL(t, p, "http://u:pw@metadata.test/latest/meta-data?token=SECRET")
		wantDenied(t, got, "169.254.169.254:80 (metadata.test)", "cloud metadata", settingAllowedHosts)
		if dialed || strings.Contains(got, "SECRET") || strings.Contains(got, "pw") {
			t.Errorf("dialed=%v, error %q", dialed, got)
		}
	}
}

// TestMixedAnswerSkipsDenied: of a name's addresses only the allowed ones
// are connected to.
func TestMixedAnswerSkipsDenied(t *testing.T) {
	_, ap := okServer(t)
	p := newPolicy(t, HTTPPolicyConfig{Resolver: fakeResolver{"intel.test": {"169.254.169.254", "127.0.0.1"}}})
	var mu sync.Mutex
	var dialed []string
	d := p.dial
	p.dial = func(ctx context.Context, n, a string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, a)
		mu.Unlock()
		return d(ctx, n, a)
	}
	if got := callURL(t, p, "http://intel.test:"+itoa(ap.Port())+"/"); got != "" {
		t.Fatalf("step failed: %s", got)
	}
	if len(dialed) != 1 || !strings.HasPrefix(dialed[0], "127.0.0.1:") {
		t.Errorf("dialed %v, want only the loopback address", dialed)
	}
}

func TestDaemonAddressDenied(t *testing.T) {
	srv, ap := okServer(t)
	other, _ := okServer(t)
	for _, self := range []string{ap.String(), "0.0.0.0:" + itoa(ap.Port()), ":" + itoa(ap.Port())} {
		p := newPolicy(t, HTTPPolicyConfig{SelfAddrs: []string{self}})
		wantDenied(t, callURL(t, p, srv.URL+"/x"), ap.String(), "daemon's own API", "list "+ap.String()+" in "+settingAllowedHosts)
		if got := callURL(t, p, other.URL); got != "" {
			t.Errorf("self %s: another port on loopback refused: %s", self, got)
		}
	}
	// A plain address entry opens loopback tools, not the daemon's API.
	p := newPolicy(t, HTTPPolicyConfig{SelfAddrs: []string{ap.String()}, AllowedHosts: []string{"127.0.0.1"}})
	wantDenied(t, callURL(t, p, srv.URL), "daemon's own API")
	p = newPolicy(t, HTTPPolicyConfig{SelfAddrs: []string{ap.String()}, AllowedHosts: []string{ap.String()}})
	if got := callURL(t, p, srv.URL); got != "" {
		t.Errorf("allowed_hosts naming the daemon's address: %s", got)
	}
}

// TestRedirectToDeniedAddress: redirects connect anew, and are checked.
func TestRedirectToDeniedAddress(t *testing.T) {
	target, ap := okServer(t)
	front := httptest.NewServer(http.RedirectHandler(target.URL+"/api", http.StatusFound))
	t.Cleanup(front.Close)
	p := newPolicy(t, HTTPPolicyConfig{SelfAddrs: []string{ap.String()}})
	wantDenied(t, callURL(t, p, front.URL), ap.String(), "daemon's own API")
}

func TestAllowedHostsReallowsMetadata(t *testing.T) {
	// Nothing can listen on 169.254.169.254 in a test; a server on loopback
	// stands in, so the step is known to get past the policy.
	srv, ap := okServer(t)
	for _, entry := range []string{"169.254.169.254", "169.254.0.0/16", "169.254.169.254:80"} {
		p := newPolicy(t, HTTPPolicyConfig{AllowedHosts: []string{entry}, Resolver: fakeResolver{"metadata.test": {"169.254.169.254"}}})
		var dialed string
		p.dial = func(ctx context.Context, n, a string) (net.Conn, error) {
			dialed = a
			return (&net.Dialer{}).DialContext(ctx, n, ap.String())
		}
		if got := callURL(t, p, "http://metadata.test/latest"); got != "" {
			t.Errorf("allowed_hosts %q: %s", entry, got)
		}
		if dialed != "169.254.169.254:80" {
			t.Errorf("allowed_hosts %q: dialed %q", entry, dialed)
		}
		// allowed_hosts is an allow-list: the server's own address is not on it.
		wantDenied(t, callURL(t, p, srv.URL), "it is not in "+settingAllowedHosts, "add the host or address there")
	}
	// A name entry does not vouch for the address its DNS answers with.
	p := newPolicy(t, HTTPPolicyConfig{AllowedHosts: []string{"metadata.test"}, Resolver: fakeResolver{"metadata.test": {"169.254.169.254"}}})
	wantDenied(t, callURL(t, p, "http://metadata.test/"), "cloud metadata")
}

func TestAllowedHostsNames(t *testing.T) {
	srv, ap := okServer(t)
	port := itoa(ap.Port())
	res := fakeResolver{"intel.test": {"127.0.0.1"}, "api.intel.test": {"127.0.0.1"}, "other.test": {"127.0.0.1"}}
	tests := []struct {
		allowed []string
		url     string
		ok      bool
	}{
		{[]string{"intel.test"}, "http://intel.test:" + port, true},
		{[]string{"INTEL.test."}, "http://Intel.Test:" + port, true},
		{[]string{"intel.test"}, "http://other.test:" + port, false},
		{[]string{"intel.test"}, srv.URL, false},
		{[]string{"*.intel.test"}, "http://api.intel.test:" + port, true},
		{[]string{"*.intel.test"}, "http://intel.test:" + port, false},
		{[]string{"intel.test:" + port}, "http://intel.test:" + port, true},
		{[]string{"intel.test:1"}, "http://intel.test:" + port, false},
		{[]string{"127.0.0.0/8"}, "http://other.test:" + port, true},
		{[]string{"127.0.0.1:" + port}, srv.URL, true},
	}
	for _, tt := range tests {
		p := newPolicy(t, HTTPPolicyConfig{AllowedHosts: tt.allowed, Resolver: res})
		got := callURL(t, p, tt.url)
		if tt.ok && got != "" || !tt.ok && !strings.Contains(got, "it is not in "+settingAllowedHosts) {
			t.Errorf("allowed %v, GET %s: error %q, want ok=%v", tt.allowed, tt.url, got, tt.ok)
		}
	}
}

func TestDeniedNetworks(t *testing.T) {
	srv, ap := okServer(t)
	for _, cidr := range []string{"127.0.0.0/8", "127.0.0.1", "::ffff:127.0.0.0/104"} {
		// denied_networks wins even over an allowed_hosts entry.
		p := newPolicy(t, HTTPPolicyConfig{DeniedNetworks: []string{"192.0.2.0/24", cidr}, AllowedHosts: []string{"127.0.0.1"}})
		wantDenied(t, callURL(t, p, srv.URL+"/x?key=SECRET"), ap.String(), "listed in "+settingDeniedNetworks, "remove it from "+settingDeniedNetworks)
	}
	p := newPolicy(t, HTTPPolicyConfig{DeniedNetworks: []string{"10.0.0.0/8"}})
	if got := callURL(t, p, srv.URL); got != "" {
		t.Errorf("unrelated denied network refused the loopback server: %s", got)
	}
}

func TestPolicyConfigErrors(t *testing.T) {
	tests := []struct {
		c    HTTPPolicyConfig
		want string
	}{
		{HTTPPolicyConfig{AllowedHosts: []string{"ok.test", "bad host"}}, `playbook.http.allowed_hosts[1]: "bad host"`},
		{HTTPPolicyConfig{AllowedHosts: []string{"10.0.0.0/33"}}, "allowed_hosts[0]"},
		{HTTPPolicyConfig{AllowedHosts: []string{"intel.test:http"}}, "not a port number"},
		{HTTPPolicyConfig{AllowedHosts: []string{"-x.test"}}, "not a host name"},
		{HTTPPolicyConfig{DeniedNetworks: []string{"intel.test"}}, `playbook.http.denied_networks[0]: "intel.test"`},
		{HTTPPolicyConfig{DeniedNetworks: []string{"10.0.0.0/8", "10.0.0.0/x"}}, "denied_networks[1]"},
		{HTTPPolicyConfig{SelfAddrs: []string{"127.0.0.1"}}, "daemon address"},
	}
	for _, tt := range tests {
		tt.c.Resolver = fakeResolver{}
		_, err := NewHTTPPolicy(tt.c)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want %q", tt.c, err, tt.want)
		}
	}
	var pe *PolicyConfigError
	_, err := NewHTTPPolicy(HTTPPolicyConfig{DeniedNetworks: []string{"x"}})
	if !errors.As(err, &pe) || pe.Setting != settingDeniedNetworks || pe.Index != 0 {
		t.Errorf("error %v is not a *PolicyConfigError naming the entry", err)
	}
}

// TestEnvironmentProxyIgnored: a proxy would connect where the policy
// cannot see, so the step goes direct.
func TestEnvironmentProxyIgnored(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("http_proxy", "http://127.0.0.1:1")
	srv, _ := okServer(t)
	if got := callURL(t, newPolicy(t, HTTPPolicyConfig{}), srv.URL); got != "" {
		t.Errorf("step failed: %s", got)
	}
}

func itoa(port uint16) string { return strconv.Itoa(int(port)) }
