// Package bootstrap folds a historical feedback log (a CSV file in the
// layout of package csvlog) into a redbandit model in Redis, once.
//
// A run reads every row, adds each event to its product's arm (starting from
// the arm's current state in Redis), solves every touched arm and stores all
// of them with a single atomic write (store.Write.Apply): either the whole
// file is applied or nothing is.
//
// Runs are idempotent per file content. The SHA-256 of the file's bytes is
// the key: the write sets the root field boot:<hex sha256> of the model
// (FieldName) to a small JSON Record, guarded on the field being absent, so
// running the same file again — even concurrently — applies it once. Files
// that differ in any byte (line endings included) are different files; the
// same event in two different files is counted twice.
package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/csvlog"
)

// FieldPrefix starts the name of the root-hash field that records an applied
// file: FieldPrefix + hex SHA-256 of the file.
const FieldPrefix = "boot:"

// MaxAttempts is how many times Run tries the write when a concurrent writer
// changes one of the file's arms between the read and the write.
const MaxAttempts = 5

// maxLoggedSkips caps the per-row warnings logged for skipped rows.
const maxLoggedSkips = 100

// Errors of this package, for errors.Is. Run also returns errors wrapping
// csvlog.ErrBadHeader, csvlog.ErrBadRow (a malformed row or a duplicate
// event_id), store.ErrBadModel (the model's dimension, features or λ differ),
// store.ErrConflict (MaxAttempts write conflicts) and linucb.ErrNonFinite or
// linucb.ErrNotPositiveDefinite (an arm that cannot be solved).
var (
	// ErrBadConfig reports an invalid Config.
	ErrBadConfig = errors.New("bootstrap: bad config")
	// ErrInputChanged reports that the input's bytes changed between the
	// pass that hashed it and the pass that parsed it.
	ErrInputChanged = errors.New("bootstrap: input changed while reading")
)

// Config configures a run.
type Config struct {
	// Model is the model name M (keys rb:{M}...). Required.
	Model string
	// Lambda is the ridge regularisation λ of the model's arms. Zero means
	// linucb.DefaultLambda (1.0). It must equal the λ of an existing model.
	Lambda float64
	// Spec is the model's feature spec. If set, the file's feature columns
	// must be the spec's feature names, the spec's one-hot groups are used
	// (OneHot must be empty), and the spec is stored with the model when it
	// is created (root field "spec"); an existing model must have the same
	// spec, or none yet. Without Spec and OneHot, an existing model keeps
	// the spec and one-hot groups it has (a further log needs neither).
	Spec *spec.Spec
	// OneHot lists the model's one-hot groups by feature name (each row of
	// the file has exactly one 1 in each group). They are recorded when the
	// model is created and speed up scoring (docs/FORMAT.md); an existing
	// model must have the same groups. Nil means none for a new model, and
	// the existing model's groups otherwise.
	OneHot [][]string
	// HalfLife is, for a new model, the half-life in events per product
	// with which its arms forget (linucb, Forgetting; root field
	// halflife); 0 means none. It is fixed when the model is created: a
	// run on an existing model folds with the model's half-life, and a
	// different non-zero HalfLife is an error.
	HalfLife float64
	// SkipBad skips malformed rows and duplicate event ids, counting them in
	// Result.Skipped, instead of failing the run on the first one.
	SkipBad bool
	// Logger receives progress and skipped-row messages. Nil discards them.
	Logger *slog.Logger

	beforeWrite func(attempt int) // test hook, called before each write attempt
}

// Result reports a run.
type Result struct {
	Rows     int64 // data rows read (events folded plus rows skipped)
	Events   int64 // events folded into the model
	Skipped  int64 // malformed rows skipped (SkipBad)
	Products int   // distinct products whose arms were written
	// AlreadyApplied is set when the model already records this file (its
	// boot:<sha256> field exists): nothing was written, and Rows, Events,
	// Skipped and Products are zero.
	AlreadyApplied bool
	SHA256         string // hex SHA-256 of the input's bytes
	Attempts       int    // write attempts made (0 if the run stopped before writing)
}

// Record is the JSON value of a model's boot:<sha256> field, written
// atomically with the file's arms.
type Record struct {
	Rows     int64     `json:"rows"`
	Events   int64     `json:"events"`
	Skipped  int64     `json:"skipped"`
	Products int       `json:"products"`
	At       time.Time `json:"at"` // time of the write, UTC
}

