package admin

import "testing"

// TestDashboardFormats pins the template's number formats, which app.js
// repeats (fmtBytes, fmtRate, fmtUptime) so that figures do not change
// look when the script takes over.
func TestDashboardFormats(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{humanBytes(uint64(0)), "0 B"},
		{humanBytes(uint64(999)), "999 B"},
		{humanBytes(uint64(1000)), "1.0 kB"},
		{humanBytes(float64(791500)), "791.5 kB"},
		{humanBytes(int64(1_500_000)), "1.5 MB"},
		{humanBytes(uint64(3_200_000_000_000)), "3.2 TB"},
		{humanRate(0), "0.0"},
		{humanRate(9.94), "9.9"},
		{humanRate(22.4), "22"},
		{humanUptime(17), "0m 17s"},
		{humanUptime(3*3600 + 5*60 + 9), "3h 5m"},
		{humanUptime(2*86400 + 4*3600), "2d 4h"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
