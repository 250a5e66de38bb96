package acl

// DefaultUser is Redis's default user (off in the file Write writes).
const DefaultUser = "default"

// Probe is a command a user must, or must not, be allowed to run; ACL
// DRYRUN checks it without running it (a script's SHA need not exist).
type Probe struct {
	Args    []string
	Allowed bool
}

// Probes returns what each user of the file Write writes must and must not
// be allowed, by user name: a sample of each role's rights, for redbandit
// doctor and the tests, on the model key rb:{m}.
func Probes() map[string][]Probe {
	const root, sha = "rb:{m}", "0123456789abcdef0123456789abcdef01234567"
	yes := func(args ...string) Probe { return Probe{Args: args, Allowed: true} }
	no := func(args ...string) Probe { return Probe{Args: args} }
	common := []Probe{no("flushall"), no("flushdb"), no("keys", "*"), no("shutdown"), no("config", "set", "maxmemory", "1"),
		no("acl", "setuser", "x", "on"), no("acl", "getuser", DefaultUser), no("get", "other"), no("debug", "sleep", "0")}
	return map[string][]Probe{
		ServeUser: append([]Probe{yes("evalsha_ro", sha, "1", root), yes("fcall_ro", "rb_recommend", "1", root), yes("hmget", root, "f"),
			no("hset", root, "f", "1"), no("del", root), no("eval", "return 1", "0"), no("eval_ro", "return 1", "0"),
			no("script", "load", "return 1"), no("function", "load", "x"), no("config", "get", "*"), no("info"), no("acl", "dryrun", DefaultUser, "ping")}, common...),
		TrainerUser: append([]Probe{yes("evalsha", sha, "1", root), yes("eval", "return 1", "1", root), yes("hset", root, "f", "1"),
			yes("script", "load", "return 1"), yes("multi"), yes("exec"), yes("info"), yes("acl", "dryrun", DefaultUser, "ping"),
			no("hset", "other", "f", "1"), no("del", root), no("function", "load", "x"), no("config", "get", "*"), no("scan", "0")}, common...),
		AdminUser: append([]Probe{yes("script", "load", "return 1"), yes("function", "load", "x"), yes("del", root), yes("scan", "0"),
			yes("hgetall", root), yes("config", "get", "maxmemory"), yes("info"), yes("memory", "usage", root), yes("acl", "whoami"),
			yes("acl", "dryrun", DefaultUser, "ping"),
			no("hset", root, "f", "1"), no("eval", "return 1", "0"), no("function", "flush"), no("del", "other")}, common...),
		DefaultUser: append([]Probe{yes("hset", root, "f", "1"), yes("hdel", root, "f"), yes("hincrby", root, "f", "1"), yes("del", root),
			no("hset", "other", "f", "1"), no("hget", root, "f"), no("eval", "return 1", "0"), no("evalsha", sha, "1", root), no("info")}, common...),
	}
}
