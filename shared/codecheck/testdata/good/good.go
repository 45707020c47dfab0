// Package good breaks no rule codecheck enforces, though it has calls of the
// same names and literal arguments that are no log calls.
package good

import (
	"log/slog"
	"testing"
)

const keyUser = "user"

type request struct{}

func (request) Error(code, description string, data []byte) error { return nil }

func run(t *testing.T, log *slog.Logger, r request, err error) {
	log.Info("started", keyUser, 1, slog.Int(keyUser, 2), keyUser, 3)
	log.Info("value is a literal", keyUser, "user")
	log.Info("started " + "x")
	t.Error("a", "b", "c")
	_ = r.Error("400", "bad", nil)
	log.Error("failed", keyUser, err.Error())
}
