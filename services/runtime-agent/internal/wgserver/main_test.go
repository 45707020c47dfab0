package wgserver_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them (the
// in-process clients' devices, the targets, the relays of the tests).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
