package csvlog_test

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/redbandit/redbandit/training/csvlog"
)

func TestHeader(t *testing.T) {
	many := make([]string, csvlog.MaxFeatures+1)
	for i := range many {
		many[i] = fmt.Sprintf("f%d", i)
	}
	cases := []struct {
		name     string
		in       string
		features []string // nil: want ErrBadHeader
		msg      string   // substring of the error
	}{
		{"one feature", "event_id,x,product_id,response\n", []string{"x"}, ""},
		{"spaces trimmed", " event_id , age ,  income,product_id , response \n", []string{"age", "income"}, ""},
		{"quoted names", `event_id,"a,b","c ""d""",product_id,response` + "\n", []string{"a,b", `c "d"`}, ""},
		{"byte-order mark", "\ufeffevent_id,x,product_id,response\n", []string{"x"}, ""},
		{"CRLF", "event_id,x,y,product_id,response\r\n", []string{"x", "y"}, ""},
		{"no trailing newline", "event_id,x,product_id,response", []string{"x"}, ""},
		{"max features", "event_id," + strings.Join(many[:csvlog.MaxFeatures], ",") + ",product_id,response\n", many[:csvlog.MaxFeatures], ""},

		{"empty input", "", nil, "empty input"},
		{"blank lines only", "\n\n", nil, "empty input"},
		{"no features", "event_id,product_id,response\n", nil, "at least one feature"},
		{"too few columns", "event_id,x\n", nil, "2 columns"},
		{"first column wrong", "id,x,product_id,response\n", nil, `first column is "id"`},
		{"first column case", "Event_ID,x,product_id,response\n", nil, `first column is "Event_ID"`},
		{"product_id missing", "event_id,x,y,response\n", nil, `last two columns are "y", "response"`},
		{"response missing", "event_id,x,product_id,reward\n", nil, `"product_id", "reward"`},
		{"swapped tail", "event_id,x,response,product_id\n", nil, "last two columns"},
		{"too many features", "event_id," + strings.Join(many, ",") + ",product_id,response\n", nil, "65 feature columns, at most 64"},
		{"empty feature name", "event_id,x,,product_id,response\n", nil, "column 3 has an empty name"},
		{"blank feature name", "event_id,  ,x,product_id,response\n", nil, "column 2 has an empty name"},
		{"duplicate feature", "event_id,x,y,x,product_id,response\n", nil, `feature "x" named twice (columns 2 and 4)`},
		{"duplicate after trim", "event_id,x, x,product_id,response\n", nil, "named twice"},
		{"reserved name", "event_id,x,product_id,product_id,response\n", nil, `named "product_id", a reserved`},
		{"bare quote", "event_id,x\"y,product_id,response\n", nil, "bare"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := csvlog.NewReader(strings.NewReader(tc.in))
			if tc.features == nil {
				if !errors.Is(err, csvlog.ErrBadHeader) {
					t.Fatalf("error %v, want ErrBadHeader", err)
				}
				if errors.Is(err, csvlog.ErrBadRow) {
					t.Fatalf("header error %v also wraps ErrBadRow", err)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %q does not mention %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Features(); !slices.Equal(got, tc.features) {
				t.Fatalf("features %q, want %q", got, tc.features)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("Next on a header-only log: %v, want io.EOF", err)
			}
		})
	}
}

func TestFeaturesIsACopy(t *testing.T) {
	r, err := csvlog.NewReader(strings.NewReader("event_id,a,b,product_id,response\n"))
	if err != nil {
		t.Fatal(err)
	}
	r.Features()[0] = "changed"
	if got := r.Features(); got[0] != "a" {
		t.Fatalf("Features aliases the reader's state: %q", got)
	}
}

func TestRows(t *testing.T) {
	const header = "event_id,a,b,product_id,response\n" // line 1; the row under test is line 2
	cases := []struct {
		name string
		row  string
		want *csvlog.Event // nil: want a *RowError on line 2
		msg  string        // substring of the error
	}{
		{"valid", "e1,0.5,-2,p1,1", &csvlog.Event{EventID: "e1", ProductID: "p1", Context: []float64{0.5, -2}, Reward: 1}, ""},
		{"spaces", "  e1 , 0.5 ,\t-2 ,  p1  , 0.25 ", &csvlog.Event{EventID: "e1", ProductID: "p1", Context: []float64{0.5, -2}, Reward: 0.25}, ""},
		{"quoted fields", `"e,1","1e-3","+3","p ""1""","0"`, &csvlog.Event{EventID: "e,1", ProductID: `p "1"`, Context: []float64{0.001, 3}, Reward: 0}, ""},
		{"exponent and zero", "e1,-0,1E2,p1,0.0", &csvlog.Event{EventID: "e1", ProductID: "p1", Context: []float64{0, 100}, Reward: 0}, ""},
		{"underflow is zero", "e1,1e-400,0,p1,1", &csvlog.Event{EventID: "e1", ProductID: "p1", Context: []float64{0, 0}, Reward: 1}, ""},

		{"too few columns", "e1,0.5,p1,1", nil, "4 columns, the header has 5"},
		{"too many columns", "e1,0.5,1,2,p1,1", nil, "6 columns, the header has 5"},
		{"one column", "e1", nil, "1 columns, the header has 5"},
		{"empty event_id", ",0.5,1,p1,1", nil, "empty event_id"},
		{"blank event_id", "  ,0.5,1,p1,1", nil, "empty event_id"},
		{"empty product_id", "e1,0.5,1,,1", nil, "empty product_id"},
		{"non-numeric feature", "e1,abc,1,p1,1", nil, `feature "a" (column 2): "abc" is not a number`},
		{"empty feature", "e1,0.5,,p1,1", nil, `feature "b" (column 3): empty value`},
		{"comma decimal", `e1,"0,5",1,p1,1`, nil, `"0,5" is not a number`},
		{"NaN feature", "e1,NaN,1,p1,1", nil, `"NaN" is not a finite number`},
		{"Inf feature", "e1,0,+Inf,p1,1", nil, `"+Inf" is not a finite number`},
		{"-infinity feature", "e1,-infinity,0,p1,1", nil, "not a finite number"},
		{"overflowing feature", "e1,1e400,0,p1,1", nil, `"1e400" overflows`},
		{"feature beyond 1e100", "e1,0,-2e100,p1,1", nil, `"-2e100" is beyond ±1e+100`},
		{"non-numeric response", "e1,0,1,p1,yes", nil, `response (column 5): "yes" is not a number`},
		{"empty response", "e1,0,1,p1,", nil, "response (column 5): empty value"},
		{"NaN response", "e1,0,1,p1,nan", nil, "not a finite number"},
		{"Inf response", "e1,0,1,p1,inf", nil, "not a finite number"},
		{"response above 1", "e1,0,1,p1,1.5", nil, "response 1.5 is outside [0, 1]"},
		{"response below 0", "e1,0,1,p1,-0.1", nil, "response -0.1 is outside [0, 1]"},
		{"bare quote", `e1,0"5,1,p1,1`, nil, "malformed CSV"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The row under test sits between two valid rows: the reader
			// must return the row after it whatever happened.
			in := header + tc.row + "\nnext,1,2,q,0\n"
			r, err := csvlog.NewReader(strings.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			ev, err := r.Next()
			if tc.want == nil {
				var re *csvlog.RowError
				if !errors.Is(err, csvlog.ErrBadRow) || !errors.As(err, &re) {
					t.Fatalf("row %q: error %v, want a *RowError wrapping ErrBadRow", tc.row, err)
				}
				if errors.Is(err, csvlog.ErrBadHeader) {
					t.Fatalf("row error %v also wraps ErrBadHeader", err)
				}
				if re.Line != 2 || !strings.Contains(err.Error(), "line 2") {
					t.Fatalf("row %q: error %q (line %d), want line 2", tc.row, err, re.Line)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("row %q: error %q does not mention %q", tc.row, err, tc.msg)
				}
			} else {
				if err != nil {
					t.Fatalf("row %q: %v", tc.row, err)
				}
				tc.want.Line = 2
				if !sameEvent(ev, *tc.want) {
					t.Fatalf("row %q: event %+v, want %+v", tc.row, ev, *tc.want)
				}
			}
			ev, err = r.Next()
			if err != nil || ev.EventID != "next" || ev.Line != 3 {
				t.Fatalf("row after %q: %+v, %v; want event next on line 3", tc.row, ev, err)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("at the end: %v, want io.EOF", err)
			}
		})
	}
}

func sameEvent(a, b csvlog.Event) bool {
	return a.Line == b.Line && a.EventID == b.EventID && a.ProductID == b.ProductID &&
		slices.Equal(a.Context, b.Context) && a.Reward == b.Reward
}

// TestLineNumbers checks that lines are counted in the input, not in
// records: blank lines are skipped and a quoted field may span lines.
func TestLineNumbers(t *testing.T) {
	in := "event_id,a,product_id,response\n" + // 1
		"e1,1,p1,1\n" + // 2
		"\n" + // 3 (blank, skipped)
		"\"e\n2\",2,p2,0\n" + // 4-5
		"e3,x,p3,1\n" + // 6 (bad)
		"e4,4,p4,0.5\r\n" // 7
	r, err := csvlog.NewReader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	var bad []int
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		var re *csvlog.RowError
		if errors.As(err, &re) {
			bad = append(bad, re.Line)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, ev.Line)
	}
	if !slices.Equal(lines, []int{2, 4, 7}) || !slices.Equal(bad, []int{6}) {
		t.Fatalf("good rows on lines %v, bad on %v; want [2 4 7] and [6]", lines, bad)
	}
}

