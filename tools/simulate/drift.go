package simulate

// RecoveryShare is the share of the oracle's rolling click rate at which
// the served policy counts as recovered from a change of tastes
// (Summary.RecoveredWithin).
const RecoveryShare = 0.95

// Drift is what a run with Config.DriftAt reports about the change.
type Drift struct {
	At int `json:"drift_at"` // the last visit with the old tastes
	// The served policy's clicks over the oracle's, on the visits up to At
	// and on those after it.
	OracleShareBefore float64 `json:"oracle_share_before"`
	OracleShareAfter  float64 `json:"oracle_share_after"`
	// RecoveredWithin is the number of visits after the change until the
	// served policy's click rate over the last Config.Window visits, all
	// of them after the change, is at least RecoveryShare of the oracle's
	// over the same visits; so at least Window. -1: not within the run.
	RecoveredWithin int `json:"recovered_within"`
}

// drift computes the Drift of a run from each visit's click (hits) of the
// served policy and of the oracle.
func drift(served, oracle []bool, at, window int) *Drift {
	d := &Drift{At: at, RecoveredWithin: -1}
	at = min(at, len(served))
	d.OracleShareBefore = share(served[:at], oracle[:at])
	d.OracleShareAfter = share(served[at:], oracle[at:])
	var s, o int // clicks in the window ending at visit n
	for n := at + 1; n <= len(served); n++ {
		s += b2i(served[n-1])
		o += b2i(oracle[n-1])
		if n-at > window {
			s -= b2i(served[n-1-window])
			o -= b2i(oracle[n-1-window])
		}
		if n-at >= window && float64(s) >= RecoveryShare*float64(o) {
			d.RecoveredWithin = n - at
			break
		}
	}
	return d
}

// share returns the clicks of served over those of oracle (0 without any).
func share(served, oracle []bool) float64 {
	var s, o int
	for i := range served {
		s += b2i(served[i])
		o += b2i(oracle[i])
	}
	if o == 0 {
		return 0
	}
	return float64(s) / float64(o)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
