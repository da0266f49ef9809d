//go:build !linux

package proxy

import (
	"errors"
	"net/netip"
)

// Source addresses and transparent mode rely on Linux socket options
// (IP_BIND_ADDRESS_NO_PORT, IP_TRANSPARENT); checkSources refuses them
// elsewhere.
const sourcesSupported = false

func prepareDialSocket(int, netip.Addr, bool) error { return errors.ErrUnsupported }

func probeTransparent() error { return errors.ErrUnsupported }

func localDivert(bool) (bool, error) { return false, errors.ErrUnsupported }
