package links_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"pgregory.net/rapid"

	"github.com/vpnfleet/vpnfleet/services/users/internal/links"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func genHost() *rapid.Generator[string] {
	return rapid.OneOf(
		rapid.Custom(func(t *rapid.T) string {
			b := rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "v4")
			return netip.AddrFrom4([4]byte(b)).String()
		}),
		rapid.Custom(func(t *rapid.T) string {
			b := rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "v6")
			return netip.AddrFrom16([16]byte(b)).String()
		}),
		rapid.StringMatching(`[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,3}`),
	)
}

func genB64(n int, enc *base64.Encoding) *rapid.Generator[string] {
	return rapid.Map(rapid.SliceOfN(rapid.Byte(), n, n), enc.EncodeToString)
}

var genUUID = rapid.StringMatching(`[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)

// genParams draws the fields of any link, with free text where clients
// allow it (names, proxy accounts).
func genParams(t *rapid.T) links.Params {
	p := links.Params{
		Protocol: rapid.SampledFrom(user.Protocols).Draw(t, "protocol"),
		Host:     genHost().Draw(t, "host"),
		Port:     rapid.IntRange(1, 65535).Draw(t, "port"),
		Name:     rapid.String().Draw(t, "name"),
	}
	switch p.Protocol {
	case user.VLESSReality:
		p.UUID = genUUID.Draw(t, "uuid")
		p.Flow = user.FlowVision
		p.SNI = rapid.StringMatching(`[a-z0-9]{1,20}\.[a-z]{2,6}`).Draw(t, "sni")
		p.PublicKey = genB64(32, base64.RawURLEncoding).Draw(t, "pbk")
		p.ShortID = rapid.StringMatching(`([0-9a-f]{2}){0,8}`).Draw(t, "sid")
		p.Fingerprint = rapid.SampledFrom([]string{"chrome", "firefox", "safari", "ios", "random"}).Draw(t, "fp")
	case user.Shadowsocks2022:
		p.Method = rapid.SampledFrom([]string{user.SS2022AES128GCM, user.SS2022AES256GCM}).Draw(t, "method")
		n, _ := user.SS2022KeyLen(p.Method)
		p.Password = genB64(n, base64.StdEncoding).Draw(t, "server key") + ":" + genB64(n, base64.StdEncoding).Draw(t, "user key")
	default:
		p.Username = rapid.String().Draw(t, "username")
		p.Password = rapid.String().Draw(t, "password")
	}
	return p
}

func TestEveryLinkParsesBackToItsFields(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := genParams(t)
		link := links.Build(p)
		got, err := links.Parse(link)
		if err != nil {
			t.Fatalf("parsing %s: %v", link, err)
		}
		if got != p {
			t.Fatalf("link %s\nparsed %+v\nwant   %+v", link, got, p)
		}
	})
}

// genUserAndServers draws a user with real credentials and servers on a
// few nodes, some applied, some not.
func genUserAndServers(t *rapid.T) (user.User, []server.Server) {
	method := rapid.SampledFrom([]string{user.SS2022AES128GCM, user.SS2022AES256GCM}).Draw(t, "user method")
	n, _ := user.SS2022KeyLen(method)
	id := genUUID.Draw(t, "id")
	u := user.User{
		ID:        id,
		Name:      rapid.StringMatching(`[A-Za-z0-9_-]{3,32}`).Draw(t, "user name"),
		Protocols: user.Protocols,
		Credentials: user.Credentials{
			VLESS:       &user.VLESS{UUID: genUUID.Draw(t, "vless uuid"), Flow: user.FlowVision},
			Shadowsocks: &user.Shadowsocks{Method: method, Key: genB64(n, base64.StdEncoding).Draw(t, "user key")},
			SOCKS5:      &user.Proxy{Username: id, Password: rapid.StringMatching(`[A-Za-z0-9]{24}`).Draw(t, "socks pw")},
			HTTP:        &user.Proxy{Username: id, Password: rapid.StringMatching(`[A-Za-z0-9]{24}`).Draw(t, "http pw")},
		},
		Placement: user.Placement{All: true},
	}
	var servers []server.Server
	for i := range rapid.IntRange(1, 4).Draw(t, "servers") {
		s := server.Server{ID: fmt.Sprintf("s%d", i), Node: fmt.Sprintf("n%d", i), Name: rapid.String().Draw(t, "server name"), Engine: server.EngineXray}
		if rapid.Bool().Draw(t, "applied") {
			s.Status = server.Status{State: server.StateApplied, PublicHost: genHost().Draw(t, "public host")}
		}
		for j, p := range user.Protocols {
			in := server.Inbound{Tag: fmt.Sprintf("in%d", j), Protocol: p, Port: rapid.IntRange(1, 65535).Draw(t, "port")}
			switch p {
			case user.VLESSReality:
				in.Reality = &server.Reality{
					ServerNames: []string{rapid.StringMatching(`[a-z]{1,10}\.com`).Draw(t, "sni")},
					PublicKey:   genB64(32, base64.RawURLEncoding).Draw(t, "pbk"),
					ShortIDs:    []string{rapid.StringMatching(`([0-9a-f]{2}){1,8}`).Draw(t, "sid")},
				}
			case user.Shadowsocks2022:
				in.Shadowsocks = &server.Shadowsocks{Method: method, ServerKey: genB64(n, base64.StdEncoding).Draw(t, "server key")}
			}
			s.Inbounds = append(s.Inbounds, in)
		}
		servers = append(servers, s)
	}
	return u, servers
}

func TestUserLinksCarryTheRealServerAndCredentials(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		u, servers := genUserAndServers(t)
		ls, missing := links.ForUser(u, servers, nil, nil)
		applied := 0
		byID := map[string]server.Server{}
		for _, s := range servers {
			byID[s.ID] = s
			if s.Status.State == server.StateApplied {
				applied++
			}
		}
		if len(ls) != applied*len(user.Protocols) || len(missing) != (len(servers)-applied)*len(user.Protocols) {
			t.Fatalf("%d links and %d missing for %d applied of %d servers", len(ls), len(missing), applied, len(servers))
		}
		for _, l := range ls {
			s := byID[l.Server]
			p, err := links.Parse(l.URL)
			if err != nil {
				t.Fatalf("parsing %s: %v", l.URL, err)
			}
			var in server.Inbound
			for _, i := range s.Inbounds {
				if i.Tag == l.Inbound {
					in = i
				}
			}
			label := s.Name
			if label == "" {
				label = s.Node
			}
			if p.Protocol != l.Protocol || p.Host != s.Status.PublicHost || p.Port != in.Port || p.Name != u.Name+"@"+label {
				t.Fatalf("link %s: %+v", l.URL, p)
			}
			c := u.Credentials
			switch p.Protocol {
			case user.VLESSReality:
				if p.UUID != c.VLESS.UUID || p.Flow != user.FlowVision || p.SNI != in.Reality.ServerNames[0] ||
					p.PublicKey != in.Reality.PublicKey || p.ShortID != in.Reality.ShortIDs[0] || p.Fingerprint != "chrome" {
					t.Fatalf("vless link %s: %+v", l.URL, p)
				}
				if !strings.Contains(l.URL, "type=tcp&security=reality&encryption=none&flow=xtls-rprx-vision") {
					t.Fatalf("vless link %s lacks the fixed parameters", l.URL)
				}
			case user.Shadowsocks2022:
				if p.Method != in.Shadowsocks.Method || p.Password != in.Shadowsocks.ServerKey+":"+c.Shadowsocks.Key {
					t.Fatalf("ss link %s: %+v", l.URL, p)
				}
			case user.SOCKS5:
				if p.Username != c.SOCKS5.Username || p.Password != c.SOCKS5.Password {
					t.Fatalf("socks link %s: %+v", l.URL, p)
				}
			case user.HTTP:
				if p.Username != c.HTTP.Username || p.Password != c.HTTP.Password {
					t.Fatalf("http link %s: %+v", l.URL, p)
				}
			}
		}
		// The subscription formats hold every link.
		raw, err := base64.StdEncoding.DecodeString(links.Base64(ls))
		if err != nil || len(ls) > 0 && len(strings.Split(string(raw), "\n")) != len(ls) {
			t.Fatalf("base64 subscription: %v", err)
		}
		y, err := links.Clash(ls)
		if err != nil {
			t.Fatal(err)
		}
		var clash struct {
			Proxies []links.ClashProxy `yaml:"proxies"`
		}
		if err := yaml.Unmarshal(y, &clash); err != nil || len(clash.Proxies) != len(ls) {
			t.Fatalf("clash: %v, %d proxies", err, len(clash.Proxies))
		}
		j, err := links.SingBox(ls)
		if err != nil {
			t.Fatal(err)
		}
		var sb struct {
			Outbounds []links.SingBoxOutbound `json:"outbounds"`
		}
		if err := json.Unmarshal(j, &sb); err != nil {
			t.Fatalf("sing-box: %v", err)
		}
		proxies := 0
		for _, o := range sb.Outbounds {
			if o.Server != "" {
				proxies++
			}
		}
		if proxies != len(ls) {
			t.Fatalf("sing-box: %d proxy outbounds for %d links", proxies, len(ls))
		}
	})
}

func TestNoLinkWithoutARealServer(t *testing.T) {
	u := user.User{Name: "alice", Protocols: []user.Protocol{user.VLESSReality, user.SOCKS5}, Placement: user.Placement{Groups: []string{"eu"}},
		Credentials: user.Credentials{VLESS: &user.VLESS{UUID: "u", Flow: user.FlowVision}, SOCKS5: &user.Proxy{Username: "a", Password: "b"}}}
	reality := &server.Reality{ServerNames: []string{"x.com"}, PublicKey: "pk"}
	servers := []server.Server{
		{ID: "pending", Node: "n1", Inbounds: []server.Inbound{{Tag: "v", Protocol: user.VLESSReality, Port: 443, Reality: reality}}, Status: server.Status{State: server.StatePending}},
		{ID: "nohost", Node: "n1", Inbounds: []server.Inbound{{Tag: "v", Protocol: user.VLESSReality, Port: 443, Reality: reality}}, Status: server.Status{State: server.StateApplied}},
		{ID: "sick", Node: "n2", Inbounds: []server.Inbound{{Tag: "v", Protocol: user.VLESSReality, Port: 443, Reality: reality}}, Status: server.Status{State: server.StateApplied, PublicHost: "h2"}},
		{ID: "elsewhere", Node: "n3", Inbounds: []server.Inbound{{Tag: "s", Protocol: user.SOCKS5, Port: 1080}}, Status: server.Status{State: server.StateApplied, PublicHost: "h3"}},
		{ID: "good", Node: "n4", Inbounds: []server.Inbound{{Tag: "v", Protocol: user.VLESSReality, Port: 443, Reality: reality}}, Status: server.Status{State: server.StateApplied, PublicHost: "h4"}},
	}
	groups := map[string][]string{"n1": {"eu"}, "n2": {"eu"}, "n4": {"eu", "fast"}}
	ls, missing := links.ForUser(u, servers, groups, links.HealthyOf([]string{"n1", "n4"}))
	if len(ls) != 1 || ls[0].Server != "good" || !strings.HasPrefix(ls[0].URL, "vless://u@h4:443?") {
		t.Fatalf("links %+v", ls)
	}
	reasons := map[string]string{}
	for _, m := range missing {
		reasons[m.Server+"/"+string(m.Protocol)] = m.Reason
	}
	want := map[string]string{
		"pending/vless-reality": "server is not applied yet",
		"nohost/vless-reality":  "server reports no public host",
		"sick/vless-reality":    "node is not healthy",
		"/socks5":               "no server on the user's nodes offers this protocol",
	}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Fatalf("reasons %v\nwant    %v", reasons, want)
	}
}

func TestQR(t *testing.T) {
	png, text, err := links.QR("socks5://a:b@h:1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(png[1:4]) != "PNG" || !strings.Contains(text, "█") {
		t.Fatalf("png header %q, text %q", png[:8], text)
	}
	if _, _, err := links.QR("", 10); err == nil {
		t.Fatal("empty content and tiny size accepted")
	}
}

// oneLinkPerProtocol is a link of every protocol on one server.
func oneLinkPerProtocol() []user.Link {
	ps := []links.Params{
		{Protocol: user.VLESSReality, Host: "h1", Port: 443, Name: "a@vless", UUID: "u", Flow: user.FlowVision, SNI: "x.com", PublicKey: "pk", ShortID: "ab", Fingerprint: "chrome"},
		{Protocol: user.Shadowsocks2022, Host: "h1", Port: 8388, Name: "a@ss", Method: user.SS2022AES128GCM, Password: "k1:k2"},
		{Protocol: user.SOCKS5, Host: "h1", Port: 1080, Name: "a@socks", Username: "u", Password: "p"},
		{Protocol: user.HTTP, Host: "h1", Port: 8080, Name: "a@http", Username: "u", Password: "p"},
	}
	ls := make([]user.Link, len(ps))
	for i, p := range ps {
		ls[i] = user.Link{Server: "s1", Protocol: p.Protocol, URL: links.Build(p)}
	}
	return ls
}

// The agent's SOCKS inbound refuses UDP ASSOCIATE (udp: false in its Xray
// config), so a Clash entry claiming UDP would send UDP into a black hole.
func TestClashClaimsUDPOnlyWhereTheServerRelaysIt(t *testing.T) {
	y, err := links.Clash(oneLinkPerProtocol())
	if err != nil {
		t.Fatal(err)
	}
	var clash struct {
		Proxies []links.ClashProxy `yaml:"proxies"`
	}
	if err := yaml.Unmarshal(y, &clash); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"vless": true, "ss": true, "socks5": false, "http": false}
	if len(clash.Proxies) != len(want) {
		t.Fatalf("%d proxies: %s", len(clash.Proxies), y)
	}
	for _, p := range clash.Proxies {
		if w, ok := want[p.Type]; !ok || p.UDP != w {
			t.Errorf("%s proxy %q: udp %v, want %v", p.Type, p.Name, p.UDP, w)
		}
	}
}

// A sing-box client loads the profile as it is: it needs an inbound to take
// traffic, a selector to choose among every proxy, and a route to it.
func TestSingBoxProfileIsUsableAsDelivered(t *testing.T) {
	ls := oneLinkPerProtocol()
	j, err := links.SingBox(ls)
	if err != nil {
		t.Fatal(err)
	}
	var sb struct {
		Inbounds []struct {
			Type       string `json:"type"`
			Tag        string `json:"tag"`
			Listen     string `json:"listen"`
			ListenPort int    `json:"listen_port"`
		} `json:"inbounds"`
		Outbounds []struct {
			Type      string   `json:"type"`
			Tag       string   `json:"tag"`
			Server    string   `json:"server"`
			Outbounds []string `json:"outbounds"`
			Default   string   `json:"default"`
		} `json:"outbounds"`
		Route struct {
			Final string `json:"final"`
		} `json:"route"`
	}
	if err := json.Unmarshal(j, &sb); err != nil {
		t.Fatal(err)
	}
	if len(sb.Inbounds) != 1 || sb.Inbounds[0].Type != "mixed" || sb.Inbounds[0].Listen != "127.0.0.1" || sb.Inbounds[0].ListenPort != 2080 {
		t.Fatalf("inbounds %+v, want one mixed on 127.0.0.1:2080", sb.Inbounds)
	}
	var proxies []string
	byTag := map[string]int{}
	for i, o := range sb.Outbounds {
		if _, dup := byTag[o.Tag]; dup {
			t.Fatalf("outbound tag %q twice", o.Tag)
		}
		byTag[o.Tag] = i
		if o.Server != "" {
			proxies = append(proxies, o.Tag)
		}
	}
	if len(proxies) != len(ls) {
		t.Fatalf("%d proxy outbounds for %d links", len(proxies), len(ls))
	}
	get := func(tag, typ string) []string {
		i, ok := byTag[tag]
		if !ok || sb.Outbounds[i].Type != typ {
			t.Fatalf("no %s outbound %q in %s", typ, tag, j)
		}
		return sb.Outbounds[i].Outbounds
	}
	if got, want := get("proxy", "selector"), append(append([]string{}, proxies...), "auto"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("selector over %v, want %v", got, want)
	}
	if got := get("auto", "urltest"); fmt.Sprint(got) != fmt.Sprint(proxies) {
		t.Errorf("urltest over %v, want %v", got, proxies)
	}
	if d := sb.Outbounds[byTag["proxy"]].Default; d != "auto" {
		t.Errorf("the selector defaults to %q, want auto: a client must fail over unless its user picks a server", d)
	}
	get("direct", "direct")
	if sb.Route.Final != "proxy" {
		t.Errorf("route.final %q, want proxy", sb.Route.Final)
	}
}

// A Clash client fails over by itself: the group traffic goes to offers
// "auto" (a url-test over every proxy) first, and a proxy named like a
// group is renamed so that every name stays unique.
func TestClashFailsOverByDefault(t *testing.T) {
	ls := oneLinkPerProtocol()
	ls = append(ls, user.Link{Server: "s2", Protocol: user.SOCKS5, URL: links.Build(links.Params{Protocol: user.SOCKS5, Host: "h2", Port: 1080, Name: "auto", Username: "u", Password: "p"})})
	y, err := links.Clash(ls)
	if err != nil {
		t.Fatal(err)
	}
	var clash struct {
		Proxies []links.ClashProxy `yaml:"proxies"`
		Groups  []struct {
			Name     string   `yaml:"name"`
			Type     string   `yaml:"type"`
			Proxies  []string `yaml:"proxies"`
			URL      string   `yaml:"url"`
			Interval int      `yaml:"interval"`
		} `yaml:"proxy-groups"`
		Rules []string `yaml:"rules"`
	}
	if err := yaml.Unmarshal(y, &clash); err != nil {
		t.Fatal(err)
	}
	var names []string
	seen := map[string]bool{}
	for _, p := range clash.Proxies {
		names = append(names, p.Name)
		seen[p.Name] = true
	}
	for _, g := range clash.Groups {
		if seen[g.Name] {
			t.Fatalf("%q names a proxy and a group:\n%s", g.Name, y)
		}
	}
	if len(clash.Groups) != 2 {
		t.Fatalf("groups %+v, want a select and a url-test", clash.Groups)
	}
	sel, auto := clash.Groups[0], clash.Groups[1]
	if sel.Type != "select" || fmt.Sprint(sel.Proxies) != fmt.Sprint(append([]string{auto.Name}, names...)) {
		t.Errorf("select group %+v, want %s first, then every proxy", sel, auto.Name)
	}
	if auto.Type != "url-test" || fmt.Sprint(auto.Proxies) != fmt.Sprint(names) || auto.URL == "" || auto.Interval <= 0 {
		t.Errorf("automatic group %+v, want a url-test over every proxy with a probe", auto)
	}
	if len(clash.Rules) != 1 || clash.Rules[0] != "MATCH,"+sel.Name {
		t.Errorf("rules %v, want everything to %s", clash.Rules, sel.Name)
	}
}
