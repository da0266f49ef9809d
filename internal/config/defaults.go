package config

import "time"

// This file is the one place defaults live (DESIGN.md section 3: every value
// shown there is the default when the key is omitted). Each Default*
// function returns a fresh value; the loader starts from it and overwrites
// only the keys the file sets. Keys not set here default to Go's zero value,
// which is also the documented default ("", false, 0, no list).

// Default listen address of the admin server: loopback only, so no token is
// needed out of the box.
const DefaultAdminListen = "127.0.0.1:9900"

// DefaultGlobal returns the [global] defaults.
func DefaultGlobal() Global {
	return Global{
		MaxConns:        0, // derived from the descriptor limit at start
		ShutdownTimeout: 30 * time.Second,
		DataPath:        "auto",
	}
}

// DefaultAdmin returns the [admin] defaults.
func DefaultAdmin() Admin {
	return Admin{Listen: DefaultAdminListen}
}

// DefaultStore returns the [store] defaults (the path is resolved against
// the config's directory like any path written in the file).
func DefaultStore() Store {
	return Store{Path: "protobalance.db"}
}

// DefaultListener returns a [[listener]] with every optional key at its
// default; Name, Bind and Cluster are required and left zero.
func DefaultListener() Listener {
	return Listener{
		ClientMaskV4: 32,
		ClientMaskV6: 64, // a /64 is one customer's IPv6 network
		BanTime:      10 * time.Minute,
	}
}

// DefaultCluster returns a [[cluster]] with every optional key at its
// default; Name and Nodes are required and left zero.
func DefaultCluster() Cluster {
	return Cluster{
		Algorithm:        "round-robin",
		LoadRating:       "(active + 1) / weight",
		AffinityTTL:      720 * time.Hour, // 30 days: returning clients after a long absence
		AffinityMax:      1000000,
		AffinityMaskV4:   32,
		AffinityMaskV6:   128,
		ConnectTimeout:   3 * time.Second,
		DispatchTimeout:  10 * time.Second,
		EarlyCloseWindow: time.Second,
		IdleTimeout:      time.Hour, // IMAP IDLE and FTP control connections sit silent long
		FinTimeout:       time.Minute,
		RetryInterval:    10 * time.Second,
		RateWindow:       10 * time.Second,
		SourceHash:       true, // FTP servers want data and control from one address
	}
}

// DefaultCheck returns the [cluster.check] defaults, used when the table is
// present; an absent table means no active check.
func DefaultCheck() Check {
	return Check{
		Type:     "tcp",
		Interval: 2 * time.Second,
		Timeout:  time.Second,
		Rise:     2,
		Fall:     2,
		Path:     "/",
		Status:   200,
	}
}

// DefaultNode returns a [[cluster.node]] with every optional key at its
// default; Name and Address are required and left zero.
func DefaultNode() Node {
	return Node{Weight: 1, State: "green"}
}

// DataPaths are the values of [global] data_path.
var DataPaths = []string{"auto", "loop", "goroutine"}
