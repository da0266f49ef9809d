package admin_test

import (
	"net/netip"
	"strconv"

	"github.com/protobalance/protobalance/internal/admin"
)

// nopController is a Controller with nothing in it, for tests of the
// server itself.
type nopController struct{}

var _ admin.Controller = nopController{}

func (nopController) Status() admin.Status      { return admin.Status{Version: "nop"} }
func (nopController) Clusters() []admin.Cluster { return nil }
func (nopController) Cluster(string) (admin.Cluster, error) {
	return admin.Cluster{}, admin.ErrNotFound
}
func (nopController) Listeners() []admin.Listener               { return nil }
func (nopController) SetNodeState(string, string, string) error { return admin.ErrNotFound }
func (nopController) SetNodeWeight(string, string, int) error   { return admin.ErrNotFound }
func (nopController) AddNode(string, admin.NodeSpec) error      { return admin.ErrNotFound }
func (nopController) RemoveNode(string, string) error           { return admin.ErrNotFound }
func (nopController) SwitchListener(string, string) error       { return admin.ErrNotFound }
func (nopController) Reload() error                             { return admin.ErrUnsupported }
func (nopController) ForgetAffinity(netip.Addr) error           { return admin.ErrUnsupported }
func (nopController) Bans() ([]admin.Ban, error)                { return nil, admin.ErrUnsupported }
func (nopController) LiftBan(netip.Addr) error                  { return admin.ErrUnsupported }
func (nopController) Affinity(netip.Addr) (admin.AffinityRecord, error) {
	return admin.AffinityRecord{}, admin.ErrUnsupported
}

func itoa[T ~uint16 | ~int](n T) string { return strconv.Itoa(int(n)) }
