// Package csvlog reads a historical feedback log in CSV, one event a row:
//
//	event_id,<feature_1>,...,<feature_d>,product_id,response
//	e1,0.5,1,0,p42,1
//
// The header is required. Its first column must be event_id and its last two
// product_id and response; the columns between are the feature names (1 to
// MaxFeatures of them, non-empty, unique and none of the three fixed names),
// which set the dimension d and the order of the context vector. Spaces
// around fields and a leading UTF-8 byte-order mark are ignored.
//
// Each row must have as many columns as the header, a non-empty event_id and
// product_id, finite numeric features and a finite numeric response in
// [0, 1]. A row that breaks these rules is reported as an error wrapping
// ErrBadRow (a *RowError that carries the line); the Reader stays usable and
// the caller may skip the row and read on. A bad header is reported as an
// error wrapping ErrBadHeader.
//
// The package does not depend on Redis: it is shared by the bootstrap loader
// and producers that replay a log into other systems.
package csvlog

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/redbandit/redbandit/model/linucb"
)

// MaxFeatures is the largest number of feature columns a log may have. It
// equals store.MaxDim, the largest model dimension.
const MaxFeatures = 64

// Names of the fixed header columns.
const (
	ColEventID   = "event_id"
	ColProductID = "product_id"
	ColResponse  = "response"
)

// Errors returned by this package. Callers branch on them with errors.Is.
var (
	// ErrBadHeader reports a missing or malformed header. Nothing can be
	// read from a log with a bad header.
	ErrBadHeader = errors.New("csvlog: bad header")
	// ErrBadRow reports a malformed data row. The error is a *RowError; the
	// Reader stays usable and the next call to Next reads the next row.
	ErrBadRow = errors.New("csvlog: bad row")
)

// RowError describes a malformed data row. It wraps ErrBadRow and, when the
// row could not be parsed as CSV at all, the *csv.ParseError in Err.
type RowError struct {
	Line    int    // line of the input on which the row starts (1-based; the header is line 1)
	Problem string // what is wrong with the row
	Err     error  // underlying error, if any
}

func (e *RowError) Error() string {
	return fmt.Sprintf("%v at line %d: %s", ErrBadRow, e.Line, e.Problem)
}

// Unwrap returns ErrBadRow and, if set, Err.
func (e *RowError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrBadRow}
	}
	return []error{ErrBadRow, e.Err}
}

// Event is one valid row of the log.
type Event struct {
	Line      int       // line of the input on which the row starts
	EventID   string    // event_id, non-empty
	ProductID string    // product_id, non-empty
	Context   []float64 // the feature values in header order, all finite; newly allocated for each event
	Reward    float64   // response, in [0, 1]
}

// Reader reads events from a CSV log. It is not safe for concurrent use.
type Reader struct {
	csv      *csv.Reader
	features []string
	cols     int   // columns per row: len(features) + 3
	err      error // sticky non-row error (I/O error or io.EOF)
}

// NewReader reads and validates the header of the log in r and returns a
// Reader positioned at the first data row. A UTF-8 byte-order mark before
// the header is ignored. Header problems are returned wrapping ErrBadHeader;
// a read error from r is returned wrapped as it is.
func NewReader(r io.Reader) (*Reader, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // column counts are checked here, with better messages
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	rec, err := cr.Read()
	if err != nil {
		var pe *csv.ParseError
		switch {
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: empty input, want a header line", ErrBadHeader)
		case errors.As(err, &pe):
			return nil, fmt.Errorf("%w: %w", ErrBadHeader, pe)
		default:
			return nil, fmt.Errorf("read csv header: %w", err)
		}
	}
	features, err := parseHeader(rec)
	if err != nil {
		return nil, err
	}
	return &Reader{csv: cr, features: features, cols: len(features) + 3}, nil
}

