package api

import (
	"net/http"
	"os"
	"strings"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/install"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/openapi"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// The install routes hand a new VPN host what it needs to join: the
// script, the binaries and their checksums. They are public, as a package
// mirror is: nothing they serve is secret (the script is rendered with the
// gateway's URL only), and the join token, which is, travels from the
// operator to the host and never through them. Like the other public
// routes they are rate-limited per client address.

// platformQuery are the query parameters of the binary routes.
var platformQuery = []openapi.Param{
	{Name: "os", Description: "operating system: linux (the default)", Enum: []string{"linux"}},
	{Name: "arch", Description: "architecture: " + strings.Join(install.Arches, ", ") + " (x86_64 and aarch64 too, as uname -m prints them)"},
}

// installCommand is the one line that installs the agent on a new host
// and joins it with token, run there as root.
func installCommand(base, token string) string {
	return "curl -fsSL " + install.Quote(base+"/install/agent.sh") + " | sh -s -- --token " + token
}

// installScript serves agent.sh, rendered for the URL this request
// reached the gateway on (--public-url when set).
func (s *Server) installScript(w http.ResponseWriter, r *http.Request) error {
	body, err := install.Script(s.publicBase(r), s.cfg.Version)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/x-shellscript; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	_, err = w.Write(body)
	return err
}

func platform(r *http.Request) (install.Platform, error) {
	q := r.URL.Query()
	p, err := install.ParsePlatform(q.Get("os"), q.Get("arch"))
	if err != nil {
		return p, problem.Fields(problem.CodeInvalidQuery, errs.FieldsOf(err)...)
	}
	return p, nil
}

// missing gives the binaries directory's NotFound its problem code and
// says which setting points where.
func missing(err error) error {
	if errs.CodeOf(err) == install.CodeBinaryMissing {
		return problem.New(errs.NotFound, install.CodeBinaryMissing, errs.Message(err),
			"build it into the directory --agent-binaries names (make build xray: this machine's platform; make agent-binaries: every platform)")
	}
	return err
}

// installBinary serves one binary for the platform asked for, with its
// SHA-256 in X-Checksum-Sha256.
func (s *Server) installBinary(name string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := platform(r)
		if err != nil {
			return err
		}
		path, err := s.binaries.Find(name, p)
		if err != nil {
			return missing(err)
		}
		sum, err := s.binaries.SHA256(path)
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return errs.Wrap(errs.NotFound, err, "opening %s", path)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return errs.Wrap(errs.Internal, err, "reading %s", path)
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		h.Set("X-Checksum-Sha256", sum)
		h.Set("Cache-Control", "no-store")
		http.ServeContent(w, r, "", st.ModTime(), f)
		return nil
	}
}

// installChecksums serves the SHA-256 of every binary there is for the
// platform, as sha256sum(1) prints them.
func (s *Server) installChecksums(w http.ResponseWriter, r *http.Request) error {
	p, err := platform(r)
	if err != nil {
		return err
	}
	body, err := s.binaries.Checksums(p)
	if err != nil {
		return missing(err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(body)
	return err
}
