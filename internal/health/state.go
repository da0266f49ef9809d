package health

import "time"

// step folds one check result (err == nil for a pass) taken at now into st
// and reports whether st.Up changed. It is pure: the checker's only state
// machine, tested as a table.
//
// A pass resets Failures and counts Successes; a down target comes up when
// Successes reaches rise. A failure resets Successes and counts Failures;
// an up target goes down when Failures reaches fall. Counting goes on past
// the threshold, so a transition happens once per run of equal results.
func step(st Status, err error, now time.Time, rise, fall int) (Status, bool) {
	st.LastCheck = now
	if err == nil {
		st.LastErr = ""
		st.Failures = 0
		st.Successes++
		if !st.Up && st.Successes >= rise {
			st.Up, st.LastChange = true, now
			return st, true
		}
		return st, false
	}
	st.LastErr = err.Error()
	st.Successes = 0
	st.Failures++
	if st.Up && st.Failures >= fall {
		st.Up, st.LastChange = false, now
		return st, true
	}
	return st, false
}

// jitterFrac is how far a pause between checks strays from the interval:
// ±20% lets checks started together drift apart within a few rounds
// without making the interval meaningless.
const jitterFrac = 0.2

// jitter returns the pause before the next check, d ±jitterFrac, for u
// uniform in [0, 1); the mean is d.
func jitter(d time.Duration, u float64) time.Duration {
	return d + time.Duration(float64(d)*jitterFrac*(2*u-1))
}

// firstDelay returns the pause before a target's first check, uniform in
// [0, d) for u uniform in [0, 1), so the first checks spread over the
// first interval.
func firstDelay(d time.Duration, u float64) time.Duration {
	return time.Duration(float64(d) * u)
}
