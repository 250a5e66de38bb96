package loadtest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/redbandit/redbandit/model/store"
)

// Errors of this package, for errors.Is.
var (
	// ErrBadConfig reports an invalid Config.
	ErrBadConfig = errors.New("loadtest: bad configuration")
	// ErrWrongAnswer reports an answer that failed the checks (wrong number
	// of items, scores not in descending order, unknown or repeated ids,
	// an unparsable reply); it counts as an error of the run.
	ErrWrongAnswer = errors.New("loadtest: wrong answer")
)

// Targets.
const (
	TargetRedis      = "redis"       // EVALSHA_RO of recommend.lua
	TargetFCall      = "fcall"       // FCALL_RO rb_recommend
	TargetClientSide = "client-side" // fetch the arms, score in Go
	TargetPing       = "ping"        // PING
	TargetHTTP       = "http"        // the sidecar's POST /v1/recommend
	TargetHTTPPing   = "http-ping"   // the sidecar's GET /healthz: the HTTP floor
	TargetHTTPLocal  = "http-local"  // POST /v1/recommend of a sidecar scoring locally (--scoring local, at Config.LocalURL)
)

// Clients of the ping, redis, fcall, http and http-ping targets.
const (
	// ClientGo uses rueidis for Redis (one connection per client) and Go's
	// net/http client for the sidecar.
	ClientGo = "go"
	// ClientLean writes each request and reads its reply on the client's
	// goroutine over one connection, RESP or HTTP/1.1 written by hand, as
	// redis-benchmark and wrk do.
	ClientLean = "lean"
)

// Output formats.
const (
	FormatText = "text"
	FormatJSON = "json"
	FormatCSV  = "csv"
)

// Defaults of the zero values of Config.
const (
	DefaultRequests = 1000
	DefaultK        = 5
	DefaultDim      = 15 // the reference shop: 3 continuous features and one-hot groups {2,5,3,2}
	DefaultNonzero  = 7
	// DefaultSidecarURL is the sidecar's default listen address.
	DefaultSidecarURL = "http://127.0.0.1:8080"
	// DefaultLocalURL is where the http-local target expects a sidecar
	// run with --scoring local.
	DefaultLocalURL = "http://127.0.0.1:8081"
)

