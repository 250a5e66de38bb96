package simulate

import "testing"

// TestDriftCounts checks drift on hand-made click sequences: the shares
// before and after the change, and the first window wholly after it whose
// clicks reach 95% of the oracle's.
func TestDriftCounts(t *testing.T) {
	bits := func(s string) []bool {
		out := make([]bool, len(s))
		for i, c := range s {
			out[i] = c == '1'
		}
		return out
	}
	cases := []struct {
		name           string
		served, oracle string
		at, window     int
		before, after  float64
		recovered      int
	}{
		// Before: 2 of 4. After (visits 5..14): 6 of 10; windows of 4
		// visits ending at visit 8: 1 click; 9: 1; 10: 2; 11: 3; 12: 3;
		// 13: 4 ≥ 0.95·4, 13 − 4 = 9 visits after the change.
		{"recovers", "1100" + "0001011111", "1111" + "1111111111", 4, 4, 0.5, 0.6, 9},
		// 19/20 = 0.95 exactly counts as recovered at the first window.
		{"exactly 95%", "11" + "11111111111111111110", "11" + "11111111111111111111", 2, 20, 1, 0.95, 20},
		{"never", "1111" + "0000", "1111" + "1111", 4, 2, 1, 0, -1},
		// A window never shorter than Window: a run that ends before one
		// full window after the change has not recovered.
		{"too short", "11" + "111", "11" + "111", 2, 4, 1, 1, -1},
		// Without oracle clicks in a window, 0 ≥ 0.95·0: recovered.
		{"no clicks", "00" + "000", "00" + "000", 2, 3, 0, 0, 3},
	}
	for _, c := range cases {
		d := drift(bits(c.served), bits(c.oracle), c.at, c.window)
		if d.At != c.at || d.OracleShareBefore != c.before || d.OracleShareAfter != c.after || d.RecoveredWithin != c.recovered {
			t.Errorf("%s: %+v, want before %v after %v recovered %d", c.name, *d, c.before, c.after, c.recovered)
		}
	}
}
