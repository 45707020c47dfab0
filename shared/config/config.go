// Package config fills a binary's plain Config struct from, in rising
// precedence: the defaults already in the struct, an optional TOML file
// (--config or VPN_CONFIG), environment variables, and command-line flags.
// Each field declares its names once, in tags:
//
//	NATSURL string `flag:"nats-url" env:"VPN_NATS_URL" help:"NATS server URL"`
//	Token   string `flag:"token" env:"VPN_TOKEN" secret:"true" help:"..."`
//
// The TOML key is the flag name with dashes as underscores unless a toml
// tag says otherwise. Secret fields are masked by Redacted. Supported field
// types: string, bool, ints, float64, time.Duration and []string
// (comma-separated on flags and env). Struct fields without a flag tag are
// flattened, so binaries compose groups of fields (svc.Config, a service's
// own Config) and still read one flat TOML table. Fields of composed groups
// that share a flag name (vpnd's --http-addr and the gateway's, the
// gateway's and the registry's --job-timeout) are one setting: the flag is
// registered once, with the help of the first such field, and sets all of
// them; so does its TOML key. Each keeps its own env variable and default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// ErrHelp is returned when -h or --help was asked; usage has been printed.
var ErrHelp = flag.ErrHelp

// Validator is implemented by configs that check themselves; Load calls it
// last.
type Validator interface{ Validate() error }

type field struct {
	v      reflect.Value
	flag   string
	env    string
	toml   string
	help   string
	secret bool
}

func fieldsOf(cfg any) ([]field, error) {
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil, errs.New(errs.Internal, "config: %T is not a pointer to a struct", cfg)
	}
	var out []field
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			name := sf.Tag.Get("flag")
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				if sf.Type.Kind() == reflect.Struct {
					walk(v.Field(i))
				}
				continue
			}
			key := sf.Tag.Get("toml")
			if key == "" {
				key = strings.ReplaceAll(name, "-", "_")
			}
			out = append(out, field{
				v: v.Field(i), flag: name, env: sf.Tag.Get("env"), toml: key,
				help: sf.Tag.Get("help"), secret: sf.Tag.Get("secret") == "true",
			})
		}
	}
	walk(rv.Elem())
	first := map[string]field{}
	for _, f := range out {
		if g, ok := first[f.flag]; ok && g.v.Type() != f.v.Type() {
			return nil, errs.New(errs.Internal, "config: flag --%s is declared with types %s and %s", f.flag, g.v.Type(), f.v.Type())
		}
		if _, ok := first[f.flag]; !ok {
			first[f.flag] = f
		}
	}
	return out, nil
}

// Load fills cfg (a pointer to a struct holding its defaults) from the TOML
// file, getenv and args, then validates it. Every failure is an errs.Invalid
// error naming the flag, variable or file; -h prints usage to usage and
// returns ErrHelp.
func Load(name string, cfg any, args []string, getenv func(string) string, usage io.Writer) error {
	fields, err := fieldsOf(cfg)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	set := map[string]string{}
	var file string
	fs.StringVar(&file, "config", "", "optional TOML config file (env VPN_CONFIG)")
	for _, f := range fields {
		if fs.Lookup(f.flag) != nil {
			continue // a shared setting: the first field's flag sets all
		}
		help := f.help
		if f.env != "" {
			help += " (env " + f.env + ")"
		}
		if f.v.Kind() == reflect.Bool {
			fs.Var(boolFlag{set: set, name: f.flag}, f.flag, help)
		} else {
			fs.Func(f.flag, help, func(s string) error { set[f.flag] = s; return nil })
		}
	}
	// The flag package prints the usage on every parse error; only -h
	// should, a mistyped flag gets one line naming it.
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(usage, name, fs, fields)
			return ErrHelp
		}
		return errs.New(errs.Invalid, "%s (see %s -h)", flagError(err), name)
	}
	if fs.NArg() > 0 {
		return errs.New(errs.Invalid, "unexpected argument %q (see %s -h)", fs.Arg(0), name)
	}

	if file == "" {
		file = getenv("VPN_CONFIG")
	}
	if file != "" {
		if err := loadFile(file, fields); err != nil {
			return err
		}
	}
	for _, f := range fields {
		if f.env == "" {
			continue
		}
		if s := getenv(f.env); s != "" {
			if err := assign(f.v, s); err != nil {
				return errs.New(errs.Invalid, "environment %s=%q: %v", f.env, s, err)
			}
		}
	}
	for _, f := range fields {
		if s, ok := set[f.flag]; ok {
			if err := assign(f.v, s); err != nil {
				return errs.New(errs.Invalid, "flag --%s=%q: %v (see %s -h)", f.flag, s, err, name)
			}
		}
	}
	if v, ok := cfg.(Validator); ok {
		return v.Validate()
	}
	return nil
}

