package app

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/cli/internal/config"
	"github.com/vpnfleet/vpnfleet/cli/internal/output"
	"github.com/vpnfleet/vpnfleet/shared/event"
)

// token is an API token as the gateway reports it.
type token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Secret    string    `json:"token,omitempty"`
}

// status is GET /api/v1/status.
type status struct {
	Version      string            `json:"version"`
	Ready        bool              `json:"ready"`
	NotReady     map[string]string `json:"not_ready,omitempty"`
	Token        token             `json:"token"`
	Services     map[string]string `json:"services"`
	Users        int               `json:"users"`
	Servers      int               `json:"servers"`
	Nodes        int               `json:"nodes"`
	HealthyNodes int               `json:"healthy_nodes"`
}

func (a *app) getStatus(cmd *cobra.Command, c *client.Client) (status, error) {
	var s status
	err := c.Get(cmd.Context(), "/api/v1/status", nil, &s)
	return s, err
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Show the gateway, the services behind it and who you are",
		Example: "  vpn status\n  vpn status -o json",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := a.getStatus(cmd, c)
			if err != nil {
				return err
			}
			p := a.printer()
			if p.Structured() {
				return p.Value(s)
			}
			ready := "yes"
			if !s.Ready {
				ready = "no"
				for k, v := range s.NotReady {
					ready += fmt.Sprintf("; %s: %s", k, v)
				}
			}
			pairs := [][2]string{
				{"Gateway", c.BaseURL}, {"Version", s.Version}, {"Ready", ready},
				{"Token", fmt.Sprintf("%s (%s, %s)", s.Token.Name, s.Token.Role, s.Token.ID)},
				{"Users", fmt.Sprint(s.Users)}, {"Servers", fmt.Sprint(s.Servers)},
				{"Nodes", fmt.Sprintf("%d healthy of %d", s.HealthyNodes, s.Nodes)},
			}
			names := make([]string, 0, len(s.Services))
			for k := range s.Services {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				pairs = append(pairs, [2]string{"Service " + k, s.Services[k]})
			}
			return p.KeyValues(pairs)
		},
	}
}

func (a *app) loginCmd() *cobra.Command {
	var tokenFile string
	var tokenStdin bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Save the gateway URL and API token in ~/.config/vpn/config.toml",
		Example: "  vpn login --url http://127.0.0.1:8080 --token-file ./data/admin.token\n" +
			"  echo $TOKEN | vpn login --url https://vpn.example.com --token-stdin",
		Args: args(0, "no arguments (use --url and --token)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok := a.flagToken
			switch {
			case tokenFile != "":
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("reading the token: %w", err)
				}
				tok = strings.TrimSpace(string(b))
			case tokenStdin:
				b, err := io.ReadAll(io.LimitReader(a.env.Stdin, 4096))
				if err != nil {
					return fmt.Errorf("reading the token from stdin: %w", err)
				}
				tok = strings.TrimSpace(string(b))
			}
			if tok == "" {
				return usagef("give the token with --token, --token-file or --token-stdin (vpnd wrote the first admin token to <data dir>/admin.token)")
			}
			return a.login(cmd, tok)
		},
	}
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "read the token from this file")
	cmd.Flags().BoolVar(&tokenStdin, "token-stdin", false, "read the token from standard input")
	return cmd
}

// login checks tok against the gateway and saves both in the config file.
func (a *app) login(cmd *cobra.Command, tok string) error {
	s, path, err := a.settings()
	if err != nil {
		return err
	}
	s.Token = tok
	c := client.New(s.URL, tok, "vpn")
	if a.env.HTTP != nil {
		c.HTTP = a.env.HTTP
	}
	st, err := a.getStatus(cmd, c)
	if err != nil {
		return err
	}
	if err := config.Save(path, config.File{URL: s.URL, Token: tok}); err != nil {
		return err
	}
	a.done("logged in to %s as %q (%s); saved in %s", s.URL, st.Token.Name, st.Token.Role, path)
	return nil
}

