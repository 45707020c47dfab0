package xray

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
)

// Tags of the outbounds every config has.
const (
	OutboundDirect = "direct"
	OutboundBlock  = "block"
)

// privateCIDRs are the destinations blocked unless Spec.AllowPrivateNetworks:
// the host itself, private and shared ranges, link-local (cloud metadata) and
// multicast. Listed explicitly because "geoip:private" needs geoip.dat, which
// a binary built from the module does not ship.
var privateCIDRs = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
}

// BuildConfig validates spec and writes the Xray JSON config for it: the
// user inbounds, a loopback API inbound serving HandlerService and
// StatsService, per-user traffic counters (policy level 0), a freedom
// outbound and a blackhole one. Shadowsocks-2022, SOCKS5 and HTTP inbounds
// also get a placeholder account with random credentials (see Client), so
// the output differs from call to call: compare specs, not config bytes.
func BuildConfig(spec Spec) ([]byte, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("validating xray spec: %w", err)
	}
	api, _ := netip.ParseAddrPort(spec.APIListen)
	level := spec.LogLevel
	if level == "" {
		level = "warning"
	}
	cfg := config{
		Log:   logConfig{Level: level, Access: "none"},
		API:   apiConfig{Tag: APITag, Services: []string{"HandlerService", "StatsService"}},
		Stats: struct{}{},
		Policy: policyConfig{
			Levels: map[string]levelPolicy{"0": {StatsUserUplink: true, StatsUserDownlink: true}},
			System: systemPolicy{
				StatsInboundUplink: true, StatsInboundDownlink: true,
				StatsOutboundUplink: true, StatsOutboundDownlink: true,
			},
		},
		Inbounds: []inboundConfig{{
			Tag:      APITag,
			Listen:   api.Addr().String(),
			Port:     int(api.Port()),
			Protocol: "dokodemo-door",
			Settings: map[string]any{"address": api.Addr().String()},
		}},
		Outbounds: []outboundConfig{
			{Tag: OutboundDirect, Protocol: "freedom"},
			{Tag: OutboundBlock, Protocol: "blackhole"},
		},
		Routing: routingConfig{
			DomainStrategy: "AsIs",
			Rules:          []routingRule{{Type: "field", InboundTag: []string{APITag}, OutboundTag: APITag}},
		},
	}
	if !spec.AllowPrivateNetworks {
		cfg.Routing.Rules = append(cfg.Routing.Rules, routingRule{Type: "field", IP: privateCIDRs, OutboundTag: OutboundBlock})
	}
	for _, in := range spec.Inbounds {
		ic, err := inboundJSON(in)
		if err != nil {
			return nil, fmt.Errorf("building inbound %s: %w", in.Tag, err)
		}
		cfg.Inbounds = append(cfg.Inbounds, ic)
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding xray config: %w", err)
	}
	return out, nil
}

func inboundJSON(in Inbound) (inboundConfig, error) {
	listen := in.Listen
	if listen == "" {
		listen = "0.0.0.0"
	}
	ic := inboundConfig{Tag: in.Tag, Listen: listen, Port: in.Port}
	k, ok := kinds[in.Protocol]
	if !ok {
		return ic, fmt.Errorf("unknown protocol %s", strconv.Quote(string(in.Protocol)))
	}
	return ic, k.render(in, &ic)
}

func flowOf(u User) string {
	if u.Flow == "" {
		return FlowVision
	}
	return u.Flow
}

// mustKeyLen is SS2022KeyLen for a method Validate already accepted.
func mustKeyLen(method string) int {
	n, _ := SS2022KeyLen(method)
	return n
}

// The JSON shapes of Xray's config, only the parts this package writes.
type (
	config struct {
		Log       logConfig        `json:"log"`
		API       apiConfig        `json:"api"`
		Stats     struct{}         `json:"stats"`
		Policy    policyConfig     `json:"policy"`
		Inbounds  []inboundConfig  `json:"inbounds"`
		Outbounds []outboundConfig `json:"outbounds"`
		Routing   routingConfig    `json:"routing"`
	}
	logConfig struct {
		Level  string `json:"loglevel"`
		Access string `json:"access"`
	}
	apiConfig struct {
		Tag      string   `json:"tag"`
		Services []string `json:"services"`
	}
	policyConfig struct {
		Levels map[string]levelPolicy `json:"levels"`
		System systemPolicy           `json:"system"`
	}
	levelPolicy struct {
		StatsUserUplink   bool `json:"statsUserUplink"`
		StatsUserDownlink bool `json:"statsUserDownlink"`
	}
	systemPolicy struct {
		StatsInboundUplink    bool `json:"statsInboundUplink"`
		StatsInboundDownlink  bool `json:"statsInboundDownlink"`
		StatsOutboundUplink   bool `json:"statsOutboundUplink"`
		StatsOutboundDownlink bool `json:"statsOutboundDownlink"`
	}
	inboundConfig struct {
		Tag            string          `json:"tag"`
		Listen         string          `json:"listen"`
		Port           int             `json:"port"`
		Protocol       string          `json:"protocol"`
		Settings       any             `json:"settings"`
		StreamSettings *streamSettings `json:"streamSettings,omitempty"`
	}
	streamSettings struct {
		Network  string           `json:"network"`
		Security string           `json:"security"`
		Reality  *realitySettings `json:"realitySettings,omitempty"`
	}
	realitySettings struct {
		Show        bool     `json:"show"`
		Target      string   `json:"target"`
		Xver        int      `json:"xver"`
		ServerNames []string `json:"serverNames"`
		PrivateKey  string   `json:"privateKey"`
		ShortIDs    []string `json:"shortIds"`
	}
	outboundConfig struct {
		Tag      string `json:"tag"`
		Protocol string `json:"protocol"`
	}
	routingConfig struct {
		DomainStrategy string        `json:"domainStrategy"`
		Rules          []routingRule `json:"rules"`
	}
	routingRule struct {
		Type        string   `json:"type"`
		InboundTag  []string `json:"inboundTag,omitempty"`
		IP          []string `json:"ip,omitempty"`
		OutboundTag string   `json:"outboundTag"`
	}
)
