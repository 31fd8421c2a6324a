package config

import (
	"strings"
	"testing"
)

func TestDNSValidate(t *testing.T) {
	if err := defaultDNS().validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		name   string
		mutate func(*DNS)
		want   string
	}{
		{"zone", func(d *DNS) { d.Zone = "test." }, "dns.zone"},
		{"port", func(d *DNS) { d.Port = 70000 }, "dns.port"},
		{"ip", func(d *DNS) { d.AuthIP = "localhost" }, "dns.auth_ip"},
		{"same ips", func(d *DNS) { d.TLDIP = d.RootIP }, "dns.root_ip"},
		{"gateway", func(d *DNS) { d.Gateways = []string{"gw"} }, "dns.gateways"},
		{"gateway key", func(d *DNS) { d.Gateways = []string{"gw 127.0.0.1 colour=red"} }, "dns.gateways"},
		{"edge region", func(d *DNS) { d.Edges = []string{"e 127.0.0.1"} }, "dns.edges"},
		{"edge health", func(d *DNS) { d.Edges = []string{"e 127.0.0.1 region=x health=ftp://x"} }, "dns.edges"},
		{"regions", func(d *DNS) { d.Regions = []string{"10.0.0.0/8"} }, "dns.regions"},
		{"ttl", func(d *DNS) { d.DynamicTTL = 0 }, "dns.dynamic_ttl"},
		{"health", func(d *DNS) { d.HealthInterval = 0 }, "dns.health_interval"},
		{"rrl", func(d *DNS) { d.RRLRate = -1 }, "dns.rrl_rate"},
		{"notify", func(d *DNS) { d.Notify = []string{"knot.example:53"} }, "dns.notify"},
		{"transfer", func(d *DNS) { d.TransferAllow = []string{"10.0.0.1"} }, "dns.transfer_allow"},
	} {
		d := defaultDNS()
		c.mutate(&d)
		err := d.validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s", c.name, err, c.want)
		}
	}
	d := defaultDNS()
	d.Enabled = false
	d.Zone = ""
	if err := d.validate(); err != nil {
		t.Errorf("disabled DNS is not checked: %v", err)
	}
	d = defaultDNS()
	d.Edges = []string{"edge-us 192.0.2.20 region=us weight=2 health=http://192.0.2.20:8081/healthz"}
	d.Gateways = []string{"gateway-2 192.0.2.30 health=tcp://192.0.2.30:8080"}
	d.Notify = []string{"127.0.0.1:5399"}
	if err := d.validate(); err != nil {
		t.Errorf("valid targets: %v", err)
	}
}
