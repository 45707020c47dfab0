// Package notify delivers alert events to receivers: a generic webhook
// (JSON body signed with HMAC-SHA256), Slack incoming webhooks and the
// Telegram Bot API. Each notifier reads alert events through its own
// durable consumer of EVENTS, so a slow or failing receiver never holds
// back another and alerts wait in the stream while a receiver is down;
// a failed delivery is retried with exponential backoff until it lands.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Kinds of notifier.
const (
	KindWebhook  = "webhook"
	KindSlack    = "slack"
	KindTelegram = "telegram"
)

// Headers of the generic webhook.
const (
	HeaderSignature = "X-Vpnfleet-Signature" // "sha256=<hex HMAC-SHA256 of the body>"
	HeaderEvent     = "X-Vpnfleet-Event"     // the event type
	HeaderDelivery  = "X-Vpnfleet-Delivery"  // the event id: receivers dedupe on it
)

// Duration is a time.Duration written as "10s" in the file.
type Duration time.Duration

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 10s)", b)
	}
	*d = Duration(v)
	return nil
}

// Target is one [[notifier]] table of the rules file.
type Target struct {
	// Name is a subject token; it names the durable consumer.
	Name string `toml:"name"`
	Kind string `toml:"kind"`
	// URL is the webhook URL (for telegram: the Bot API sendMessage URL).
	URL string `toml:"url"`
	// Secret keys the webhook's HMAC-SHA256 signature.
	Secret string `toml:"secret"`
	// ChatID is the Telegram chat to post to.
	ChatID string `toml:"chat_id"`
	// MinSeverity drops less urgent alerts (default info: everything).
	MinSeverity string `toml:"min_severity"`
	// Timeout bounds one delivery (default 10s).
	Timeout Duration `toml:"timeout"`
}

var rank = map[string]int{event.SeverityInfo: 0, event.SeverityWarning: 1, event.SeverityCritical: 2}

// Validate checks every target, naming bad fields as
// notifier[<i>] "<name>".<field>, and fills defaults.
func Validate(targets []Target) error {
	var fe []errs.FieldError
	seen := map[string]bool{}
	for i := range targets {
		t := &targets[i]
		bad := func(field, rule string) {
			fe = append(fe, errs.FieldError{Field: fmt.Sprintf("notifier[%d] %q.%s", i, t.Name, field), Rule: rule})
		}
		switch {
		case !subject.ValidToken(t.Name) || len(t.Name) > 64:
			bad("name", "must be 1-64 of A-Z a-z 0-9 _ -")
		case seen[t.Name]:
			bad("name", "is used by another notifier")
		}
		seen[t.Name] = true
		if !slices.Contains([]string{KindWebhook, KindSlack, KindTelegram}, t.Kind) {
			bad("kind", "must be webhook, slack or telegram")
		}
		if u, err := url.Parse(t.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("url", "must be an http or https URL")
		}
		if t.Kind == KindTelegram && t.ChatID == "" {
			bad("chat_id", "must be set for telegram")
		}
		if t.MinSeverity == "" {
			t.MinSeverity = event.SeverityInfo
		}
		if _, ok := rank[t.MinSeverity]; !ok {
			bad("min_severity", "must be critical, warning or info")
		}
		if t.Timeout < 0 {
			bad("timeout", "must not be negative")
		}
		if t.Timeout == 0 {
			t.Timeout = Duration(10 * time.Second)
		}
	}
	if len(fe) == 0 {
		return nil
	}
	return &errs.Error{Class: errs.Invalid, Msg: "invalid notifiers", Fields: fe}
}

// Notifier delivers to one target.
type Notifier struct {
	t      Target
	client *http.Client
}

// New returns a notifier for a validated target.
func New(t Target) *Notifier {
	return &Notifier{t: t, client: &http.Client{Timeout: time.Duration(t.Timeout), Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     time.Minute,
	}}}
}

// Close drops idle connections to the receiver.
func (n *Notifier) Close() { n.client.CloseIdleConnections() }

// Name is the target's name.
func (n *Notifier) Name() string { return n.t.Name }

// WebhookBody is the JSON body of the generic webhook.
type WebhookBody struct {
	ID    string      `json:"id"`
	Type  event.Type  `json:"type"`
	Time  time.Time   `json:"time"`
	Alert event.Alert `json:"alert"`
}

// Deliver posts one alert event. nil means delivered (or filtered out);
// Unavailable means try again later (receiver down, 5xx, 429); Invalid
// means the receiver refused it for good (other 4xx) or the event is not
// an alert, and it is dropped with a logged reason.
func (n *Notifier) Deliver(ctx context.Context, env event.Envelope) error {
	if env.Type != event.AlertFiring && env.Type != event.AlertResolved {
		return nil
	}
	var a event.Alert
	if err := env.Decode(&a); err != nil {
		return errs.Wrap(errs.Invalid, err, "decoding alert")
	}
	if rank[a.Severity] < rank[n.t.MinSeverity] {
		return nil
	}
	var body any
	switch n.t.Kind {
	case KindSlack:
		body = map[string]string{"text": Text(env.Type, a)}
	case KindTelegram:
		body = map[string]any{"chat_id": n.t.ChatID, "text": Text(env.Type, a), "disable_web_page_preview": true}
	default:
		body = WebhookBody{ID: env.ID, Type: env.Type, Time: env.Time, Alert: a}
	}
	data, err := json.Marshal(body)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encoding notification")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.t.URL, bytes.NewReader(data))
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "building request to %s", n.t.Name)
	}
	req.Header.Set("Content-Type", "application/json")
	if n.t.Kind == KindWebhook {
		req.Header.Set(HeaderEvent, string(env.Type))
		req.Header.Set(HeaderDelivery, env.ID)
		if n.t.Secret != "" {
			req.Header.Set(HeaderSignature, Sign([]byte(n.t.Secret), data))
		}
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "posting to %s", n.t.Name)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return errs.New(errs.Unavailable, "%s answered %s", n.t.Name, resp.Status)
	default:
		return errs.New(errs.Invalid, "%s refused the alert: %s", n.t.Name, resp.Status)
	}
}

// Sign returns the signature header value of body under key.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header in constant time; receivers use it.
func Verify(key, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(key, body)), []byte(header))
}

// Text is the one-message form of an alert for chat receivers.
func Text(typ event.Type, a event.Alert) string {
	var b strings.Builder
	if typ == event.AlertResolved {
		fmt.Fprintf(&b, "✅ RESOLVED %s", a.Rule)
	} else {
		mark := map[string]string{event.SeverityCritical: "🔴", event.SeverityWarning: "🟠"}[a.Severity]
		if mark == "" {
			mark = "🔵"
		}
		fmt.Fprintf(&b, "%s FIRING %s (%s)", mark, a.Rule, a.Severity)
	}
	if a.Summary != "" {
		fmt.Fprintf(&b, ": %s", a.Summary)
	}
	keys := make([]string, 0, len(a.Labels))
	for k := range a.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n%s=%s", k, a.Labels[k])
	}
	fmt.Fprintf(&b, "\nsince %s", a.StartsAt.UTC().Format(time.RFC3339))
	if !a.EndsAt.IsZero() {
		fmt.Fprintf(&b, ", ended %s", a.EndsAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "\nfingerprint %s", a.Fingerprint)
	return b.String()
}
