package health

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/vpnfleet/vpnfleet/services/health/internal/alert"
	"github.com/vpnfleet/vpnfleet/services/health/internal/notify"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// RulesFile is the alert configuration: [[rule]] and [[notifier]] tables
// (see docs/ARCHITECTURE.md, "Health and alerts").
type RulesFile struct {
	Rules     []alert.Rule    `toml:"rule"`
	Notifiers []notify.Target `toml:"notifier"`
}

// LoadRules reads and validates the rules file at path; an empty path
// gives the built-in rules and no notifiers. Every problem is an Invalid
// error naming the file, the rule (or notifier) and the field.
func LoadRules(path string) (RulesFile, error) {
	var data []byte
	var err error
	name := path
	if path == "" {
		name = "built-in " + alert.DefaultsFile
		data, err = fs.ReadFile(alert.Defaults, alert.DefaultsFile)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return RulesFile{}, errs.New(errs.Invalid, "reading rules file %s: %v", name, err)
	}
	return ParseRules(name, data)
}

// ParseRules parses and validates rules file content; name is used in
// errors.
func ParseRules(name string, data []byte) (RulesFile, error) {
	var f RulesFile
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return RulesFile{}, errs.New(errs.Invalid, "rules file %s: %s", name, pe.ErrorWithPosition())
		}
		return RulesFile{}, errs.New(errs.Invalid, "rules file %s: %v", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		var raw map[string][]map[string]any
		_, _ = toml.Decode(string(data), &raw)
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = describeKey(raw, k)
		}
		return RulesFile{}, errs.New(errs.Invalid, "rules file %s: unknown keys %s", name, strings.Join(keys, ", "))
	}
	if len(f.Rules) == 0 {
		return RulesFile{}, errs.New(errs.Invalid, "rules file %s: no [[rule]] tables", name)
	}
	fe := append(errs.FieldsOf(alert.Validate(f.Rules)), errs.FieldsOf(notify.Validate(f.Notifiers))...)
	if len(fe) > 0 {
		return RulesFile{}, &errs.Error{Class: errs.Invalid, Msg: "rules file " + name, Fields: fe}
	}
	return f, nil
}

// describeKey names an unknown key with its table, e.g.
// rule[1] "ServerDown".treshold.
func describeKey(raw map[string][]map[string]any, k toml.Key) string {
	if len(k) < 2 {
		return k.String()
	}
	for i, tbl := range raw[k[0]] {
		if _, ok := tbl[k[1]]; ok {
			name, _ := tbl["name"].(string)
			return fmt.Sprintf("%s[%d] %q.%s", k[0], i, name, strings.Join(k[1:], "."))
		}
	}
	return k.String()
}
