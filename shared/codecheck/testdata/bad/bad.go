// Package bad breaks every rule codecheck enforces, once per shape.
package bad

import (
	"context"
	"log/slog"
)

const keyUser = "user"

type svc struct{ log *slog.Logger }

func (s *svc) run(ctx context.Context, log *slog.Logger) {
	log.Info("started", "user", 1)
	log.Info("started", keyUser, 1, "node", 2)
	log.InfoContext(ctx, "started", "user", 1)
	log.Log(ctx, slog.LevelInfo, "started", "user", 1)
	_ = log.With("component", "x")
	_ = slog.Default().With(keyUser, 1, "node", 2)
	s.log.Error("failed", slog.Int(keyUser, 1), "server", 2)
	s.log.Warn("failed", slog.String("user", "x"))
}
