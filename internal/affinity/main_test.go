package affinity

import (
	"net/netip"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

var netipZero netip.Addr
