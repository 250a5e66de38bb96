// Package store reads and writes redbandit models in Redis, in the format
// documented in docs/FORMAT.md, and calls the scoring script.
//
// Every key of model M lives under the hash tag rb:{M}, so one model is one
// cluster slot: the root hash rb:{M} (metadata and the serving layout) and one
// hash rb:{M}:arm:P per product P (the arm's full state).
package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/redbandit/redbandit/model"
	"github.com/redis/rueidis"
)

// FormatVersion is the model format this package writes. It reads it and
// OldestFormat; its first write to a model of OldestFormat migrates the
// model (docs/FORMAT.md, "Versioning").
const FormatVersion = 3

// OldestFormat is the oldest model format this package reads.
const OldestFormat = 2

// DefaultBlock is the number of arms per column block of a new model.
const DefaultBlock = 1024

// MaxDim is the largest context dimension a model may have.
const MaxDim = 64

// SpecField is the root-hash field holding the model's feature spec (JSON of
// package spec), if it has one.
const SpecField = "spec"

// HalfLifeField is the root-hash field holding the model's half-life in
// events per product (forgetting, docs/FORMAT.md), a positive decimal;
// absent: the arms never forget. Set when the model is created, never
// changed.
const HalfLifeField = "halflife"

// Errors of the scoring and write scripts, for errors.Is. The error text
// after the sentinel is the script's message.
var (
	ErrNoModel  = errors.New("no such model")
	ErrBadArg   = errors.New("bad argument")
	ErrBadModel = errors.New("malformed model")
	ErrConflict = errors.New("conflicting write")
)

var scriptErrors = map[string]error{
	"NOMODEL":  ErrNoModel,
	"BADARG":   ErrBadArg,
	"BADMODEL": ErrBadModel,
	"CONFLICT": ErrConflict,
}

// ScriptError maps a script's error reply ("CODE message") to an error
// wrapping its sentinel (ErrNoModel, ErrBadArg, ErrBadModel, ErrConflict);
// other errors are returned as they are.
func ScriptError(err error) error {
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return err
	}
	msg := re.Error()
	code, rest, _ := strings.Cut(msg, " ")
	if sentinel, ok := scriptErrors[code]; ok {
		return fmt.Errorf("%w: %s", sentinel, rest)
	}
	return err
}

// RootKey returns the key of model's root hash, rb:{model}.
func RootKey(model string) string { return "rb:{" + model + "}" }

// ArmKey returns the key of the hash holding product id's arm, rb:{model}:arm:id.
func ArmKey(model, id string) string { return RootKey(model) + ":arm:" + id }

// AppendFloats appends v to dst as little-endian IEEE-754 doubles.
func AppendFloats(dst []byte, v []float64) []byte {
	for _, f := range v {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(f))
	}
	return dst
}

// Floats decodes little-endian doubles. It fails if len(b) is not a
// multiple of 8.
func Floats(b []byte) ([]float64, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of doubles", ErrBadModel, len(b))
	}
	v := make([]float64, len(b)/8)
	for i := range v {
		v[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return v, nil
}

// FormatFloat formats f the way redbandit writes numbers to Redis: the
// shortest decimal that parses back to f.
func FormatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// Dial connects to Redis at a redis:// or rediss:// URL
// (redis://user:pass@host:port/db). Client-side caching is off.
func Dial(url string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to redis: %w", err)
	}
	return c, nil
}

// doReads sends read-only commands in one pipelined round trip. They are
// pinned, never returned to rueidis's command pool: when a connection dies
// during a batch, rueidis (v1.0.79) retries a read-only batch on a new
// connection and recycles its commands while the dead connection's writer
// may still be reading them, so the next command built reuses memory that
// writer reads (a data race, seen under -race with Redis killed mid-flush;
// TestReadsRedisKilled).
func doReads(ctx context.Context, c rueidis.Client, cmds rueidis.Commands) []rueidis.RedisResult {
	for i := range cmds {
		cmds[i] = cmds[i].Pin()
	}
	return c.DoMulti(ctx, cmds...)
}

