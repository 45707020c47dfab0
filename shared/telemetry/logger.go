package telemetry

import (
	"context"
	"log/slog"
	"slices"
)

// onceHandler writes each attribute key once per group: a logger narrowed
// again with a key it already has (log.With(logkey.Component, "agent")
// handed to a part that adds its own component) keeps the innermost value,
// and an attribute of the record itself replaces one of the logger. slog's
// own handlers write every value given, and JSON with a key twice is read
// differently by every log tool. Attributes are kept here until the
// logger's first group; from there on the inner handler keeps them.
type onceHandler struct {
	inner slog.Handler
	attrs []slog.Attr
}

func (h *onceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *onceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &onceHandler{inner: h.inner, attrs: merge(slices.Clone(h.attrs), as)}
}

func (h *onceHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &onceHandler{inner: h.inner.WithAttrs(h.attrs).WithGroup(name)}
}

func (h *onceHandler) Handle(ctx context.Context, r slog.Record) error {
	attrs := slices.Clone(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		attrs = merge(attrs, []slog.Attr{a})
		return true
	})
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(attrs...)
	return h.inner.Handle(ctx, out)
}

// merge adds as to attrs, a key already there taking the new value in
// its old place.
func merge(attrs, as []slog.Attr) []slog.Attr {
	for _, a := range as {
		if i := slices.IndexFunc(attrs, func(b slog.Attr) bool { return b.Key == a.Key && a.Key != "" }); i >= 0 {
			attrs[i] = a
			continue
		}
		attrs = append(attrs, a)
	}
	return attrs
}
