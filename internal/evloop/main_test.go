package evloop

import (
	"testing"

	"go.uber.org/goleak"
)

// A stopped loop leaves no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
