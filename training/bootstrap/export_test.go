package bootstrap

// SetBeforeWrite installs a hook that Run calls before each write attempt
// with the attempt number (1-based), so tests can interleave other writers.
func SetBeforeWrite(cfg *Config, f func(attempt int)) { cfg.beforeWrite = f }
