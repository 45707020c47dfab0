package links

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/skip2/go-qrcode"
	"gopkg.in/yaml.v3"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Content types of the subscription formats.
const (
	ContentTypeBase64  = "text/plain; charset=utf-8"
	ContentTypeClash   = "application/yaml; charset=utf-8"
	ContentTypeSingBox = "application/json"
)

// Subscription renders links in format (user.Format*) and returns the body
// and its content type.
func Subscription(links []user.Link, format string) (body, contentType string, err error) {
	switch format {
	case "", user.FormatBase64:
		return Base64(links), ContentTypeBase64, nil
	case user.FormatClash:
		b, err := Clash(links)
		return string(b), ContentTypeClash, err
	case user.FormatSingBox:
		b, err := SingBox(links)
		return string(b), ContentTypeSingBox, err
	case user.FormatOutline:
		b, err := Outline(links)
		return b, ContentTypeOutline, err
	}
	return "", "", errs.Field("format", "must be base64, clash, sing-box or outline")
}

// Base64 is the classic subscription body: standard base64 of the links
// joined by newlines.
func Base64(links []user.Link) string {
	urls := make([]string, len(links))
	for i, l := range links {
		urls[i] = l.URL
	}
	return base64.StdEncoding.EncodeToString([]byte(strings.Join(urls, "\n")))
}

// parsed returns the params of every link, with names made unique (clients
// key proxies by name).
func parsed(links []user.Link) ([]Params, error) {
	out := make([]Params, 0, len(links))
	seen := map[string]int{}
	for _, l := range links {
		p, err := Parse(l.URL)
		if err != nil {
			return nil, fmt.Errorf("rendering link of server %s: %w", l.Server, err)
		}
		seen[p.Name]++
		if n := seen[p.Name]; n > 1 {
			p.Name = fmt.Sprintf("%s (%d)", p.Name, n)
		}
		out = append(out, p)
	}
	return out, nil
}

// ClashProxy is one entry of a Clash/mihomo "proxies" list.
type ClashProxy struct {
	Name    string `yaml:"name"`
	Type    string `yaml:"type"`
	Server  string `yaml:"server"`
	Port    int    `yaml:"port"`
	UDP     bool   `yaml:"udp,omitempty"`
	UUID    string `yaml:"uuid,omitempty"`
	Network string `yaml:"network,omitempty"`
	TLS     bool   `yaml:"tls,omitempty"`
	Flow    string `yaml:"flow,omitempty"`
	SNI     string `yaml:"servername,omitempty"`
	Reality *struct {
		PublicKey string `yaml:"public-key"`
		ShortID   string `yaml:"short-id"`
	} `yaml:"reality-opts,omitempty"`
	Fingerprint string `yaml:"client-fingerprint,omitempty"`
	Cipher      string `yaml:"cipher,omitempty"`
	Username    string `yaml:"username,omitempty"`
	Password    string `yaml:"password,omitempty"`
}

// Groups of the Clash config around the proxies, and how the automatic
// group tests them (the probe both clients use by default).
const (
	clashSelect   = "vpnfleet"
	clashURLTest  = "auto"
	probeURL      = "https://www.gstatic.com/generate_204"
	probeInterval = 300 // seconds
)

// Clash renders links as a Clash/mihomo config: the proxies, a url-test
// group "auto" over them (the client moves to a server that answers when
// the one in use stops), and a select group "vpnfleet" offering "auto"
// first, so that failing over is what a client does unless its user picks
// a server by hand.
func Clash(links []user.Link) ([]byte, error) {
	ps, err := parsed(links)
	if err != nil {
		return nil, err
	}
	proxies := make([]ClashProxy, 0, len(ps))
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		name := p.Name
		switch name {
		case clashSelect, clashURLTest:
			name += " (server)"
		}
		c := ClashProxy{Name: name, Server: p.Host, Port: p.Port}
		if k, ok := kinds[p.Protocol]; ok {
			k.clash(p, &c)
		}
		proxies = append(proxies, c)
		names = append(names, name)
	}
	groups := []map[string]any{{"name": clashSelect, "type": "select", "proxies": names}}
	if len(names) > 0 {
		groups = []map[string]any{
			{"name": clashSelect, "type": "select", "proxies": append([]string{clashURLTest}, names...)},
			{"name": clashURLTest, "type": "url-test", "proxies": names, "url": probeURL, "interval": probeInterval},
		}
	}
	doc := map[string]any{
		"proxies":      proxies,
		"proxy-groups": groups,
		"rules":        []string{"MATCH," + clashSelect},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding clash config: %w", err)
	}
	return out, nil
}