func (a *app) tokensCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Aliases: []string{"token"}, Short: "Create, list and revoke API tokens (admin)",
		Example: "  vpn tokens create ci --role operator --ttl 720h\n  vpn tokens list\n  vpn tokens revoke 0123456789ab"}
	var role, ttl string
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a token; it is shown once",
		Example: "  vpn tokens create ci --role operator --ttl 720h",
		Args:    args(1, "one token name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var t token
			body := map[string]string{"name": argv[0], "role": role, "ttl": ttl}
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/api/v1/tokens", Body: body}, &t); err != nil {
				return err
			}
			p := a.printer()
			switch {
			case p.Structured():
				return p.Value(t)
			case a.quiet:
				p.Line("%s", t.Secret)
				return nil
			}
			p.Line("%s", t.Secret)
			a.info("token %s (%s, %s) created; it is shown only now: store it", t.ID, t.Name, t.Role)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "viewer", "admin, operator or viewer")
	create.Flags().StringVar(&ttl, "ttl", "", "lifetime, e.g. 720h (default: never expires)")

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List tokens (never their secrets)",
		Example: "  vpn tokens list\n  vpn tokens list -o json",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var resp struct {
				Tokens []token `json:"tokens"`
			}
			if err := c.Get(cmd.Context(), "/api/v1/tokens", nil, &resp); err != nil {
				return err
			}
			return printList(a, resp.Tokens, func(t token) string { return t.ID },
				[]string{"ID", "NAME", "ROLE", "STATE", "EXPIRES", "AGE"},
				func(t token, now time.Time) []string {
					state := "active"
					switch {
					case !t.RevokedAt.IsZero():
						state = "revoked"
					case !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt):
						state = "expired"
					}
					expires := "never"
					if !t.ExpiresAt.IsZero() {
						expires = t.ExpiresAt.UTC().Format("2006-01-02")
					}
					return []string{t.ID, t.Name, t.Role, state, expires, output.Age(now, t.CreatedAt)}
				})
		},
	}
	revoke := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a token at once",
		Example: "  vpn tokens revoke 0123456789ab",
		Args:    args(1, "one token id (see `vpn tokens list`)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodDelete, Path: "/api/v1/tokens/" + url.PathEscape(argv[0])}, nil); err != nil {
				return err
			}
			a.done("token %s revoked", argv[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (a *app) eventsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "events", Short: "Watch domain events",
		Example: "  vpn events tail --kind user,audit"}
	var kinds []string
	var since string
	var count int
	tail := &cobra.Command{
		Use:     "tail",
		Short:   "Print events as they happen (Ctrl-C stops)",
		Example: "  vpn events tail --kind user,audit\n  vpn events tail --since 1200 -o json",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if len(kinds) > 0 {
				q.Set("kind", strings.Join(kinds, ","))
			}
			seen := 0
			structured := a.printer().Structured()
			err = c.Events(cmd.Context(), q, since, func(e client.Event) bool {
				if structured {
					fmt.Fprintln(a.env.Stdout, output.EscapeJSON(e.Data))
				} else {
					fmt.Fprintln(a.env.Stdout, output.Escape(eventLine(e)))
				}
				seen++
				return count == 0 || seen < count
			})
			if errors.Is(err, cmd.Context().Err()) {
				return nil
			}
			return err
		},
	}
	tail.Flags().StringSliceVar(&kinds, "kind", nil, "only these kinds: user, server, node, runtime, job, alert, audit, health")
	tail.Flags().StringVar(&since, "since", "", "resume after this event id (a stream sequence)")
	tail.Flags().IntVar(&count, "count", 0, "stop after this many events (0: never)")
	cmd.AddCommand(tail)
	return cmd
}

// eventLine is one event for people: id, time, type and what it is about.
func eventLine(e client.Event) string {
	var env event.Envelope
	if err := json.Unmarshal([]byte(e.Data), &env); err != nil {
		return e.ID + "  " + e.Data
	}
	about := ""
	var data map[string]any
	_ = json.Unmarshal(env.Data, &data)
	switch {
	case strings.HasPrefix(string(env.Type), "user."):
		if u, ok := data["user"].(map[string]any); ok {
			about = fmt.Sprintf("user %v (%v)", u["name"], u["status"])
		}
	case strings.HasPrefix(string(env.Type), "audit."):
		about = fmt.Sprintf("%v by %v: %v %v", data["action"], data["actor_name"], data["target"], data["result"])
	default:
		b, _ := json.Marshal(data)
		about = string(b)
		if len(about) > 100 {
			about = about[:99] + "…"
		}
	}
	return fmt.Sprintf("%s  %s  %s  %s", e.ID, env.Time.UTC().Format("15:04:05"), env.Type, about)
}

// prompt asks a question on stderr and reads a line; empty keeps def.
func (a *app) prompt(in *bufio.Reader, question, def string) (string, error) {
	fmt.Fprintf(a.env.Stderr, "%s [%s]: ", question, def)
	line, err := in.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if line = strings.TrimSpace(line); line == "" {
		return def, nil
	}
	return line, nil
}