// flagError rewords the flag package's parse errors the way the rest of
// the project names flags (--name).
func flagError(err error) string {
	msg := err.Error()
	if n, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return "unknown flag --" + strings.TrimLeft(n, "-")
	}
	if n, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return "flag --" + strings.TrimLeft(n, "-") + " needs a value"
	}
	return msg
}

func loadFile(path string, fields []field) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return errs.New(errs.Invalid, "reading config file %s: %v", path, unwrapPathError(err))
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return errs.New(errs.Invalid, "parsing config file %s: %v", path, err)
	}
	byKey := make(map[string][]field, len(fields))
	for _, f := range fields {
		byKey[f.toml] = append(byKey[f.toml], f)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fs, ok := byKey[k]
		if !ok {
			return errs.New(errs.Invalid, "config file %s: unknown key %q", path, k)
		}
		for _, f := range fs {
			if err := assign(f.v, tomlString(raw[k])); err != nil {
				return errs.New(errs.Invalid, "config file %s: key %s: %v", path, k, err)
			}
		}
	}
	return nil
}

// tomlString renders a decoded TOML value the way it would be written on a
// flag, so one parser serves flags, env and file.
func tomlString(v any) string {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, e := range list {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// assign parses s into v according to v's type.
func assign(v reflect.Value, s string) error {
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("not a duration (e.g. 30s, 5m)")
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return errors.New("not an integer")
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return errors.New("not a non-negative integer")
		}
		v.SetUint(n)
	case reflect.Float64, reflect.Float32:
		n, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return errors.New("not a number")
		}
		v.SetFloat(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list type %s", v.Type())
		}
		var items []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// Redacted returns the effective configuration keyed by TOML name, with
// secret values masked, for logging at start.
func Redacted(cfg any) map[string]any {
	fields, err := fieldsOf(cfg)
	if err != nil {
		return nil
	}
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		val := f.v.Interface()
		if d, ok := val.(time.Duration); ok {
			val = d.String()
		}
		if f.secret && !f.v.IsZero() {
			val = "***"
		}
		out[f.toml] = val
	}
	return out
}

func printUsage(w io.Writer, name string, fs *flag.FlagSet, fields []field) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\nFlags (precedence: flag > env > config file > default):\n", name)
	defaults := map[string]string{}
	for _, f := range fields {
		if _, seen := defaults[f.flag]; !seen && !f.v.IsZero() && !f.secret {
			defaults[f.flag] = fmt.Sprint(f.v.Interface())
		}
	}
	var names []string
	fs.VisitAll(func(fl *flag.Flag) { names = append(names, fl.Name) })
	sort.Strings(names)
	for _, n := range names {
		fl := fs.Lookup(n)
		line := "  --" + n
		if d, ok := defaults[n]; ok {
			line += " (default " + d + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, fl.Usage)
	}
}

// boolFlag lets boolean flags be given bare (--x) or with a value (--x=false).
type boolFlag struct {
	set  map[string]string
	name string
}

func (b boolFlag) String() string     { return "" }
func (b boolFlag) IsBoolFlag() bool   { return true }
func (b boolFlag) Set(s string) error { b.set[b.name] = s; return nil }