// FieldName returns the root-hash field that records the file with the given
// hex SHA-256: "boot:" + sum.
func FieldName(sum string) string { return FieldPrefix + sum }

// ReadRecord returns the record of the file with hex SHA-256 sum in model,
// and false if the model does not record that file.
func ReadRecord(ctx context.Context, c rueidis.Client, model, sum string) (Record, bool, error) {
	v, err := c.Do(ctx, c.B().Hget().Key(store.RootKey(model)).Field(FieldName(sum)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("read %s of %s: %w", FieldName(sum), store.RootKey(model), err)
	}
	var rec Record
	if err := json.Unmarshal([]byte(v), &rec); err != nil {
		return Record{}, true, fmt.Errorf("%w: %s of %s: %v", store.ErrBadModel, FieldName(sum), store.RootKey(model), err)
	}
	return rec, true, nil
}

// Run folds the CSV log at path into cfg.Model; see RunReader.
func Run(ctx context.Context, c rueidis.Client, path string, cfg Config) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("bootstrap: %w", err)
	}
	defer f.Close()
	return RunReader(ctx, c, f, path, cfg)
}

// RunReader folds the CSV log read from r into cfg.Model; name identifies
// the input in errors and logs.
//
// If r is an io.Seeker (a file), it is hashed in a first pass and a file the
// model already records is reported as Result.AlreadyApplied without being
// parsed; the second pass fails with ErrInputChanged if the bytes differ.
// Otherwise r is hashed while it is parsed, and the record is checked after
// the last row.
//
// The run fails before writing anything if the header is bad, a row is
// malformed or repeats an earlier event_id (unless cfg.SkipBad), the stored
// model has another dimension, feature list or λ, or an arm cannot be
// solved. A write that loses a race with another writer of the same arms is
// retried from the new state, up to MaxAttempts times; one that loses to a
// run of the same file reports AlreadyApplied. On error nothing of the input
// is in the model, and the Result holds what was known when the run stopped
// (the SHA-256 once the input was hashed, the counts once it was read).
//
// Memory holds the file's event ids and one d(d+1)/2 + d sum per product; the single
// write carries A, b, θ and A⁻¹ of every product in the file, and Redis
// serves no other command while the write script runs.
func RunReader(ctx context.Context, c rueidis.Client, r io.Reader, name string, cfg Config) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	wrap := func(err error) error { return fmt.Errorf("bootstrap %s: %w", name, err) }
	log := cfg.Logger.With("model", cfg.Model, "input", name)

	var res Result
	if s, ok := r.(io.Seeker); ok {
		sum, err := hashSeeker(r, s)
		if err != nil {
			return Result{}, wrap(err)
		}
		res.SHA256 = sum
		if done, err := alreadyApplied(ctx, c, cfg.Model, sum, log); err != nil {
			return res, wrap(err)
		} else if done {
			return Result{AlreadyApplied: true, SHA256: sum}, nil
		}
	}

	h := sha256.New()
	tee := io.TeeReader(r, h)
	lr, err := csvlog.NewReader(tee)
	if err != nil {
		return res, wrap(err)
	}
	features := lr.Features()
	groups, err := groupIndexes(features, cfg.OneHot)
	if err != nil {
		return res, wrap(err)
	}
	if cfg.Spec != nil {
		if len(cfg.OneHot) > 0 {
			return res, wrap(fmt.Errorf("%w: give one-hot groups by a spec or by name, not both", ErrBadConfig))
		}
		if !slices.Equal(features, cfg.Spec.Names()) {
			return res, wrap(fmt.Errorf("%w: the file's features %q are not the spec's %q", ErrBadConfig, features, cfg.Spec.Names()))
		}
		groups = cfg.Spec.Groups()
	}
	if groups, err = checkModel(ctx, c, &cfg, features, groups); err != nil {
		return res, wrap(err)
	}
	log.Info("bootstrap: reading", "features", len(features), "lambda", cfg.Lambda, "half_life", cfg.HalfLife)

	f, err := fold(ctx, lr, cfg, log)
	if err != nil {
		return res, wrap(err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // hash any bytes the CSV reader left
		return res, wrap(fmt.Errorf("read: %w", err))
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if res.SHA256 == "" {
		res.SHA256 = sum
		if done, err := alreadyApplied(ctx, c, cfg.Model, sum, log); err != nil {
			return res, wrap(err)
		} else if done {
			return Result{AlreadyApplied: true, SHA256: sum}, nil
		}
	} else if sum != res.SHA256 {
		return res, wrap(fmt.Errorf("%w: SHA-256 %s, then %s", ErrInputChanged, res.SHA256, sum))
	}
	res.Rows, res.Events, res.Skipped, res.Products = f.rows, f.events, f.skipped, len(f.ids)

	for attempt := 1; ; attempt++ {
		res.Attempts = attempt
		err := write(ctx, c, cfg, features, groups, f, res)
		if err == nil {
			log.Info("bootstrap: applied", "rows", res.Rows, "events", res.Events, "skipped", res.Skipped,
				"products", res.Products, "sha256", res.SHA256, "attempts", attempt)
			return res, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return res, wrap(err)
		}
		// A guard conflict means a run of the same file won the race; an
		// arm-version conflict means another writer moved an arm: retry.
		if done, rerr := alreadyApplied(ctx, c, cfg.Model, res.SHA256, log); rerr != nil {
			return res, wrap(errors.Join(err, rerr))
		} else if done {
			return Result{AlreadyApplied: true, SHA256: res.SHA256, Attempts: attempt}, nil
		}
		if attempt == MaxAttempts {
			return res, wrap(fmt.Errorf("gave up after %d attempts: %w", attempt, err))
		}
		log.Warn("bootstrap: write conflict, retrying", "attempt", attempt, "err", err)
	}
}

func (cfg *Config) validate() error {
	if cfg.Model == "" {
		return fmt.Errorf("%w: empty model name", ErrBadConfig)
	}
	if cfg.Lambda == 0 {
		cfg.Lambda = linucb.DefaultLambda
	}
	if !(cfg.Lambda > 0) || math.IsInf(cfg.Lambda, 0) {
		return fmt.Errorf("%w: lambda %v is not positive and finite", ErrBadConfig, cfg.Lambda)
	}
	if !(cfg.HalfLife >= 0) || math.IsInf(cfg.HalfLife, 0) {
		return fmt.Errorf("%w: half-life %v is not a non-negative number", ErrBadConfig, cfg.HalfLife)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// hashSeeker hashes r from its current offset to the end and seeks back.
func hashSeeker(r io.Reader, s io.Seeker) (string, error) {
	start, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", fmt.Errorf("seek: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	if _, err := s.Seek(start, io.SeekStart); err != nil {
		return "", fmt.Errorf("seek: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// alreadyApplied reports whether model records the file with hex SHA-256 sum.
func alreadyApplied(ctx context.Context, c rueidis.Client, model, sum string, log *slog.Logger) (bool, error) {
	rec, ok, err := ReadRecord(ctx, c, model, sum)
	if err != nil {
		return false, err
	}
	if ok {
		log.Info("bootstrap: file already applied, nothing to do", "sha256", sum,
			"applied_at", rec.At, "events", rec.Events, "rows", rec.Rows)
	}
	return ok, nil
}

// groupIndexes maps one-hot groups of feature names to feature indexes.
func groupIndexes(features []string, names [][]string) ([]model.Group, error) {
	var groups []model.Group
	for g, grp := range names {
		var idx []int
		for _, name := range grp {
			i := slices.Index(features, name)
			if i < 0 {
				return nil, fmt.Errorf("%w: one-hot group %d names %q, which is not a feature of the file", ErrBadConfig, g+1, name)
			}
			idx = append(idx, i)
		}
		groups = append(groups, model.Group{Features: idx})
	}
	return groups, nil
}

// checkModel compares an existing model's dimension, features, λ, spec and
// one-hot groups with the file's and the config's, and returns the groups
// to write: the config's (from Spec or OneHot), or, when it gives none, the
// existing model's. A model that does not exist yet is fine.
//
// It sets cfg.HalfLife to the existing model's half-life when cfg has none.
func checkModel(ctx context.Context, c rueidis.Client, cfg *Config, features []string, groups []model.Group) ([]model.Group, error) {
	meta, err := store.ReadMeta(ctx, c, cfg.Model)
	if errors.Is(err, store.ErrNoModel) {
		return groups, nil
	}
	if err != nil {
		return nil, err
	}
	var diffs []string
	if meta.Dim != len(features) {
		diffs = append(diffs, fmt.Sprintf("dimension %d, the file has %d", meta.Dim, len(features)))
	}
	if !slices.Equal(meta.Features, features) {
		diffs = append(diffs, fmt.Sprintf("features %q, the file has %q", meta.Features, features))
	}
	if meta.Lambda != cfg.Lambda {
		diffs = append(diffs, fmt.Sprintf("lambda %v, the config has %v", meta.Lambda, cfg.Lambda))
	}
	switch {
	case cfg.HalfLife == 0:
		cfg.HalfLife = meta.HalfLife // a further log forgets as the model does
	case meta.HalfLife != cfg.HalfLife:
		diffs = append(diffs, fmt.Sprintf("half-life %v, the config has %v (the half-life is fixed when the model is created)", meta.HalfLife, cfg.HalfLife))
	}
	if cfg.Spec != nil && meta.Spec != "" && meta.Spec != cfg.Spec.JSON() {
		diffs = append(diffs, fmt.Sprintf("another feature spec (%s)", meta.Spec))
	}
	if cfg.Spec == nil && len(cfg.OneHot) == 0 {
		groups = meta.Groups // a further log of the model: keep its spec and groups
	} else if !slices.EqualFunc(meta.Groups, groups, func(a, b model.Group) bool {
		return a.Optional == b.Optional && slices.Equal(a.Features, b.Features)
	}) {
		diffs = append(diffs, fmt.Sprintf("one-hot groups %s, the config gives %s (give no spec and no one-hot groups to keep the model's)",
			groupNames(meta.Groups, features), groupNames(groups, features)))
	}
	if len(diffs) > 0 {
		return nil, fmt.Errorf("%w: model %s has %s", store.ErrBadModel, store.RootKey(cfg.Model), strings.Join(diffs, "; "))
	}
	return groups, nil
}

// groupNames writes one-hot groups by feature name, as --onehot takes them
// ("none" for no groups).
func groupNames(groups []model.Group, features []string) string {
	if len(groups) == 0 {
		return "none"
	}
	var out []string
	for _, g := range groups {
		var names []string
		for _, i := range g.Features {
			if i >= 0 && i < len(features) {
				names = append(names, features[i])
			}
		}
		out = append(out, strings.Join(names, ","))
	}
	return "'" + strings.Join(out, ";") + "'"
}

// folded is the sum of a file's events per product, before the stored state
// is added: Σxxᵀ, Σrx (no λI) per product.
type folded struct {
	rows, events, skipped int64
	ids                   []string // products in order of first event
	deltas                []*linucb.Delta
}

// rewards returns the sum of the rewards of every folded event.
func (f *folded) rewards() float64 {
	var r float64
	for _, d := range f.deltas {
		r += d.Rewards()
	}
	return r
}

// fold reads every row of lr and sums the events per product, in file
// order (which matters with forgetting).
func fold(ctx context.Context, lr *csvlog.Reader, cfg Config, log *slog.Logger) (*folded, error) {
	skipBad := cfg.SkipBad
	d := len(lr.Features())
	f := &folded{}
	index := map[string]int{}     // product id -> position in f.ids
	firstLine := map[string]int{} // event id -> line it was folded from
	for {
		if f.rows%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		ev, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			if first, dup := firstLine[ev.EventID]; dup {
				err = &csvlog.RowError{Line: ev.Line, Problem: fmt.Sprintf("duplicate event_id %q, first on line %d", ev.EventID, first)}
			}
		}
		if err != nil {
			if !errors.Is(err, csvlog.ErrBadRow) || !skipBad {
				return nil, err
			}
			f.rows++
			f.skipped++
			if f.skipped <= maxLoggedSkips {
				log.Warn("bootstrap: skipping bad row", "err", err)
			} else if f.skipped == maxLoggedSkips+1 {
				log.Warn("bootstrap: more bad rows skipped; not logging them individually")
			}
			continue
		}
		f.rows++
		i, ok := index[ev.ProductID]
		if !ok {
			i = len(f.ids)
			index[ev.ProductID] = i
			f.ids = append(f.ids, ev.ProductID)
			f.deltas = append(f.deltas, linucb.NewForgettingDelta(d, cfg.Lambda, cfg.HalfLife))
		}
		if err := f.deltas[i].Update(ev.Context, ev.Reward); err != nil { // csvlog guarantees finite values
			return nil, fmt.Errorf("line %d: %w", ev.Line, err)
		}
		firstLine[ev.EventID] = ev.Line
		f.events++
	}
	if f.skipped > 0 {
		log.Warn("bootstrap: skipped bad rows", "skipped", f.skipped)
	}
	return f, nil
}

// write makes one attempt: read the arms' current state, add the file's
// sums, solve, and apply everything with one guarded write.
func write(ctx context.Context, c rueidis.Client, cfg Config, features []string, groups []model.Group, f *folded, res Result) error {
	d := len(features)
	var stored []store.StoredArm
	if len(f.ids) > 0 {
		var err error
		if stored, err = store.ReadArms(ctx, c, cfg.Model, d, cfg.Lambda, f.ids); err != nil {
			return err
		}
	}
	arms := make([]store.ArmWrite, len(f.ids))
	for i, s := range stored {
		arm, err := combine(s.Arm, f.deltas[i])
		if err != nil {
			return fmt.Errorf("product %q: %w", s.ID, err)
		}
		p, err := arm.Solve()
		if err != nil {
			return fmt.Errorf("solve product %q: %w", s.ID, err)
		}
		arms[i] = store.ArmWrite{ID: s.ID, Version: s.Version, Arm: arm, Params: p}
	}
	now := time.Now()
	rec, err := json.Marshal(Record{Rows: res.Rows, Events: res.Events, Skipped: res.Skipped, Products: res.Products, At: now.UTC()})
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	field := FieldName(res.SHA256)
	w := store.Write{
		Model:    cfg.Model,
		Features: features,
		Groups:   groups,
		Lambda:   cfg.Lambda,
		Events:   res.Events,
		Rewards:  f.rewards(),
		Guards:   []store.Guard{{Field: field, Want: ""}},
		Set:      []store.Field{{Name: field, Value: string(rec)}},
		Arms:     arms,
		Now:      now,
	}
	if cfg.HalfLife > 0 {
		// checkModel took an existing model's half-life; a new model gets
		// cfg's, guarded against a concurrent creation with another.
		stored, err := c.Do(ctx, c.B().Hget().Key(store.RootKey(cfg.Model)).Field(store.HalfLifeField).Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return fmt.Errorf("read half-life: %w", err)
		}
		want := store.FormatFloat(cfg.HalfLife)
		if stored != "" && stored != want {
			return fmt.Errorf("%w: model %s has half-life %s, the config has %s", store.ErrBadModel, store.RootKey(cfg.Model), stored, want)
		}
		w.Guards = append(w.Guards, store.Guard{Field: store.HalfLifeField, Want: stored})
		if stored == "" {
			w.Set = append(w.Set, store.Field{Name: store.HalfLifeField, Value: want})
		}
	}
	if cfg.Spec != nil {
		// Store the spec with the model, guarded on the value read now, so a
		// spec stored concurrently is never overwritten.
		stored, err := c.Do(ctx, c.B().Hget().Key(store.RootKey(cfg.Model)).Field(store.SpecField).Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return fmt.Errorf("read spec: %w", err)
		}
		if stored != "" && stored != cfg.Spec.JSON() {
			return fmt.Errorf("%w: model %s has another feature spec", store.ErrBadModel, store.RootKey(cfg.Model))
		}
		w.Guards = append(w.Guards, store.Guard{Field: store.SpecField, Want: stored})
		w.Set = append(w.Set, store.Field{Name: store.SpecField, Value: cfg.Spec.JSON()})
	}
	if cfg.beforeWrite != nil {
		cfg.beforeWrite(res.Attempts)
	}
	_, err = w.Apply(ctx, c)
	return err
}

// combine returns the arm with the stored state plus the file's sums.
func combine(stored *linucb.Arm, delta *linucb.Delta) (*linucb.Arm, error) {
	arm, err := linucb.Restore(stored.Dim(), stored.A(), stored.B(), stored.N(), stored.Rewards())
	if err != nil {
		return nil, err
	}
	arm.Add(delta)
	return arm, nil
}