// TestContextNotReused checks that each event owns its context slice.
func TestContextNotReused(t *testing.T) {
	r, err := csvlog.NewReader(strings.NewReader("event_id,a,product_id,response\ne1,1,p,1\ne2,2,p,1\n"))
	if err != nil {
		t.Fatal(err)
	}
	e1, _ := r.Next()
	e2, _ := r.Next()
	if e1.Context[0] != 1 || e2.Context[0] != 2 {
		t.Fatalf("contexts %v and %v, want [1] and [2]", e1.Context, e2.Context)
	}
}

// TestParseErrorWrapped checks that a CSV syntax error in a row carries the
// *csv.ParseError, and that an unterminated quote consumes the rest of the
// input.
func TestParseErrorWrapped(t *testing.T) {
	r, err := csvlog.NewReader(strings.NewReader("event_id,a,product_id,response\ne1,1,p,1\n\"e2,2,p,1\ne3,3,p,1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, err = r.Next()
	var pe *csv.ParseError
	if !errors.Is(err, csvlog.ErrBadRow) || !errors.As(err, &pe) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("unterminated quote: %v, want ErrBadRow wrapping a *csv.ParseError at line 3", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after an unterminated quote: %v, want io.EOF", err)
	}
}

// TestReadErrorIsSticky checks that an I/O error is not a bad row and is
// returned again by later calls.
func TestReadErrorIsSticky(t *testing.T) {
	boom := errors.New("disk on fire")
	in := io.MultiReader(strings.NewReader("event_id,a,product_id,response\ne1,1,p,1\n"), iotest.ErrReader(boom))
	r, err := csvlog.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, err := r.Next()
		if !errors.Is(err, boom) || errors.Is(err, csvlog.ErrBadRow) {
			t.Fatalf("call %d after the failure: %v, want the read error and not ErrBadRow", i, err)
		}
	}

	_, err = csvlog.NewReader(iotest.ErrReader(boom))
	if !errors.Is(err, boom) || errors.Is(err, csvlog.ErrBadHeader) {
		t.Fatalf("header read failure: %v, want the read error and not ErrBadHeader", err)
	}
}

// TestEOFRepeats checks that io.EOF is returned on every call at the end.
func TestEOFRepeats(t *testing.T) {
	r, err := csvlog.NewReader(strings.NewReader("event_id,a,product_id,response\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("call %d: %v, want io.EOF", i, err)
		}
	}
}

func ExampleReader() {
	log := `event_id,age,is_mobile,product_id,response
e1,0.3,1,shoes,1
e2,0.7,oops,hats,0
e3,0.5,0,hats,0.5
`
	r, err := csvlog.NewReader(strings.NewReader(log))
	if err != nil {
		panic(err)
	}
	fmt.Println("features:", r.Features())
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, csvlog.ErrBadRow) {
			fmt.Println("skip:", err)
			continue
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(ev.Line, ev.EventID, ev.ProductID, ev.Context, ev.Reward)
	}
	// Output:
	// features: [age is_mobile]
	// 2 e1 shoes [0.3 1] 1
	// skip: csvlog: bad row at line 3: feature "is_mobile" (column 3): "oops" is not a number
	// 4 e3 hats [0.5 0] 0.5
}
