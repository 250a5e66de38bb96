package loadtest

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := Config{RedisURL: "redis://127.0.0.1:1/0"}
	for _, c := range []Config{
		ok,
		{RedisURL: "x", Targets: []string{"ping", "redis", "fcall", "client-side", "redis"}, Clients: 8, Pipeline: 16, Rate: 1000, Warmup: time.Second},
		{RedisURL: "x", Products: 200, Dim: 15, Candidates: 200, K: 200, Alpha: 0, Nonzero: 15, Duration: time.Second},
		{RedisURL: "x", Products: 10, Dim: 64, Nonzero: 1, Format: FormatCSV},
		{RedisURL: "x", Model: "other", Candidates: 50, Format: FormatJSON}, // checked against the model at run time
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := map[string]func(*Config){
		"no url":            func(c *Config) { c.RedisURL = "" },
		"brace in model":    func(c *Config) { c.Model = "a}b" },
		"unknown target":    func(c *Config) { c.Targets = []string{"redis", "memcached"} },
		"clients":           func(c *Config) { c.Clients = -1 },
		"requests":          func(c *Config) { c.Requests = -5 },
		"duration":          func(c *Config) { c.Duration = -time.Second },
		"both stops":        func(c *Config) { c.Requests, c.Duration = 10, time.Second },
		"pipeline":          func(c *Config) { c.Pipeline = -2 },
		"negative rate":     func(c *Config) { c.Rate = -1 },
		"NaN rate":          func(c *Config) { c.Rate = math.NaN() },
		"infinite rate":     func(c *Config) { c.Rate = math.Inf(1) },
		"warmup":            func(c *Config) { c.Warmup = -time.Second },
		"products":          func(c *Config) { c.Products = -1 },
		"dim without model": func(c *Config) { c.Dim = 15 },
		"dim too large":     func(c *Config) { c.Products, c.Dim = 10, 65 },
		"nonzero > dim":     func(c *Config) { c.Products, c.Dim, c.Nonzero = 10, 8, 9 },
		"nonzero < 0":       func(c *Config) { c.Nonzero = -1 },
		"candidates < 0":    func(c *Config) { c.Candidates = -1 },
		"candidates > prod": func(c *Config) { c.Products, c.Candidates = 10, 11 },
		"k":                 func(c *Config) { c.K = -1 },
		"alpha":             func(c *Config) { c.Alpha = -0.1 },
		"NaN alpha":         func(c *Config) { c.Alpha = math.NaN() },
		"format":            func(c *Config) { c.Format = "xml" },
	}
	for name, mutate := range bad {
		c := ok
		mutate(&c)
		err := c.Validate()
		if !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
	c := ok
	c.Targets = []string{"redis", "http"}
	if err := c.Validate(); err != nil {
		t.Errorf("http target: %v", err)
	}
	c.Pipeline = 2
	if err := c.Validate(); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "no pipeline") {
		t.Errorf("http target with a pipeline: %v, want ErrBadConfig", err)
	}
}

func TestDefaults(t *testing.T) {
	c := Config{RedisURL: "x", Products: 5}.withDefaults()
	if c.Model != "default" || len(c.Targets) != 1 || c.Targets[0] != TargetRedis || c.Clients != 1 ||
		c.Requests != DefaultRequests || c.Pipeline != 1 || c.Dim != DefaultDim || c.K != DefaultK ||
		c.Format != FormatText || c.Out == nil || c.Logger == nil {
		t.Fatalf("defaults: %+v", c)
	}
	if c := (Config{Duration: time.Second}).withDefaults(); c.Requests != 0 {
		t.Fatalf("a duration must not get a default number of requests: %d", c.Requests)
	}
	if n := nonzeroFor(Config{}, 4); n != 4 {
		t.Fatalf("default nonzero for d=4: %d", n)
	}
}
