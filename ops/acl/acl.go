// Package acl defines the Redis ACL users of a redbandit deployment, with
// least privilege for each role, and writes them as a Redis ACL file.
//
// Roles, all confined to the rb:* keys of redbandit models:
//
//   - serve: reads models and runs the scoring script (EVALSHA, EVALSHA_RO)
//     and function (FCALL_RO); no writes, no EVAL of new code, no KEYS,
//     FLUSH*, CONFIG or other admin commands. Scripts run with the caller's
//     permissions, so even the write script fails with NOPERM for this user.
//     EVALSHA needs the script in Redis's cache (loaded by admin), which a
//     restart empties; FCALL_RO does not (functions persist with the data).
//   - trainer: reads and writes model keys through the write script
//     (EVALSHA, or EVAL when a restart emptied the script cache) and
//     MULTI/EXEC; reads INFO and may ask ACL DRYRUN (the start-up durability
//     check); no admin commands, no FLUSH*, no KEYS.
//   - admin: loads scripts and the function library, reads and deletes model
//     keys, reads INFO and CONFIG, asks ACL WHOAMI and DRYRUN (redbandit
//     doctor); no FLUSH*, CONFIG SET, DEBUG or SHUTDOWN.
//
// The default user is switched off: nobody can log in as it. It holds only
// the rights the AOF replay needs (Replay): Redis 7.0 to at least 7.4 loads
// the AOF as the default user and checks its ACL rights at each EXEC, and
// script effects (every model write) are logged as MULTI/EXEC, so a default
// user without them loses every model write on restart, silently. Disabled
// ("off") users cannot authenticate, but the EXEC check ignores the flag.
//
// Passwords are never stored in clear: the file holds their SHA-256 (ACL's
// #<hex> form).
package acl

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Default user names.
const (
	ServeUser   = "rb-serve"
	TrainerUser = "rb-trainer"
	AdminUser   = "rb-admin"
)

// ErrNoPassword reports a role without a password.
var ErrNoPassword = errors.New("acl: missing password")

// connection are the commands every client needs to connect and stay
// connected (rueidis sends HELLO, AUTH and CLIENT SETNAME; PING for health;
// CLUSTER SLOTS, or CLUSTER SHARDS from Redis 8, to learn a cluster's
// layout, and on a single server to find it is not a cluster).
const connection = "+hello +auth +ping +select +client|setname +client|getname +client|id +client|info +quit +reset +readonly +readwrite +cluster|slots +cluster|shards"

// ReplayCommands are the commands the default user may run, on rb:* keys
// only: the write commands any role holds, so that every transaction a role
// can cause (the write script's effects: HSET, HDEL, HINCRBY) replays from
// the AOF. MULTI and EXEC themselves are not checked on load.
var ReplayCommands = []string{"hset", "hdel", "hincrby", "del", "unlink"}

// DefaultRule is the default user's line: off, with ReplayCommands on rb:*.
func DefaultRule() string {
	return "off resetpass resetkeys ~rb:* resetchannels -@all +" + strings.Join(ReplayCommands, " +")
}

// introspect are the read-only ACL commands doctor and the start-up check of
// the writing commands run: who am I, and may user U run command C (it
// reveals rights, never passwords or their hashes, unlike ACL GETUSER).
const introspect = " +acl|whoami +acl|dryrun"

// Rules returns the ACL rules (without the password) of each role.
func Rules() map[string]string {
	return map[string]string{
		ServeUser: "resetkeys %R~rb:* resetchannels -@all " + connection +
			" +evalsha +evalsha_ro +fcall_ro +hmget +hget +hexists +hlen",
		TrainerUser: "resetkeys ~rb:* resetchannels -@all " + connection +
			" +evalsha +eval +script|load +script|exists +multi +exec +discard +watch +unwatch" +
			" +hmget +hget +hgetall +hexists +hlen +hset +hdel +hincrby +exists +type +info" + introspect,
		AdminUser: "resetkeys ~rb:* resetchannels -@all " + connection +
			" +script|load +script|exists +script|flush +function|load +function|list +function|delete +function|dump +function|restore" +
			" +evalsha +evalsha_ro +fcall_ro +hmget +hget +hgetall +hexists +hlen +hscan +exists +type +del +unlink +scan +info +memory|usage" +
			" +config|get +client|list" + introspect,
	}
}

// Passwords are the passwords of the three roles.
type Passwords struct {
	Serve, Trainer, Admin string
}

// Write writes an ACL file (for redis.conf's aclfile) with the three users
// and the default user switched off, with the rights the AOF replay needs.
func Write(w io.Writer, p Passwords) error {
	rules := Rules()
	users := []struct{ name, password string }{
		{ServeUser, p.Serve}, {TrainerUser, p.Trainer}, {AdminUser, p.Admin},
	}
	var b strings.Builder
	b.WriteString("user default " + DefaultRule() + "\n")
	for _, u := range users {
		if u.password == "" {
			return fmt.Errorf("%w for %s", ErrNoPassword, u.name)
		}
		sum := sha256.Sum256([]byte(u.password))
		fmt.Fprintf(&b, "user %s on #%s %s\n", u.name, hex.EncodeToString(sum[:]), rules[u.name])
	}
	_, err := io.WriteString(w, b.String())
	return err
}