// Config configures Run. Zero values take the documented defaults.
type Config struct {
	// RedisURL is the server to load, redis://[user:pass@]host:port/db. Required.
	RedisURL string
	// SidecarURL is the sidecar of the http target. Default
	// DefaultSidecarURL. The sidecar must serve the same Redis (a synthetic
	// model is created there).
	SidecarURL string
	// LocalURL is the sidecar of the http-local target: one run with
	// --scoring local on the same Redis. Default DefaultLocalURL.
	LocalURL string
	// Model is the model to load-test. With Products > 0 it is the prefix of
	// the synthetic model's unique name (Model + "-loadtest-" + random hex).
	// Default "default".
	Model string
	// Targets are run one after the other on the same server; ratios in the
	// report are to the first. Default [TargetRedis].
	Targets []string
	// Clients is the number of concurrent clients, each with its own
	// connection. Default 1.
	Clients int
	// Requests is the number of measured requests per target (after the
	// warm-up). Default DefaultRequests unless Duration is set; setting both
	// is an error.
	Requests int
	// Duration runs each target for this long instead of a fixed number of
	// requests. Default 0 (use Requests).
	Duration time.Duration
	// Client is ClientGo or ClientLean; the client-side target always uses
	// rueidis. Default ClientGo.
	Client string
	// Pipeline is the number of requests each client sends per round trip;
	// all of a batch share its latency. Default 1.
	Pipeline int
	// Rate, if > 0, makes the run open-loop: requests are scheduled at this
	// total rate (requests/s, over all clients) and latency is measured from
	// the scheduled time. Default 0: closed loop.
	Rate float64
	// Warmup runs each target for this long before measuring; its requests
	// are not counted. Default 0.
	Warmup time.Duration
	// Products, if > 0, creates a synthetic model of this many products
	// (deleted afterwards unless Keep). Default 0: use the existing Model.
	Products int
	// Dim is the synthetic model's dimension. With 15, the reference shop's
	// layout (3 continuous features, one-hot groups of 2, 5, 3 and 2
	// features declared to the model); otherwise no groups and random sparse
	// contexts. Default DefaultDim. Only with Products > 0.
	Dim int
	// Nonzero is the number of non-zero context entries when the model has
	// no one-hot groups. Default min(DefaultNonzero, dimension).
	Nonzero int
	// Candidates, if > 0, makes each request score a random list of this
	// many distinct products instead of the whole catalogue. Default 0.
	Candidates int
	// K is the number of products per request. Default DefaultK.
	K int
	// Alpha is the exploration weight, ≥ 0. The zero value is α = 0; the
	// CLI's default is linucb.DefaultAlpha.
	Alpha float64
	// Seed seeds the synthetic model and the request contexts. Default 0.
	Seed uint64
	// Keep leaves the synthetic model in Redis after the run.
	Keep bool
	// Out receives the report in Format, target by target. Default: discard.
	Out io.Writer
	// Format is FormatText (default), FormatJSON (one object per target per
	// line) or FormatCSV (a header, then one row per target).
	Format string
	// Progress, if not nil, receives a live progress line (rewritten with
	// \r) while a target runs; meant for a terminal. Default nil.
	Progress io.Writer
	// Logger logs the set-up and clean-up. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with the zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.Model == "" {
		c.Model = "default"
	}
	if c.SidecarURL == "" {
		c.SidecarURL = DefaultSidecarURL
	}
	if c.LocalURL == "" {
		c.LocalURL = DefaultLocalURL
	}
	if len(c.Targets) == 0 {
		c.Targets = []string{TargetRedis}
	}
	if c.Clients == 0 {
		c.Clients = 1
	}
	if c.Requests == 0 && c.Duration == 0 {
		c.Requests = DefaultRequests
	}
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.Client == "" {
		c.Client = ClientGo
	}
	if c.Products > 0 && c.Dim == 0 {
		c.Dim = DefaultDim
	}
	if c.K == 0 {
		c.K = DefaultK
	}
	if c.Format == "" {
		c.Format = FormatText
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first problem of c (after defaults) as an error
// wrapping ErrBadConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	if c.RedisURL == "" {
		return bad("no Redis URL")
	}
	if strings.Contains(c.Model, "}") {
		return bad("model name %q contains '}'", c.Model)
	}
	for _, t := range c.Targets {
		switch t {
		case TargetRedis, TargetFCall, TargetClientSide, TargetPing:
		case TargetHTTP, TargetHTTPPing, TargetHTTPLocal:
			if c.Pipeline > 1 {
				return bad("the %s target sends one request per round trip: no pipeline", t)
			}
		default:
			return bad("unknown target %q (want redis, fcall, http, http-local, http-ping, client-side or ping)", t)
		}
	}
	switch {
	case c.Client != ClientGo && c.Client != ClientLean:
		return bad("unknown client %q (want go or lean)", c.Client)
	case c.Clients < 1:
		return bad("clients %d < 1", c.Clients)
	case c.Requests < 0:
		return bad("requests %d < 0", c.Requests)
	case c.Duration < 0:
		return bad("duration %v < 0", c.Duration)
	case c.Requests > 0 && c.Duration > 0:
		return bad("give either a number of requests or a duration, not both")
	case c.Pipeline < 1:
		return bad("pipeline %d < 1", c.Pipeline)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return bad("rate %v is not a finite number >= 0", c.Rate)
	case c.Warmup < 0:
		return bad("warmup %v < 0", c.Warmup)
	case c.Products < 0:
		return bad("products %d < 0", c.Products)
	case c.Products == 0 && c.Dim != 0:
		return bad("a dimension needs --products (an existing model has its own)")
	case c.Products > 0 && (c.Dim < 1 || c.Dim > store.MaxDim):
		return bad("dimension %d outside 1..%d", c.Dim, store.MaxDim)
	case c.Nonzero < 0 || (c.Products > 0 && c.Nonzero > c.Dim):
		return bad("nonzero %d outside 0..%d", c.Nonzero, c.Dim)
	case c.Candidates < 0:
		return bad("candidates %d < 0", c.Candidates)
	case c.Products > 0 && c.Candidates > c.Products:
		return bad("candidates %d > products %d", c.Candidates, c.Products)
	case c.K < 1:
		return bad("k %d < 1", c.K)
	case c.Alpha < 0 || math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0):
		return bad("alpha %v is not a finite number >= 0", c.Alpha)
	}
	switch c.Format {
	case FormatText, FormatJSON, FormatCSV:
	default:
		return bad("unknown format %q (want text, json or csv)", c.Format)
	}
	return nil
}
