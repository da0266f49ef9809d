package config

import (
	"bytes"

	toml "github.com/pelletier/go-toml/v2"
)

// The raw types mirror the file one to one. Every scalar is a pointer so
// that an omitted key (nil) can be told from an explicit zero: defaults
// apply to nil only. Durations stay strings until validation, which knows
// the line to blame.

type rawDoc struct {
	Global   *rawGlobal    `toml:"global"`
	Admin    *rawAdmin     `toml:"admin"`
	Store    *rawStore     `toml:"store"`
	Listener []rawListener `toml:"listener"`
	Cluster  []rawCluster  `toml:"cluster"`
}

type rawGlobal struct {
	MaxConns        *int      `toml:"max_conns"`
	ShutdownTimeout *duration `toml:"shutdown_timeout"`
	DataPath        *string   `toml:"data_path"`
}

type rawAdmin struct {
	Listen    *string `toml:"listen"`
	TokenFile *string `toml:"token_file"`
	TLSCert   *string `toml:"tls_cert"`
	TLSKey    *string `toml:"tls_key"`
}

type rawStore struct {
	Path  *string `toml:"path"`
	Redis *string `toml:"redis"`
}

type rawListener struct {
	Name           *string   `toml:"name"`
	Bind           *string   `toml:"bind"`
	Cluster        *string   `toml:"cluster"`
	AcceptProxy    *bool     `toml:"accept_proxy"`
	Allow          []string  `toml:"allow"`
	Deny           []string  `toml:"deny"`
	AllowFile      *string   `toml:"allow_file"`
	DenyFile       *string   `toml:"deny_file"`
	MaxConns       *int      `toml:"max_conns"`
	MaxConnRate    *int      `toml:"max_conn_rate"`
	MaxClientConns *int      `toml:"max_client_conns"`
	ClientMaskV4   *int      `toml:"client_mask_v4"`
	ClientMaskV6   *int      `toml:"client_mask_v6"`
	BanTime        *duration `toml:"ban_time"`
}

type rawCluster struct {
	Name             *string   `toml:"name"`
	Algorithm        *string   `toml:"algorithm"`
	LoadRating       *string   `toml:"load_rating"`
	HashKey          *string   `toml:"hash_key"`
	Affinity         *bool     `toml:"affinity"`
	AffinityGroup    *string   `toml:"affinity_group"`
	AffinityTTL      *duration `toml:"affinity_ttl"`
	AffinityMax      *int      `toml:"affinity_max"`
	AffinityMaskV4   *int      `toml:"affinity_mask_v4"`
	AffinityMaskV6   *int      `toml:"affinity_mask_v6"`
	ConnectTimeout   *duration `toml:"connect_timeout"`
	DispatchTimeout  *duration `toml:"dispatch_timeout"`
	EarlyCloseWindow *duration `toml:"early_close_window"`
	IdleTimeout      *duration `toml:"idle_timeout"`
	FinTimeout       *duration `toml:"fin_timeout"`
	RetryInterval    *duration `toml:"retry_interval"`
	RateWindow       *duration `toml:"rate_window"`
	SourceAddresses  []string  `toml:"source_addresses"`
	SourceHash       *bool     `toml:"source_hash"`
	ProxyProtocol    *string   `toml:"proxy_protocol"`
	Transparent      *bool     `toml:"transparent"`
	Check            *rawCheck `toml:"check"`
	Node             []rawNode `toml:"node"`
}

type rawCheck struct {
	Type     *string   `toml:"type"`
	Interval *duration `toml:"interval"`
	Timeout  *duration `toml:"timeout"`
	Rise     *int      `toml:"rise"`
	Fall     *int      `toml:"fall"`
	Port     *int      `toml:"port"`
	Send     *string   `toml:"send"`
	Expect   *string   `toml:"expect"`
	Path     *string   `toml:"path"`
	Status   *int      `toml:"status"`
}

type rawNode struct {
	Name     *string `toml:"name"`
	Address  *string `toml:"address"`
	Weight   *int    `toml:"weight"`
	Fallover *string `toml:"fallover"`
	Standby  *bool   `toml:"standby"`
	MaxConns *int    `toml:"max_conns"`
	State    *string `toml:"state"`
}

// duration is a duration as written ("3s"), parsed during validation. A
// type of its own lets type errors say a duration was expected.
type duration string

// decode reads data strictly: unknown keys and wrong types are errors.
func decode(file string, data []byte) (*rawDoc, Errors) {
	var doc rawDoc
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fromTOML(file, err)
	}
	return &doc, nil
}

// setIf copies *src into *dst when the key was present.
func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}
