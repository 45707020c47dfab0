package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes fetches the served description and checks it
// against the router both ways: every operation it describes is served by
// the router under exactly that pattern, with the role the route needs,
// and every registered route is described. Every $ref resolves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	h := newHarnessWith(t, options{noUsers: true})
	r := h.do("GET", "/api/v1/openapi.json", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Info    map[string]any                       `json:"info"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Info["title"] == nil || doc.Info["version"] == nil {
		t.Fatalf("not an OpenAPI 3 document: openapi=%q info=%v", doc.OpenAPI, doc.Info)
	}

	routes := map[string]string{} // pattern -> role
	for _, rt := range h.gw.API().Routes() {
		routes[rt.Pattern()] = string(rt.Need)
	}
	described := map[string]bool{}
	ids := map[string]bool{}
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	for path, ops := range doc.Paths {
		for method, op := range ops {
			pattern := strings.ToUpper(method) + " " + path
			described[pattern] = true
			id, _ := op["operationId"].(string)
			if id == "" || ids[id] {
				t.Errorf("%s: operationId %q missing or repeated", pattern, id)
			}
			ids[id] = true
			if op["responses"] == nil {
				t.Errorf("%s: no responses", pattern)
			}
			role, _ := op["x-required-role"].(string)
			if want, ok := routes[pattern]; !ok {
				t.Errorf("described %s is not a registered route", pattern)
			} else if role != want {
				t.Errorf("%s: described role %q, route needs %q", pattern, role, want)
			}
			req := httptest.NewRequest(strings.ToUpper(method), param.ReplaceAllString(path, "x1"), nil)
			if _, served := h.gw.API().Mux().Handler(req); served != pattern {
				t.Errorf("described %s is served by %q", pattern, served)
			}
		}
	}
	for p := range routes {
		if !described[p] {
			t.Errorf("route %s is not in the description", p)
		}
	}

	var all map[string]any
	_ = json.Unmarshal(r.body, &all)
	schemas := all["components"].(map[string]any)["schemas"].(map[string]any)
	responses := all["components"].(map[string]any)["responses"].(map[string]any)
	for _, ref := range regexp.MustCompile(`"\$ref":\s*"([^"]+)"`).FindAllStringSubmatch(string(r.body), -1) {
		name, ok := strings.CutPrefix(ref[1], "#/components/schemas/")
		if ok && schemas[name] == nil {
			t.Errorf("$ref %s does not resolve", ref[1])
		}
		name, ok = strings.CutPrefix(ref[1], "#/components/responses/")
		if ok && responses[name] == nil {
			t.Errorf("$ref %s does not resolve", ref[1])
		}
	}
}