func parseHeader(rec []string) ([]string, error) {
	names := make([]string, len(rec))
	for i, f := range rec {
		names[i] = strings.TrimSpace(f)
	}
	names[0] = strings.TrimSpace(strings.TrimPrefix(names[0], "\ufeff"))
	want := fmt.Sprintf("%s,<features>,%s,%s", ColEventID, ColProductID, ColResponse)
	if len(names) < 4 {
		return nil, fmt.Errorf("%w: %d columns %q, want %s with at least one feature", ErrBadHeader, len(names), names, want)
	}
	n := len(names)
	if names[0] != ColEventID {
		return nil, fmt.Errorf("%w: first column is %q, want %q (layout %s)", ErrBadHeader, names[0], ColEventID, want)
	}
	if names[n-2] != ColProductID || names[n-1] != ColResponse {
		return nil, fmt.Errorf("%w: last two columns are %q, %q, want %q, %q (layout %s)", ErrBadHeader, names[n-2], names[n-1], ColProductID, ColResponse, want)
	}
	features := names[1 : n-2]
	if len(features) > MaxFeatures {
		return nil, fmt.Errorf("%w: %d feature columns, at most %d allowed", ErrBadHeader, len(features), MaxFeatures)
	}
	seen := make(map[string]int, len(features))
	for i, f := range features {
		col := i + 2
		switch {
		case f == "":
			return nil, fmt.Errorf("%w: feature column %d has an empty name", ErrBadHeader, col)
		case f == ColEventID || f == ColProductID || f == ColResponse:
			return nil, fmt.Errorf("%w: feature column %d is named %q, a reserved column name", ErrBadHeader, col, f)
		}
		if prev, dup := seen[f]; dup {
			return nil, fmt.Errorf("%w: feature %q named twice (columns %d and %d)", ErrBadHeader, f, prev, col)
		}
		seen[f] = col
	}
	return append([]string(nil), features...), nil
}

// Features returns the feature names in context order. The caller may modify
// the returned slice.
func (r *Reader) Features() []string { return append([]string(nil), r.features...) }

// Next returns the next event. At the end of the input it returns io.EOF.
// A malformed row is returned as a *RowError wrapping ErrBadRow, naming the
// row's line and the problem; the row is consumed and the following call
// reads the next one. Any other error (a read error from the underlying
// reader) is returned by this and every later call. On error the Event is
// the zero value.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	rec, err := r.csv.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return Event{}, &RowError{Line: pe.StartLine, Problem: fmt.Sprintf("malformed CSV (line %d, column %d): %v", pe.Line, pe.Column, pe.Err), Err: pe}
		}
		if !errors.Is(err, io.EOF) {
			err = fmt.Errorf("read csv: %w", err)
		}
		r.err = err
		return Event{}, err
	}
	line, _ := r.csv.FieldPos(0)
	bad := func(format string, args ...any) (Event, error) {
		return Event{}, &RowError{Line: line, Problem: fmt.Sprintf(format, args...)}
	}
	if len(rec) != r.cols {
		return bad("%d columns, the header has %d", len(rec), r.cols)
	}
	ev := Event{
		Line:      line,
		EventID:   strings.TrimSpace(rec[0]),
		ProductID: strings.TrimSpace(rec[r.cols-2]),
		Context:   make([]float64, len(r.features)),
	}
	if ev.EventID == "" {
		return bad("empty %s", ColEventID)
	}
	if ev.ProductID == "" {
		return bad("empty %s", ColProductID)
	}
	for i, name := range r.features {
		v, problem := parseNumber(rec[i+1])
		if problem != "" {
			return bad("feature %q (column %d): %s", name, i+2, problem)
		}
		ev.Context[i] = v
	}
	reward, problem := parseNumber(rec[r.cols-1])
	if problem != "" {
		return bad("%s (column %d): %s", ColResponse, r.cols, problem)
	}
	if reward < 0 || reward > 1 {
		return bad("%s %v is outside [0, 1]", ColResponse, reward)
	}
	ev.Reward = reward
	return ev, nil
}

// parseNumber parses a trimmed decimal number and returns a description of
// the problem if it is not a finite number.
func parseNumber(s string) (float64, string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, "empty value, want a number"
	}
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && math.IsInf(v, 0):
		return 0, fmt.Sprintf("%q overflows a float64", s)
	case err != nil && !errors.Is(err, strconv.ErrRange): // underflow to 0 or a denormal is fine
		return 0, fmt.Sprintf("%q is not a number", s)
	case math.IsNaN(v) || math.IsInf(v, 0):
		return 0, fmt.Sprintf("%q is not a finite number", s)
	case math.Abs(v) > linucb.MaxAbsContext:
		return 0, fmt.Sprintf("%q is beyond ±%g: a model's sums of its products would overflow", s, linucb.MaxAbsContext)
	}
	return v, ""
}