// SingBoxOutbound is one sing-box outbound: a proxy (server set) or a group
// over other outbounds' tags (selector, urltest).
type SingBoxOutbound struct {
	Type       string      `json:"type"`
	Tag        string      `json:"tag"`
	Server     string      `json:"server,omitempty"`
	ServerPort int         `json:"server_port,omitempty"`
	Outbounds  []string    `json:"outbounds,omitempty"`
	Default    string      `json:"default,omitempty"`
	URL        string      `json:"url,omitempty"`
	UUID       string      `json:"uuid,omitempty"`
	Flow       string      `json:"flow,omitempty"`
	Method     string      `json:"method,omitempty"`
	Version    string      `json:"version,omitempty"`
	Username   string      `json:"username,omitempty"`
	Password   string      `json:"password,omitempty"`
	TLS        *SingBoxTLS `json:"tls,omitempty"`
}

// SingBoxTLS is a sing-box outbound's TLS with uTLS and REALITY.
type SingBoxTLS struct {
	Enabled    bool   `json:"enabled"`
	ServerName string `json:"server_name"`
	UTLS       struct {
		Enabled     bool   `json:"enabled"`
		Fingerprint string `json:"fingerprint"`
	} `json:"utls"`
	Reality struct {
		Enabled   bool   `json:"enabled"`
		PublicKey string `json:"public_key"`
		ShortID   string `json:"short_id"`
	} `json:"reality"`
}

// Tags and listener of the sing-box profile around the proxies.
const (
	singBoxSelector   = "proxy"
	singBoxURLTest    = "auto"
	singBoxDirect     = "direct"
	singBoxInbound    = "mixed-in"
	singBoxListen     = "127.0.0.1"
	singBoxListenPort = 2080
)

// SingBox renders links as a sing-box profile usable as delivered: a mixed
// (SOCKS and HTTP) inbound on 127.0.0.1:2080, one outbound per link, a
// selector "proxy" over every proxy plus "auto" (a urltest over every
// proxy, which moves to a server that answers when the one in use stops),
// defaulting to "auto", a direct outbound, and a route whose final
// outbound is the selector. With no links, traffic into the inbound is rejected rather than
// sent direct.
func SingBox(links []user.Link) ([]byte, error) {
	ps, err := parsed(links)
	if err != nil {
		return nil, err
	}
	outs := make([]SingBoxOutbound, 0, len(ps)+3)
	tags := make([]string, 0, len(ps))
	for _, p := range ps {
		tag := p.Name
		switch tag {
		case singBoxSelector, singBoxURLTest, singBoxDirect:
			tag += " (server)"
		}
		o := SingBoxOutbound{Tag: tag, Server: p.Host, ServerPort: p.Port}
		if k, ok := kinds[p.Protocol]; ok {
			k.singBox(p, &o)
		}
		outs = append(outs, o)
		tags = append(tags, tag)
	}
	route := map[string]any{}
	if len(tags) > 0 {
		outs = append(outs,
			SingBoxOutbound{Type: "selector", Tag: singBoxSelector, Outbounds: append(append([]string{}, tags...), singBoxURLTest), Default: singBoxURLTest},
			SingBoxOutbound{Type: "urltest", Tag: singBoxURLTest, Outbounds: tags, URL: probeURL})
		route["final"] = singBoxSelector
	} else {
		route["rules"] = []map[string]any{{"inbound": []string{singBoxInbound}, "action": "reject"}}
	}
	outs = append(outs, SingBoxOutbound{Type: "direct", Tag: singBoxDirect})
	doc := map[string]any{
		"inbounds": []map[string]any{{
			"type": "mixed", "tag": singBoxInbound, "listen": singBoxListen, "listen_port": singBoxListenPort,
		}},
		"outbounds": outs,
		"route":     route,
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding sing-box config: %w", err)
	}
	return out, nil
}

// QR sizes.
const (
	DefaultQRSize = 256
	maxQRContent  = 2048
)

// QR encodes content as a PNG of size pixels and as text for a terminal
// (two rows per line).
func QR(content string, size int) (png []byte, text string, err error) {
	if size == 0 {
		size = DefaultQRSize
	}
	var fe []errs.FieldError
	if content == "" || len(content) > maxQRContent {
		fe = append(fe, errs.FieldError{Field: "content", Rule: fmt.Sprintf("must be 1-%d bytes", maxQRContent)})
	}
	if size < 64 || size > 1024 {
		fe = append(fe, errs.FieldError{Field: "size", Rule: "must be 64-1024"})
	}
	if err := errs.Fields(fe...); err != nil {
		return nil, "", err
	}
	q, err := qrcode.New(content, qrcode.Medium)
	if err != nil {
		return nil, "", errs.Wrap(errs.Invalid, err, "encoding qr code")
	}
	png, err = q.PNG(size)
	if err != nil {
		return nil, "", fmt.Errorf("rendering qr code: %w", err)
	}
	return png, q.ToSmallString(false), nil
}