// Meta is a model's metadata, from its root hash.
type Meta struct {
	Format    int           // format version
	Dim       int           // context dimension d
	Lambda    float64       // ridge regularisation λ
	Features  []string      // feature names, in context order
	Groups    []model.Group // one-hot groups; nil if none
	Spec      string        // the feature spec (JSON, package spec); "" if none
	Block     int           // arms per column block
	Arms      int           // number of arms (products)
	Events    int64         // events folded into the model
	Rewards   float64       // the sum of their rewards
	Invalid   int64         // events the trainers dead-lettered
	UpdatedMS int64         // time of the last write, Unix milliseconds
	HalfLife  float64       // forgetting: half-life in events per product; 0: none
}

// ReadMeta reads model's metadata. It returns ErrNoModel if the model does
// not exist and ErrBadModel if its metadata is malformed.
func ReadMeta(ctx context.Context, c rueidis.Client, model string) (Meta, error) {
	root := RootKey(model)
	vals, err := c.Do(ctx, c.B().Hmget().Key(root).Field("format", "dim", "lambda", "features", "block", "arms", "events", "updated_ms", "groups", SpecField, "rewards", "invalid", HalfLifeField).Build()).ToArray()
	if err != nil {
		return Meta{}, fmt.Errorf("read meta of %s: %w", root, err)
	}
	str := func(i int) string { s, _ := vals[i].ToString(); return s }
	if vals[0].IsNil() {
		return Meta{}, fmt.Errorf("%w: no model at %s", ErrNoModel, root)
	}
	var m Meta
	var errs []error
	atoi := func(i int) int64 {
		if vals[i].IsNil() {
			return 0
		}
		v, err := strconv.ParseInt(str(i), 10, 64)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	m.Format = int(atoi(0))
	m.Dim = int(atoi(1))
	m.Lambda, err = strconv.ParseFloat(str(2), 64)
	errs = append(errs, err)
	errs = append(errs, json.Unmarshal([]byte(str(3)), &m.Features))
	m.Block = int(atoi(4))
	m.Arms = int(atoi(5))
	m.Events = atoi(6)
	m.UpdatedMS = atoi(7)
	m.Spec = str(9)
	if !vals[10].IsNil() {
		m.Rewards, err = strconv.ParseFloat(str(10), 64)
		errs = append(errs, err)
	}
	m.Invalid = atoi(11)
	if !vals[12].IsNil() {
		m.HalfLife, err = strconv.ParseFloat(str(12), 64)
		if err == nil && (!(m.HalfLife > 0) || math.IsInf(m.HalfLife, 0)) {
			err = fmt.Errorf("half-life %q is not a positive number", str(12))
		}
		errs = append(errs, err)
	}
	if !vals[8].IsNil() {
		errs = append(errs, json.Unmarshal([]byte(str(8)), &m.Groups))
		if len(m.Groups) == 0 {
			m.Groups = nil
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Meta{}, fmt.Errorf("%w: %s: %v", ErrBadModel, root, err)
	}
	if m.Format < OldestFormat || m.Format > FormatVersion {
		return m, fmt.Errorf("%w: %s has format %d, this build reads formats %d to %d", ErrBadModel, root, m.Format, OldestFormat, FormatVersion)
	}
	if m.Dim < 1 || m.Dim > MaxDim || len(m.Features) != m.Dim {
		return m, fmt.Errorf("%w: %s has dimension %d and %d feature names", ErrBadModel, root, m.Dim, len(m.Features))
	}
	return m, nil
}

// ReadProducts returns the product ids of arms 0..arms-1 of model (arms is
// Meta.Arms), in index order, from the root's product index: one HMGET per
// 1,000 products. A missing id is ErrBadModel.
func ReadProducts(ctx context.Context, c rueidis.Client, model string, arms int) ([]string, error) {
	ids := make([]string, arms)
	const chunk = 1000
	for lo := 0; lo < arms; lo += chunk {
		hi := min(lo+chunk, arms)
		fields := make([]string, 0, hi-lo)
		for i := lo; i < hi; i++ {
			fields = append(fields, "id:"+strconv.Itoa(i))
		}
		vals, err := c.Do(ctx, c.B().Hmget().Key(RootKey(model)).Field(fields...).Build()).ToArray()
		if err != nil {
			return nil, fmt.Errorf("read product ids %d..%d of %s: %w", lo, hi-1, model, err)
		}
		for i, v := range vals {
			if ids[lo+i], err = v.ToString(); err != nil || ids[lo+i] == "" {
				return nil, fmt.Errorf("%w: %s has no id for arm %d", ErrBadModel, RootKey(model), lo+i)
			}
		}
	}
	return ids, nil
}
