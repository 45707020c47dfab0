// Package openapi describes the gateway's HTTP API as an OpenAPI 3.1
// document, built from the same route table that registers the handlers
// and from the Go types of request and response bodies, so the document
// and the served routes cannot drift apart (a gateway test checks both
// ways).
package openapi

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// Version is the OpenAPI version of the document.
const Version = "3.1.0"

// Param is a query parameter.
type Param struct {
	Name        string
	Description string
	// Type is string (the default), integer or boolean.
	Type string
	Enum []string
}

// Operation describes one route.
type Operation struct {
	Method  string
	Path    string
	ID      string
	Summary string
	Tag     string
	// Role is the least role allowed to call it; empty is public.
	Role  string
	Query []Param
	// Request is a value of the JSON body type (nil: no body).
	Request any
	// Response is a value of the JSON response type (nil: no JSON body);
	// ContentType replaces application/json for other bodies.
	Response    any
	ContentType string
	Status      int
	// Other lists further success statuses and what they mean (a dry run
	// answered 200 where a created job is 202).
	Other map[int]string
	// Form describes a multipart/form-data body the route takes besides
	// JSON.
	Form *Form
}

// Form is a multipart/form-data body: one file part and text fields.
type Form struct {
	File        string
	Description string
	Fields      []Param
}

// Doc is a built document; it marshals to JSON.
type Doc map[string]any

var pathParam = regexp.MustCompile(`\{([A-Za-z0-9_]+)\.{0,3}\}`)

// Build returns the document of ops; problemCodes are the stable codes of
// error responses.
func Build(title, version string, ops []Operation, problemCodes []string) Doc {
	g := &gen{schemas: map[string]any{}}
	paths := map[string]map[string]any{}
	for _, op := range ops {
		path := pathParam.ReplaceAllString(op.Path, "{$1}")
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(op.Method)] = g.operation(op)
	}
	g.schemas["Problem"] = map[string]any{
		"type":     "object",
		"required": []string{"type", "title", "status", "code"},
		"properties": map[string]any{
			"type":       map[string]any{"type": "string"},
			"title":      map[string]any{"type": "string"},
			"status":     map[string]any{"type": "integer"},
			"detail":     map[string]any{"type": "string"},
			"instance":   map[string]any{"type": "string"},
			"code":       map[string]any{"type": "string", "enum": problemCodes},
			"hint":       map[string]any{"type": "string", "description": "what to do about it"},
			"service":    map[string]any{"type": "string", "description": "the upstream service that did not answer"},
			"request_id": map[string]any{"type": "string"},
			"errors": map[string]any{"type": "array", "items": map[string]any{
				"type":       "object",
				"required":   []string{"field", "rule"},
				"properties": map[string]any{"field": map[string]any{"type": "string"}, "rule": map[string]any{"type": "string"}},
			}},
		},
	}
	return Doc{
		"openapi": Version,
		"info":    map[string]any{"title": title, "version": version},
		"paths":   paths,
		"components": map[string]any{
			"schemas": g.schemas,
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "an API token: vpn_<id>_<secret>"},
			},
			"responses": map[string]any{
				"Problem": map[string]any{
					"description": "an error, as RFC 9457 problem details",
					"content":     map[string]any{"application/problem+json": map[string]any{"schema": ref("Problem")}},
				},
			},
		},
	}
}

// JSON encodes the document.
func (d Doc) JSON() []byte {
	b, _ := json.MarshalIndent(d, "", "  ") // maps of plain values always encode
	return b
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

type gen struct{ schemas map[string]any }

func (g *gen) operation(op Operation) map[string]any {
	o := map[string]any{"operationId": op.ID, "summary": op.Summary}
	if op.Tag != "" {
		o["tags"] = []string{op.Tag}
	}
	var params []any
	for _, m := range pathParam.FindAllStringSubmatch(op.Path, -1) {
		params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
	}
	for _, q := range op.Query {
		typ := q.Type
		if typ == "" {
			typ = "string"
		}
		s := map[string]any{"type": typ}
		if len(q.Enum) > 0 {
			s["enum"] = q.Enum
		}
		params = append(params, map[string]any{"name": q.Name, "in": "query", "description": q.Description, "schema": s})
	}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if op.Request != nil {
		content := map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(op.Request))}}
		if op.Form != nil {
			content["multipart/form-data"] = map[string]any{"schema": formSchema(op.Form)}
		}
		o["requestBody"] = map[string]any{"required": true, "content": content}
	}
	status := op.Status
	if status == 0 {
		status = 200
	}
	ok := map[string]any{"description": "success"}
	switch {
	case op.ContentType != "":
		ok["content"] = map[string]any{op.ContentType: map[string]any{"schema": map[string]any{"type": "string"}}}
	case op.Response != nil:
		ok["content"] = map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(op.Response))}}
	}
	responses := map[string]any{itoa(status): ok, "default": map[string]any{"$ref": "#/components/responses/Problem"}}
	for st, desc := range op.Other {
		other := map[string]any{"description": desc}
		if c, has := ok["content"]; has {
			other["content"] = c
		}
		responses[itoa(st)] = other
	}
	if op.Role != "" {
		o["security"] = []any{map[string]any{"bearer": []string{}}}
		o["x-required-role"] = op.Role
		responses["401"] = map[string]any{"$ref": "#/components/responses/Problem"}
		responses["403"] = map[string]any{"$ref": "#/components/responses/Problem"}
	} else {
		o["security"] = []any{}
	}
	o["responses"] = responses
	return o
}

// formSchema is the schema of a multipart/form-data body.
func formSchema(f *Form) map[string]any {
	props := map[string]any{f.File: map[string]any{"type": "string", "format": "binary", "description": f.Description}}
	for _, p := range f.Fields {
		typ := p.Type
		if typ == "" {
			typ = "string"
		}
		s := map[string]any{"type": typ, "description": p.Description}
		if len(p.Enum) > 0 {
			s["enum"] = p.Enum
		}
		props[p.Name] = s
	}
	return map[string]any{"type": "object", "required": []string{f.File}, "properties": props, "additionalProperties": false}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

var (
	timeType     = reflect.TypeOf(time.Time{})
	durationType = reflect.TypeOf(time.Duration(0))
	rawType      = reflect.TypeOf(json.RawMessage(nil))
)

// schema returns the JSON Schema of t, registering named structs as
// components.
func (g *gen) schema(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case durationType:
		return map[string]any{"type": "integer", "description": "nanoseconds"}
	case rawType:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		if t.Name() == "" {
			return g.object(t)
		}
		name := componentName(t)
		if _, ok := g.schemas[name]; !ok {
			g.schemas[name] = map[string]any{} // placeholder for recursion
			g.schemas[name] = g.object(t)
		}
		return ref(name)
	}
	return map[string]any{}
}

func componentName(t reflect.Type) string {
	pkg := t.PkgPath()
	if i := strings.LastIndex(pkg, "/"); i >= 0 {
		pkg = pkg[i+1:]
	}
	if pkg == "" {
		return t.Name()
	}
	return pkg + "." + t.Name()
}

func (g *gen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	g.fields(t, props, &required)
	o := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func (g *gen) fields(t reflect.Type, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				g.fields(ft, props, required)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Pointer {
			*required = append(*required, name)
		}
	}
}
