// Package codecheck holds the checks the workspace runs on its own source,
// beyond what go vet and staticcheck know: every package has a doc comment,
// and every structured-log key is a shared/logkey constant, never a string
// literal typed at the call site. Its tests run the checks over the whole
// workspace, so `make test` fails when either rule is broken.
package codecheck

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Finding is one broken rule at one place in the source.
type Finding struct {
	Pos  token.Position
	Rule string
}

func (f Finding) String() string { return f.Pos.String() + ": " + f.Rule }

// WorkspaceRoot returns the nearest directory at or above dir that holds a
// go.work file.
func WorkspaceRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("finding the workspace root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the workspace root: no go.work above the current directory")
		}
		dir = parent
	}
}

// pkg is one package of one directory: its files, parsed with comments.
type pkg struct {
	dir   string
	name  string
	files map[string]*ast.File // by file name
}

// Check parses every Go package under root (skipping testdata, vendor and
// hidden or underscore directories, as the go command does) and returns
// what breaks the rules, sorted by position.
func Check(root string) ([]Finding, error) {
	pkgs, fset, err := parseTree(root)
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, p := range pkgs {
		out = append(out, packageDoc(fset, p)...)
		for _, name := range sortedKeys(p.files) {
			out = append(out, rawLogKeys(fset, p.files[name])...)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Offset < b.Offset
	})
	return out, nil
}

func parseTree(root string) ([]*pkg, *token.FileSet, error) {
	fset := token.NewFileSet()
	byKey := map[string]*pkg{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return fmt.Errorf("parsing %s: %w", path, err)
		}
		dir := filepath.Dir(path)
		key := dir + "\x00" + f.Name.Name
		p := byKey[key]
		if p == nil {
			p = &pkg{dir: dir, name: f.Name.Name, files: map[string]*ast.File{}}
			byKey[key] = p
		}
		p.files[name] = f
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("walking %s: %w", root, err)
	}
	pkgs := make([]*pkg, 0, len(byKey))
	for _, k := range sortedKeys(byKey) {
		pkgs = append(pkgs, byKey[k])
	}
	return pkgs, fset, nil
}

// packageDoc reports a package none of whose non-test files carries a
// package doc comment. External test packages (name_test) need none.
func packageDoc(fset *token.FileSet, p *pkg) []Finding {
	if strings.HasSuffix(p.name, "_test") {
		return nil
	}
	var first *ast.File
	for _, name := range sortedKeys(p.files) {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f := p.files[name]
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			return nil
		}
		if first == nil {
			first = f
		}
	}
	if first == nil {
		return nil // a directory of tests only
	}
	return []Finding{{Pos: fset.Position(first.Package), Rule: "package " + p.name + " has no package doc comment"}}
}

// logMethods maps a logging method to the index of its first key argument:
// after the message, and after ctx and level where the method takes them.
// With takes keys from its first argument.
var logMethods = map[string]int{
	"Debug": 1, "Info": 1, "Warn": 1, "Error": 1,
	"DebugContext": 2, "InfoContext": 2, "WarnContext": 2, "ErrorContext": 2,
	"Log":  3,
	"With": 0,
}

// slogAttrs are the slog functions whose first argument is a key.
var slogAttrs = map[string]bool{
	"Any": true, "Bool": true, "Duration": true, "Float64": true, "Group": true,
	"Int": true, "Int64": true, "String": true, "Time": true, "Uint64": true,
}

// rawLogKeys reports string-literal keys passed to slog: in key position of a
// Debug/Info/Warn/Error(…Context)/Log/With call whose message is a string
// literal (With has none), and as the key of slog.String, slog.Int and the
// other attribute constructors.
//
// It works on syntax alone, so it recognises a log call by its shape: the
// method name, a receiver named for a logger (log, r.log, env.Log,
// opts.Logger, slog, slog.Default()), a literal message, and a string literal
// in a key position. A testing.T's Error("a", "b") or a micro request's
// Error("400", "bad", nil) have the method and the literals but not the
// receiver.
func rawLogKeys(fset *token.FileSet, f *ast.File) []Finding {
	var out []Finding
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		method := sel.Sel.Name
		if x, ok := sel.X.(*ast.Ident); ok && x.Name == "slog" && slogAttrs[method] {
			if len(call.Args) > 0 && isString(call.Args[0]) {
				out = append(out, Finding{Pos: fset.Position(call.Args[0].Pos()), Rule: "slog." + method + " key " + call.Args[0].(*ast.BasicLit).Value + " is a string literal; use a logkey constant"})
			}
			return true
		}
		first, ok := logMethods[method]
		if !ok || len(call.Args) <= first {
			return true
		}
		if !isLogger(sel.X) || (method != "With" && !isString(call.Args[first-1])) {
			return true // not a log call with a static message
		}
		// As slog reads them: an Attr takes one argument, a key and its
		// value two.
		for i := first; i < len(call.Args); {
			arg := call.Args[i]
			if isSlogAttr(arg) {
				i++
				continue
			}
			if isString(arg) {
				out = append(out, Finding{Pos: fset.Position(arg.Pos()), Rule: method + " key " + arg.(*ast.BasicLit).Value + " is a string literal; use a logkey constant"})
			}
			i += 2
		}
		return true
	})
	return out
}

// isLogger tells an expression named for a logger: its last name contains
// "log" in any case.
func isLogger(e ast.Expr) bool {
	if call, ok := e.(*ast.CallExpr); ok {
		e = call.Fun
	}
	var name string
	switch x := e.(type) {
	case *ast.Ident:
		name = x.Name
	case *ast.SelectorExpr:
		if pkg, ok := x.X.(*ast.Ident); ok && pkg.Name == "slog" {
			return true // slog.Default()
		}
		name = x.Sel.Name
	}
	return strings.Contains(strings.ToLower(name), "log")
}

// isSlogAttr tells a call of slog.String, slog.Int and the like.
func isSlogAttr(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == "slog" && slogAttrs[sel.Sel.Name]
}

func isString(e ast.Expr) bool {
	lit, ok := e.(*ast.BasicLit)
	return ok && lit.Kind == token.STRING
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
